//! Round-trip tests of the wire types: every shape official clients send is read, and
//! written back exactly as they sent it.

use alloy::primitives::{U256, address};
use serde_json::{Value, json};

use super::*;
use crate::network::Network;

const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

fn v2_requirement() -> Value {
    json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "1000",
        "payTo": PAY_TO,
        "asset": USDC,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    })
}

fn v1_requirement() -> Value {
    json!({
        "scheme": "exact",
        "network": "base-sepolia",
        "maxAmountRequired": "1000",
        "resource": "http://127.0.0.1/x",
        "description": "a thing",
        "mimeType": "application/json",
        "payTo": PAY_TO,
        "asset": USDC,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    })
}

fn exact_payload(v: &str) -> Value {
    json!({
        "signature": format!("0x{}{}", "11".repeat(64), v),
        "authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "to": PAY_TO,
            "value": "1000",
            "validAfter": "1700000000",
            "validBefore": "1700000600",
            "nonce": format!("0x{}", "ab".repeat(32)),
        }
    })
}

#[test]
fn v2_requirement_round_trips_exactly() {
    let parsed: PaymentRequirements = serde_json::from_value(v2_requirement()).unwrap();
    assert_eq!(parsed.amount, U256::from(1000));
    assert_eq!(parsed.eip712_domain(), Some(("USDC", "2")));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), v2_requirement());
}

#[test]
fn v1_requirement_round_trips_exactly() {
    let parsed: PaymentRequirements = serde_json::from_value(v1_requirement()).unwrap();
    assert_eq!(parsed.network, Network::BASE_SEPOLIA);
    assert_eq!(parsed.to_wire(X402Version::V1), v1_requirement());
}

#[test]
fn requirement_reads_lenient_forms() {
    let mut r = v1_requirement();
    r["network"] = json!("eip155:84532");
    r["maxAmountRequired"] = json!(1000);
    r["maxTimeoutSeconds"] = json!("60");
    let parsed: PaymentRequirements = serde_json::from_value(r).unwrap();
    assert_eq!(parsed.amount, U256::from(1000));
    assert_eq!(parsed.max_timeout_seconds, 60);

    let mut both = v2_requirement();
    both["maxAmountRequired"] = json!("1000");
    assert!(serde_json::from_value::<PaymentRequirements>(both.clone()).is_ok());
    both["maxAmountRequired"] = json!("999");
    let err = serde_json::from_value::<PaymentRequirements>(both).unwrap_err();
    assert!(err.to_string().contains("disagree"), "{err}");

    let mut none = v2_requirement();
    none.as_object_mut().unwrap().remove("amount");
    assert!(serde_json::from_value::<PaymentRequirements>(none).is_err());
}

#[test]
fn extra_keeps_unknown_keys() {
    let mut r = v2_requirement();
    r["extra"]["assetTransferMethod"] = json!("eip3009");
    let parsed: PaymentRequirements = serde_json::from_value(r.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), r);
}

#[test]
fn payment_required_v2_round_trips_and_drops_non_evm_entries() {
    let solana = json!({
        "scheme": "exact", "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
        "amount": "1000", "payTo": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
        "asset": "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", "maxTimeoutSeconds": 60
    });
    let body = json!({
        "x402Version": 2,
        "error": "payment required",
        "resource": {"url": "http://127.0.0.1/x", "description": "d", "mimeType": "text/plain"},
        "accepts": [v2_requirement(), solana],
    });
    let parsed: PaymentRequired = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(parsed.accepts.len(), 1);
    let mut expected = body;
    expected["accepts"] = json!([v2_requirement()]);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), expected);
}

#[test]
fn payment_required_v1_round_trips() {
    let body = json!({"x402Version": 1, "error": "X-PAYMENT header is required", "accepts": [v1_requirement()]});
    let parsed: PaymentRequired = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(parsed.x402_version, X402Version::V1);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
}

#[test]
fn payment_payload_v2_round_trips() {
    let payload = json!({
        "x402Version": 2,
        "resource": {"url": "http://127.0.0.1/x"},
        "accepted": v2_requirement(),
        "payload": exact_payload("1b"),
    });
    let parsed: PaymentPayload = serde_json::from_value(payload.clone()).unwrap();
    assert_eq!(parsed.scheme, "exact");
    assert_eq!(parsed.network, Network::BASE_SEPOLIA);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), payload);
}

#[test]
fn payment_payload_v1_round_trips() {
    let payload = json!({
        "x402Version": 1, "scheme": "exact", "network": "base-sepolia",
        "payload": exact_payload("1c"),
    });
    let parsed: PaymentPayload = serde_json::from_value(payload.clone()).unwrap();
    assert_eq!(parsed.x402_version, X402Version::V1);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), payload);
}

