//! Property tests for everything in x402 that reads strangers' input: the payment
//! header codec, the lenient wire readers and decimal money.
//!
//! Hand-picked vectors cover the cases someone thought of; these generate the rest.
//! Two kinds of property: nothing a peer can send makes a reader panic (it answers
//! with an error instead), and every value we can write reads back as the same value,
//! in both protocol versions, because official clients deep-compare what they sent
//! with what they get back.

#![allow(clippy::unwrap_used)]

use alloy::primitives::{Address, B256, Bytes, U256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use x402::header::{self, decode_payment};
use x402::money::{Money, MoneyError, Price};
use x402::network::Network;
use x402::wire::{
    Authorization, ExactEvmPayload, Extra, FacilitatorRequest, PaymentPayload, PaymentRequired,
    PaymentRequirements, ResourceInfo, SettleResponse, Supported, VerifyResponse, X402Version,
};

// ---------------------------------------------------------------- generators

fn u256() -> impl Strategy<Value = U256> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(U256::from_be_bytes),
        any::<u64>().prop_map(U256::from),
        Just(U256::ZERO),
        Just(U256::MAX),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address::from)
}

fn b256() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256::from)
}

/// Any network a peer may name: every EVM chain id (known ones have v1 names), and
/// other CAIP-2 namespaces, which are kept verbatim.
fn network() -> impl Strategy<Value = Network> {
    prop_oneof![
        any::<u64>().prop_map(Network::Eip155),
        prop::sample::select(vec![1u64, 8453, 84532, 137, 43114, 42161]).prop_map(Network::Eip155),
        ("[a-z0-9-]{3,8}", "[a-zA-Z0-9_-]{1,32}")
            .prop_filter("eip155 is the EVM namespace", |(ns, _)| ns != "eip155")
            .prop_map(|(ns, reference)| Network::Other(format!("{ns}:{reference}"))),
        Just(Network::Other(
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".to_string()
        )),
    ]
}

fn evm_network() -> impl Strategy<Value = Network> {
    any::<u64>().prop_map(Network::Eip155)
}

/// JSON without floats (serde_json does not promise to read back every float bit for
/// bit) and without a null at the top (a null optional field reads back as absent).
fn plain_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_filter("a top-level null reads back as absent", |v| !v.is_null())
}

fn extra() -> impl Strategy<Value = Extra> {
    (
        proptest::option::of(".{0,12}"),
        proptest::option::of(".{0,12}"),
        prop::collection::btree_map("x-[a-zA-Z]{1,8}", plain_json(), 0..3),
    )
        .prop_map(|(name, version, other)| Extra {
            name,
            version,
            other: other.into_iter().collect(),
        })
}

/// A requirement that can be written in `version`'s shape: v2 carries no per-entry
/// resource fields, v1 always writes them (empty when unset).
fn requirements(
    version: X402Version,
    network: BoxedStrategy<Network>,
) -> BoxedStrategy<PaymentRequirements> {
    let v1 = version == X402Version::V1;
    (
        ".{0,12}",
        network,
        u256(),
        (address(), address()),
        any::<u64>(),
        proptest::option::of(extra()),
        (".{0,20}", ".{0,20}", ".{0,20}"),
        proptest::option::of(plain_json()),
    )
        .prop_map(
            move |(scheme, network, amount, (pay_to, asset), timeout, extra, text, schema)| {
                let (resource, description, mime_type) = text;
                PaymentRequirements {
                    scheme,
                    network,
                    amount,
                    pay_to,
                    asset,
                    max_timeout_seconds: timeout,
                    extra,
                    resource: v1.then_some(resource),
                    description: v1.then_some(description),
                    mime_type: v1.then_some(mime_type),
                    output_schema: schema.filter(|_| v1),
                }
            },
        )
        .boxed()
}

/// A signature as it reads back: a 65-byte ECDSA one has `v` as 27/28.
fn signature() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 65).prop_map(|mut sig| {
            if sig[64] < 27 {
                sig[64] = 27 + sig[64] % 2;
            }
            Bytes::from(sig)
        }),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|mut sig| {
            if sig.len() == 65 && sig[64] < 27 {
                sig[64] += 27;
            }
            Bytes::from(sig)
        }),
    ]
}

fn exact_payload() -> impl Strategy<Value = ExactEvmPayload> {
    (
        signature(),
        (address(), address()),
        (u256(), u256(), u256()),
        b256(),
    )
        .prop_map(
            |(signature, (from, to), (value, valid_after, valid_before), nonce)| ExactEvmPayload {
                signature,
                authorization: Authorization {
                    from,
                    to,
                    value,
                    valid_after,
                    valid_before,
                    nonce,
                },
            },
        )
}

