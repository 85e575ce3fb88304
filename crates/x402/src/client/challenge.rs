//! Reading a 402: the requirements come from `PAYMENT-REQUIRED` (v2) when the server
//! sends it, else from the JSON body (v1), and each offer keeps its raw JSON so a v2
//! payment can echo `accepted` exactly as the server wrote it (servers match it by
//! deep equality).
//!
//! A 402 comes from a stranger, so every way it can be malformed is its own error
//! naming the offer and the field, and nothing is signed for a 402 we could not read.

use std::fmt;

use alloy::primitives::U256;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::header::{self, HeaderError, PAYMENT_REQUIRED};
use crate::network::Network;
use crate::wire::{PaymentRequirements, X402Version};

/// Largest 402 body read when the server sends no `PAYMENT-REQUIRED` header.
pub const MAX_CHALLENGE_BODY_BYTES: usize = 256 * 1024;

/// Fields every requirement must carry, in the order they are checked.
const REQUIRED_FIELDS: [&str; 5] = ["scheme", "network", "payTo", "asset", "maxTimeoutSeconds"];

/// One requirement the server offers: normalized for choosing and signing, raw for
/// echoing back.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Position in the server's `accepts`, for messages.
    pub index: usize,
    /// The requirement, normalized from either version.
    pub requirement: PaymentRequirements,
    /// The entry exactly as the server sent it (echoed as v2 `accepted`).
    pub raw: Value,
}

/// A 402 the client can pay: the version the server speaks and what it offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// The version the server speaks (v2 when `PAYMENT-REQUIRED` was present).
    pub version: X402Version,
    /// The server's `error` (why payment is required, or why the last one failed).
    pub error: Option<String>,
    /// v2: the `resource` object, raw, echoed in the payment.
    pub resource: Option<Value>,
    /// Offers on EVM networks, which this client can pay.
    pub offers: Vec<Offer>,
    /// Networks of offers this client cannot pay (other namespaces), for messages.
    pub skipped: Vec<String>,
}

/// What is wrong with an amount in a 402.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountProblem {
    /// Not a whole number (`1.5`, `"12a"`, `""`).
    NotInteger,
    /// Below zero.
    Negative,
    /// Does not fit in 256 bits.
    AboveU256,
}

impl fmt::Display for AmountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmountProblem::NotInteger => "is not a whole number of atomic units",
            AmountProblem::Negative => "is negative",
            AmountProblem::AboveU256 => "does not fit in 256 bits",
        })
    }
}

/// Why a 402 could not be read; the server is at fault, and nothing was signed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChallengeError {
    /// `PAYMENT-REQUIRED` is present but does not decode (bad base64, not JSON, ...).
    #[error(
        "the server's 402 is malformed: its PAYMENT-REQUIRED header is unreadable ({0}); nothing was signed, ask the seller to fix it"
    )]
    Header(HeaderError),
    /// No `PAYMENT-REQUIRED` header and a body that is not the v1 JSON challenge.
    #[error(
        "the server answered 402 without a PAYMENT-REQUIRED header and its body is not an x402 challenge ({0}); nothing was signed, this may not be an x402 server"
    )]
    Body(String),
    /// The challenge's `x402Version` is missing or not 1 or 2.
    #[error("the server's 402 has an unusable x402Version ({0}); nothing was signed")]
    Version(String),
    /// `accepts` is missing or empty.
    #[error("the server's 402 offers no way to pay (accepts is empty); nothing was signed")]
    NoAccepts,
    /// A requirement lacks a field.
    #[error(
        "the server's 402 is malformed: offer #{index} has no {field:?}; nothing was signed, ask the seller to fix it"
    )]
    MissingField {
        /// Position in `accepts`.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A requirement's amount is not a non-negative integer that fits in 256 bits.
    #[error(
        "the server's 402 is malformed: offer #{index} asks for {field} {value} which {problem}; nothing was signed, ask the seller to fix it"
    )]
    Amount {
        /// Position in `accepts`.
        index: usize,
        /// `amount` or `maxAmountRequired`.
        field: &'static str,
        /// The value as sent.
        value: String,
        /// What is wrong with it.
        problem: AmountProblem,
    },
    /// A requirement is otherwise unreadable (bad address, network, timeout).
    #[error(
        "the server's 402 is malformed: offer #{index} is unreadable ({message}); nothing was signed, ask the seller to fix it"
    )]
    Offer {
        /// Position in `accepts`.
        index: usize,
        /// The reader's complaint.
        message: String,
    },
}