#[test]
fn payload_reads_numbers_and_low_v() {
    let mut p = exact_payload("00");
    p["authorization"]["value"] = json!(1000);
    p["authorization"]["validAfter"] = json!(0);
    let payload = json!({"x402Version": "2", "accepted": v2_requirement(), "payload": p});
    let parsed: PaymentPayload = serde_json::from_value(payload).unwrap();
    assert_eq!(parsed.payload.signature[64], 27);
    assert_eq!(parsed.payload.authorization.value, U256::from(1000));
    let mut p = exact_payload("01");
    p["authorization"]["validBefore"] = json!("0x6553f358");
    let parsed: ExactEvmPayload = serde_json::from_value(p).unwrap();
    assert_eq!(parsed.signature[64], 28);
    assert_eq!(parsed.authorization.valid_before, U256::from(1700000600u64));
}

#[test]
fn payload_rejects_bad_versions_and_missing_parts() {
    let bad = [
        json!({"x402Version": 3, "accepted": v2_requirement(), "payload": exact_payload("1b")}),
        json!({"x402Version": 2, "payload": exact_payload("1b")}),
        json!({"x402Version": 1, "network": "base-sepolia", "payload": exact_payload("1b")}),
        json!({"x402Version": 2, "accepted": v2_requirement()}),
        json!({"x402Version": 2, "accepted": v2_requirement(), "payload": {"signature": "0xzz"}}),
    ];
    for b in bad {
        assert!(
            serde_json::from_value::<PaymentPayload>(b.clone()).is_err(),
            "{b}"
        );
    }
}

#[test]
fn facilitator_request_writes_requirements_in_its_version() {
    let payload: PaymentPayload = serde_json::from_value(json!({
        "x402Version": 1, "scheme": "exact", "network": "base-sepolia",
        "payload": exact_payload("1b"),
    }))
    .unwrap();
    let req = FacilitatorRequest {
        x402_version: X402Version::V1,
        payment_payload: payload,
        payment_requirements: serde_json::from_value(v1_requirement()).unwrap(),
    };
    let wire = serde_json::to_value(&req).unwrap();
    assert_eq!(wire["paymentRequirements"], v1_requirement());
    let back: FacilitatorRequest = serde_json::from_value(wire).unwrap();
    assert_eq!(back, req);
}

#[test]
fn verify_response_round_trips() {
    let invalid = json!({"isValid": false, "invalidReason": "invalid_exact_evm_payload_signature", "invalidMessage": "bad"});
    let parsed: VerifyResponse = serde_json::from_value(invalid.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), invalid);
    let valid = json!({"isValid": true, "payer": PAY_TO});
    let parsed: VerifyResponse = serde_json::from_value(valid.clone()).unwrap();
    assert_eq!(
        parsed.payer,
        Some(address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"))
    );
    assert_eq!(serde_json::to_value(&parsed).unwrap(), valid);
}

#[test]
fn settle_response_round_trips_in_both_versions() {
    let tx = format!("0x{}", "cd".repeat(32));
    let v2 = json!({"success": true, "payer": PAY_TO, "transaction": tx, "network": "eip155:84532", "amount": "1000"});
    let parsed: SettleResponse = serde_json::from_value(v2.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), v2);
    let v1 =
        json!({"success": true, "payer": PAY_TO, "transaction": tx, "network": "base-sepolia"});
    assert_eq!(parsed.to_wire(X402Version::V1), v1);

    let failed = json!({"success": false, "errorReason": "invalid_transaction_state", "transaction": "", "network": "base-sepolia", "payer": ""});
    let parsed: SettleResponse = serde_json::from_value(failed.clone()).unwrap();
    assert_eq!(parsed.transaction, None);
    assert_eq!(parsed.payer, None);
    assert_eq!(parsed.to_wire(X402Version::V1), failed);
}

#[test]
fn supported_reads_v1_and_v2_answers() {
    let v2 = json!({
        "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}],
        "extensions": [],
        "signers": {"eip155:*": [PAY_TO]}
    });
    let parsed: Supported = serde_json::from_value(v2.clone()).unwrap();
    assert!(parsed.supports("exact", &Network::BASE_SEPOLIA));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), v2);
    let v1 = json!({"kinds": [{"x402Version": 1, "scheme": "exact", "network": "base-sepolia"}]});
    let parsed: Supported = serde_json::from_value(v1).unwrap();
    assert!(parsed.supports("exact", &Network::BASE_SEPOLIA));
    assert!(!parsed.supports("exact", &Network::Eip155(8453)));
}