fn resource_info() -> impl Strategy<Value = ResourceInfo> {
    (
        ".{0,30}",
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
    )
        .prop_map(|(url, description, mime_type)| ResourceInfo {
            url,
            description,
            mime_type,
        })
}

fn payment_v2() -> impl Strategy<Value = PaymentPayload> {
    (
        requirements(X402Version::V2, network().boxed()),
        proptest::option::of(resource_info()),
        exact_payload(),
        proptest::option::of(plain_json()),
    )
        .prop_map(|(accepted, resource, payload, extensions)| PaymentPayload {
            resource,
            extensions,
            ..PaymentPayload::v2(&accepted, payload)
        })
}

fn payment_v1() -> impl Strategy<Value = PaymentPayload> {
    (".{0,12}", network(), exact_payload()).prop_map(|(scheme, network, payload)| PaymentPayload {
        x402_version: X402Version::V1,
        scheme,
        network,
        accepted: None,
        resource: None,
        payload,
        extensions: None,
    })
}

fn payment() -> impl Strategy<Value = PaymentPayload> {
    prop_oneof![payment_v1(), payment_v2()]
}

fn version() -> impl Strategy<Value = X402Version> {
    prop_oneof![Just(X402Version::V1), Just(X402Version::V2)]
}

/// A receipt that can be written in `version`'s shape (v1 has no amount or
/// extensions).
fn settle_response(version: X402Version) -> impl Strategy<Value = SettleResponse> {
    let v2 = version == X402Version::V2;
    (
        any::<bool>(),
        (
            proptest::option::of(".{0,20}"),
            proptest::option::of(".{0,20}"),
        ),
        proptest::option::of(address()),
        proptest::option::of(b256()),
        network(),
        proptest::option::of(u256()),
        proptest::option::of(plain_json()),
    )
        .prop_map(
            move |(
                success,
                (error_reason, error_message),
                payer,
                transaction,
                network,
                amount,
                extensions,
            )| {
                SettleResponse {
                    success,
                    error_reason,
                    error_message,
                    payer,
                    transaction,
                    network,
                    amount: amount.filter(|_| v2),
                    extensions: extensions.filter(|_| v2),
                }
            },
        )
}

fn verify_response() -> impl Strategy<Value = VerifyResponse> {
    (
        any::<bool>(),
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
        proptest::option::of(address()),
    )
        .prop_map(
            |(is_valid, invalid_reason, invalid_message, payer)| VerifyResponse {
                is_valid,
                invalid_reason,
                invalid_message,
                payer,
            },
        )
}

/// A challenge in `version`'s shape; only EVM entries, since others are dropped on
/// read by design.
fn payment_required(version: X402Version) -> impl Strategy<Value = PaymentRequired> {
    let v2 = version == X402Version::V2;
    (
        ".{0,20}",
        proptest::option::of(resource_info()),
        prop::collection::vec(requirements(version, evm_network().boxed()), 0..3),
        proptest::option::of(plain_json()),
    )
        .prop_map(
            move |(error, resource, accepts, extensions)| PaymentRequired {
                x402_version: version,
                error: Some(error),
                resource: resource.filter(|_| v2),
                accepts,
                extensions: extensions.filter(|_| v2),
            },
        )
}

/// Any JSON at all, floats included, with keys that x402 readers look for mixed in so
/// generated objects reach past the first missing field.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
        "(0[xX])?[0-9a-fA-F]{0,80}".prop_map(Value::from),
        "[0-9]{0,90}".prop_map(Value::from),
        Just(Value::from("eip155:84532")),
        Just(Value::from("base-sepolia")),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "x402Version",
            "scheme",
            "network",
            "amount",
            "maxAmountRequired",
            "payTo",
            "asset",
            "maxTimeoutSeconds",
            "extra",
            "resource",
            "accepted",
            "accepts",
            "payload",
            "signature",
            "authorization",
            "from",
            "to",
            "value",
            "validAfter",
            "validBefore",
            "nonce",
            "success",
            "transaction",
            "payer",
            "isValid",
            "kinds",
            "paymentPayload",
            "paymentRequirements",
            "url",
            "name",
            "version",
        ])
        .prop_map(String::from),
        ".{0,8}",
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Feeds `value` to every lenient reader; each must answer, never panic.
fn read_everything(value: &Value) {
    let _ = serde_json::from_value::<PaymentRequirements>(value.clone());
    let _ = serde_json::from_value::<PaymentRequired>(value.clone());
    let _ = serde_json::from_value::<PaymentPayload>(value.clone());
    let _ = serde_json::from_value::<ExactEvmPayload>(value.clone());
    let _ = serde_json::from_value::<FacilitatorRequest>(value.clone());
    let _ = serde_json::from_value::<SettleResponse>(value.clone());
    let _ = serde_json::from_value::<VerifyResponse>(value.clone());
    let _ = serde_json::from_value::<Supported>(value.clone());
    let _ = serde_json::from_value::<Network>(value.clone());
}