impl Challenge {
    /// Reads a 402 from its headers and (buffered, bounded) body: v2 when
    /// `PAYMENT-REQUIRED` is present, else the v1 body.
    pub fn read(headers: &HeaderMap, body: &[u8]) -> Result<Self, ChallengeError> {
        if let Some(value) = headers.get(PAYMENT_REQUIRED) {
            let text = value
                .to_str()
                .map_err(|_| ChallengeError::Header(HeaderError::NotBase64("not ASCII".into())))?;
            let json: Value = header::decode(text).map_err(ChallengeError::Header)?;
            return Self::from_json(&json);
        }
        let json: Value = serde_json::from_slice(body)
            .map_err(|e| ChallengeError::Body(format!("not JSON: {e}")))?;
        if json.get("x402Version").is_none() {
            return Err(ChallengeError::Body("no x402Version in the body".into()));
        }
        Self::from_json(&json)
    }

    /// Reads a challenge from its JSON (either version).
    pub fn from_json(json: &Value) -> Result<Self, ChallengeError> {
        let version_value = json
            .get("x402Version")
            .ok_or_else(|| ChallengeError::Version("missing".into()))?;
        let version: X402Version = serde_json::from_value(version_value.clone())
            .map_err(|e| ChallengeError::Version(e.to_string()))?;
        let entries = match json.get("accepts") {
            Some(Value::Array(entries)) if !entries.is_empty() => entries,
            _ => return Err(ChallengeError::NoAccepts),
        };
        let mut offers = Vec::new();
        let mut skipped = Vec::new();
        for (index, raw) in entries.iter().enumerate() {
            let network = raw.get("network").and_then(Value::as_str);
            if let Some(name) = network
                && Network::parse(name).is_ok_and(|n| n.chain_id().is_none())
            {
                skipped.push(name.to_string());
                continue;
            }
            let requirement = read_offer(index, raw)?;
            offers.push(Offer {
                index,
                requirement,
                raw: raw.clone(),
            });
        }
        Ok(Self {
            version,
            error: json
                .get("error")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
            resource: json.get("resource").filter(|r| r.is_object()).cloned(),
            offers,
            skipped,
        })
    }
}

/// Checks one `accepts` entry field by field, then reads it with the wire type.
fn read_offer(index: usize, raw: &Value) -> Result<PaymentRequirements, ChallengeError> {
    if !raw.is_object() {
        return Err(ChallengeError::Offer {
            index,
            message: "not a JSON object".into(),
        });
    }
    for field in REQUIRED_FIELDS {
        if raw.get(field).is_none_or(Value::is_null) {
            return Err(ChallengeError::MissingField { index, field });
        }
    }
    let mut any_amount = false;
    for field in ["amount", "maxAmountRequired"] {
        if let Some(value) = raw.get(field).filter(|v| !v.is_null()) {
            any_amount = true;
            if let Err(problem) = check_amount(value) {
                return Err(ChallengeError::Amount {
                    index,
                    field,
                    value: value.to_string(),
                    problem,
                });
            }
        }
    }
    if !any_amount {
        return Err(ChallengeError::MissingField {
            index,
            field: "amount (or maxAmountRequired)",
        });
    }
    serde_json::from_value(raw.clone()).map_err(|e| ChallengeError::Offer {
        index,
        message: e.to_string(),
    })
}