/// Replaces the value at `path` (object keys, created when missing) in `doc`.
fn put_at(doc: &mut Value, path: &[&str], replacement: Value) {
    let Some((last, parents)) = path.split_last() else {
        *doc = replacement;
        return;
    };
    let mut here = doc;
    for key in parents {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        here = here
            .as_object_mut()
            .unwrap()
            .entry((*key).to_string())
            .or_insert(Value::Null);
    }
    if !here.is_object() {
        *here = Value::Object(Map::new());
    }
    here.as_object_mut()
        .unwrap()
        .insert((*last).to_string(), replacement);
}

const FIELD_PATHS: &[&[&str]] = &[
    &["x402Version"],
    &["scheme"],
    &["network"],
    &["accepted"],
    &["accepted", "amount"],
    &["accepted", "maxAmountRequired"],
    &["accepted", "network"],
    &["accepted", "payTo"],
    &["accepted", "maxTimeoutSeconds"],
    &["accepted", "extra"],
    &["payload"],
    &["payload", "signature"],
    &["payload", "authorization", "value"],
    &["payload", "authorization", "validBefore"],
    &["payload", "authorization", "nonce"],
    &["payload", "authorization", "from"],
    &["resource"],
    &["extensions"],
];

// ---------------------------------------------------------------- header codec

proptest! {
    #[test]
    fn any_header_string_is_answered_not_panicked_on(value in ".*") {
        let _ = decode_payment(&value);
        let _ = header::decode::<PaymentRequired>(&value);
        let _ = header::decode::<SettleResponse>(&value);
    }

    #[test]
    fn any_base64_alphabet_string_is_answered(value in "[A-Za-z0-9+/=]{0,400}") {
        let _ = decode_payment(&value);
    }

    #[test]
    fn any_bytes_in_base64_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let encoded = STANDARD.encode(&bytes);
        let _ = decode_payment(&encoded);
        let _ = decode_payment(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn any_json_in_base64_is_answered(value in any_json()) {
        let encoded = STANDARD.encode(serde_json::to_vec(&value).unwrap());
        let _ = decode_payment(&encoded);
        let _ = header::decode::<PaymentRequired>(&encoded);
    }

    #[test]
    fn payments_round_trip_through_the_header(payment in payment()) {
        let encoded = header::encode(&payment).unwrap();
        let decoded = decode_payment(&encoded).unwrap();
        prop_assert_eq!(&decoded, &payment);
        prop_assert_eq!(header::encode(&decoded).unwrap(), encoded);
    }

    #[test]
    fn challenges_and_receipts_round_trip_through_the_header(
        required in version().prop_flat_map(payment_required),
        receipt in settle_response(X402Version::V2),
    ) {
        let encoded = header::encode(&required).unwrap();
        let decoded: PaymentRequired = header::decode(&encoded).unwrap();
        prop_assert_eq!(&decoded, &required);
        prop_assert_eq!(header::encode(&decoded).unwrap(), encoded);
        let encoded = header::encode(&receipt).unwrap();
        prop_assert_eq!(header::decode::<SettleResponse>(&encoded).unwrap(), receipt);
    }
}

// ---------------------------------------------------------------- wire types

proptest! {
    #[test]
    fn requirements_round_trip_in_both_versions(
        (version, requirement) in version().prop_flat_map(|v| (Just(v), requirements(v, network().boxed())))
    ) {
        let wire = requirement.to_wire(version);
        let back: PaymentRequirements = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(&back, &requirement);
        prop_assert_eq!(back.to_wire(version), wire);
    }

    #[test]
    fn payments_round_trip_as_json(payment in payment()) {
        let wire = serde_json::to_value(&payment).unwrap();
        let back: PaymentPayload = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(&back, &payment);
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), wire);
    }

    #[test]
    fn receipts_round_trip_in_both_versions(
        (version, receipt) in version().prop_flat_map(|v| (Just(v), settle_response(v)))
    ) {
        let wire = receipt.to_wire(version);
        let back: SettleResponse = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(&back, &receipt);
        prop_assert_eq!(back.to_wire(version), wire);
    }

    #[test]
    fn verify_answers_round_trip(answer in verify_response()) {
        let wire = serde_json::to_value(&answer).unwrap();
        let back: VerifyResponse = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(&back, &answer);
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), wire);
    }

    #[test]
    fn facilitator_requests_round_trip_in_both_versions(
        (version, payment, requirement) in version().prop_flat_map(|v| {
            let payment = match v {
                X402Version::V1 => payment_v1().boxed(),
                X402Version::V2 => payment_v2().boxed(),
            };
            (Just(v), payment, requirements(v, network().boxed()))
        })
    ) {
        let request = FacilitatorRequest {
            x402_version: version,
            payment_payload: payment,
            payment_requirements: requirement,
        };
        let wire = serde_json::to_value(&request).unwrap();
        let back: FacilitatorRequest = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(&back, &request);
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), wire);
    }

    #[test]
    fn any_json_is_answered_by_every_reader(value in any_json()) {
        read_everything(&value);
    }

    #[test]
    fn any_text_is_answered_by_every_reader(text in ".{0,200}") {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            read_everything(&value);
        }
        let _ = serde_json::from_str::<PaymentPayload>(&text);
        let _ = serde_json::from_str::<PaymentRequired>(&text);
        let _ = serde_json::from_str::<SettleResponse>(&text);
    }

    /// A valid payment with one field swapped for anything: readers get past the
    /// fields they check first and meet the odd one deep inside.
    #[test]
    fn a_valid_payment_with_one_field_replaced_is_answered(
        payment in payment(),
        path in prop::sample::select(FIELD_PATHS),
        replacement in any_json(),
    ) {
        let mut wire = serde_json::to_value(&payment).unwrap();
        put_at(&mut wire, path, replacement);
        read_everything(&wire);
        let required = json!({"x402Version": 2, "accepts": [wire.get("accepted").cloned().unwrap_or(Value::Null)]});
        read_everything(&required);
        let request = json!({"paymentPayload": wire, "paymentRequirements": wire.get("accepted").cloned().unwrap_or(Value::Null)});
        read_everything(&request);
        let _ = decode_payment(&STANDARD.encode(serde_json::to_vec(&wire).unwrap()));
    }
}

// ---------------------------------------------------------------- money

proptest! {
    #[test]
    fn any_amount_text_is_answered(text in ".*", decimals in any::<u8>()) {
        let _ = Money::parse(&text, decimals);
    }

    #[test]
    fn any_decimal_looking_text_is_answered(
        text in "[ $+-]{0,2}[0-9]{0,90}(\\.[0-9]{0,90})?[ ]?",
        decimals in any::<u8>(),
    ) {
        if let Ok(money) = Money::parse(&text, decimals) {
            prop_assert_eq!(Money::parse(&money.to_string(), decimals), Ok(money));
        }
    }

    #[test]
    fn atomic_to_decimal_to_atomic_is_exact(atomic in u256(), decimals in 0u8..=18) {
        let money = Money::from_atomic(atomic, decimals);
        let text = money.to_string();
        prop_assert_eq!(Money::parse(&text, decimals), Ok(money));
        prop_assert_eq!(Money::parse(&format!("${text}"), decimals), Ok(money));
        if !text.contains('.') && decimals > 0 {
            prop_assert_eq!(Money::parse(&format!("{text}.000"), decimals), Ok(money));
        }
    }

    #[test]
    fn derived_prices_are_exact_or_name_valid_neighbours(atomic in u256(), decimals in 0u8..=18) {
        let amount = Money::from_atomic(atomic, decimals);
        for price in [Price::PerRequest(amount), Price::PerMTok(amount), Price::PerHour(amount)] {
            let _ = price.approximation_note("USDC");
            match price.per_request() {
                Ok(per_request) => prop_assert!(per_request.atomic <= atomic),
                Err(MoneyError::NotWholeAtomic { below, above, .. }) => {
                    let below = Money::parse(&below, decimals).unwrap();
                    let above = Money::parse(&above, decimals).unwrap();
                    prop_assert!(below.atomic <= atomic && atomic < above.atomic);
                    for neighbour in [below, above] {
                        let again = match price {
                            Price::PerMTok(_) => Price::PerMTok(neighbour),
                            _ => Price::PerHour(neighbour),
                        };
                        prop_assert!(again.per_request().is_ok(), "{neighbour} is not valid");
                    }
                }
                Err(MoneyError::Overflow(_)) => {}
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