/// Classifies an amount as the wire readers would read it, naming what is wrong.
fn check_amount(value: &Value) -> Result<U256, AmountProblem> {
    match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(U256::from(u))
            } else if n.as_i64().is_some_and(|i| i < 0) {
                Err(AmountProblem::Negative)
            } else {
                match n.as_f64() {
                    Some(f) if f < 0.0 => Err(AmountProblem::Negative),
                    Some(f) if f >= 2f64.powi(256) => Err(AmountProblem::AboveU256),
                    _ => Err(AmountProblem::NotInteger),
                }
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('-') {
                return Err(AmountProblem::Negative);
            }
            if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(AmountProblem::NotInteger);
                }
                return U256::from_str_radix(hex, 16).map_err(|_| AmountProblem::AboveU256);
            }
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AmountProblem::NotInteger);
            }
            U256::from_str_radix(t, 10).map_err(|_| AmountProblem::AboveU256)
        }
        _ => Err(AmountProblem::NotInteger),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::*;

    pub(crate) fn offer_json(network: &str, amount: &str) -> Value {
        json!({
            "scheme": "exact", "network": network, "amount": amount,
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2", "vendor": 7}
        })
    }

    fn v2_headers(json: &Value) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = header::encode(json).unwrap();
        headers.insert(PAYMENT_REQUIRED, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn read_v2(accepts: Vec<Value>) -> Result<Challenge, ChallengeError> {
        let json = json!({"x402Version": 2, "resource": {"url": "http://x/y"}, "accepts": accepts});
        Challenge::read(&v2_headers(&json), b"{}")
    }

    proptest::proptest! {
        #[test]
        fn any_402_is_read_or_refused_never_panicked_on(
            text in ".{0,300}",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            amount in ".{0,90}",
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&text) {
                headers.insert(PAYMENT_REQUIRED, value);
            }
            let _ = Challenge::read(&headers, &body);
            let _ = Challenge::read(&HeaderMap::new(), &body);
            let mut entry = offer_json("eip155:84532", "1");
            entry["amount"] = json!(amount);
            if read_v2(vec![entry]).is_ok() {
                let t = amount.trim();
                let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"));
                proptest::prop_assert!(
                    t.bytes().all(|b| b.is_ascii_digit())
                        || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())),
                    "{:?} was read as an amount", amount
                );
            }
        }
    }

    #[test]
    fn v2_is_read_from_the_header_and_keeps_the_raw_offer() {
        let c = read_v2(vec![offer_json("eip155:84532", "1000")]).unwrap();
        assert_eq!(c.version, X402Version::V2);
        assert_eq!(c.offers[0].requirement.amount, U256::from(1000));
        assert_eq!(c.offers[0].raw["extra"]["vendor"], 7);
        assert_eq!(c.resource.unwrap()["url"], "http://x/y");
    }

    #[test]
    fn v1_is_read_from_the_body_with_v1_names_and_max_amount_required() {
        let mut entry = offer_json("base-sepolia", "0");
        entry.as_object_mut().unwrap().remove("amount");
        entry["maxAmountRequired"] = json!("2500");
        let body = json!({"x402Version": 1, "error": "X-PAYMENT header is required", "accepts": [entry,
            {"scheme": "exact", "network": "solana-devnet", "maxAmountRequired": "1"}]});
        let c = Challenge::read(&HeaderMap::new(), body.to_string().as_bytes()).unwrap();
        assert_eq!(c.version, X402Version::V1);
        assert_eq!(c.offers.len(), 1);
        assert_eq!(c.offers[0].requirement.network, Network::BASE_SEPOLIA);
        assert_eq!(c.offers[0].requirement.amount, U256::from(2500));
        assert_eq!(c.skipped, vec!["solana-devnet".to_string()]);
        assert_eq!(c.error.as_deref(), Some("X-PAYMENT header is required"));
    }

    #[test]
    fn each_malformed_402_has_its_own_error() {
        let mut bad = HeaderMap::new();
        bad.insert(PAYMENT_REQUIRED, HeaderValue::from_static("eyJ4-_"));
        let e = Challenge::read(&bad, b"").unwrap_err();
        assert!(
            matches!(e, ChallengeError::Header(HeaderError::NotBase64(_))),
            "{e}"
        );
        assert!(e.to_string().contains("PAYMENT-REQUIRED"), "{e}");

        let mut not_json = HeaderMap::new();
        let v = STANDARD.encode("{nope");
        not_json.insert(PAYMENT_REQUIRED, HeaderValue::from_str(&v).unwrap());
        assert!(matches!(
            Challenge::read(&not_json, b""),
            Err(ChallengeError::Header(HeaderError::NotJson(_)))
        ));

        assert!(matches!(
            Challenge::read(&HeaderMap::new(), b"<html>pay</html>"),
            Err(ChallengeError::Body(_))
        ));
        assert!(matches!(read_v2(vec![]), Err(ChallengeError::NoAccepts)));

        let mut missing = offer_json("eip155:84532", "1");
        missing.as_object_mut().unwrap().remove("payTo");
        let e = read_v2(vec![missing]).unwrap_err();
        assert_eq!(
            e,
            ChallengeError::MissingField {
                index: 0,
                field: "payTo"
            }
        );
        assert!(e.to_string().contains("\"payTo\""), "{e}");

        let mut no_amount = offer_json("eip155:84532", "1");
        no_amount.as_object_mut().unwrap().remove("amount");
        assert!(matches!(
            read_v2(vec![no_amount]),
            Err(ChallengeError::MissingField { .. })
        ));

        let cases: [(Value, AmountProblem); 7] = [
            (json!("1.5"), AmountProblem::NotInteger),
            (json!(1.5), AmountProblem::NotInteger),
            (json!("12a"), AmountProblem::NotInteger),
            (json!("-1"), AmountProblem::Negative),
            (json!(-1), AmountProblem::Negative),
            (
                json!(format!("1{}", "0".repeat(80))),
                AmountProblem::AboveU256,
            ),
            (json!(1e90), AmountProblem::AboveU256),
        ];
        for (amount, problem) in cases {
            let mut entry = offer_json("eip155:84532", "1");
            entry["amount"] = amount.clone();
            match read_v2(vec![offer_json("eip155:84532", "1"), entry]) {
                Err(ChallengeError::Amount {
                    index: 1,
                    problem: p,
                    ..
                }) => {
                    assert_eq!(p, problem, "{amount}")
                }
                other => panic!("{amount}: {other:?}"),
            }
        }

        let mut bad_address = offer_json("eip155:84532", "1");
        bad_address["payTo"] = json!("0x1234");
        assert!(matches!(
            read_v2(vec![bad_address]),
            Err(ChallengeError::Offer { index: 0, .. })
        ));
        let e = Challenge::from_json(&json!({"x402Version": 7, "accepts": []})).unwrap_err();
        assert!(matches!(e, ChallengeError::Version(_)), "{e}");
    }
}
