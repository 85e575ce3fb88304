//! The x402 header codec: standard base64 (RFC 4648, padded) of UTF-8 JSON.
//!
//! Header values come from strangers, so decoding is bounded and every way a value can
//! be wrong has its own error, which the gateway turns into a precise 400.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::PaymentPayload;

/// Request header carrying a v2 payment (official v2 clients).
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// Request header carrying a v1 payment (and obol's v2 payloads).
pub const X_PAYMENT: &str = "x-payment";
/// Response header carrying the v2 challenge.
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// Response header carrying the receipt (v2).
pub const PAYMENT_RESPONSE: &str = "payment-response";
/// Response header carrying the receipt (v1).
pub const X_PAYMENT_RESPONSE: &str = "x-payment-response";

/// Largest encoded header we decode; a real payment is about 1.5 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Each way an x402 header value can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Present but blank.
    #[error("the payment header is empty")]
    Empty,
    /// Over [`MAX_HEADER_BYTES`].
    #[error("the payment header is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not the standard alphabet (URL-safe base64 is a common mistake).
    #[error(
        "the payment header is not standard base64 ({0}); encode the JSON with the standard alphabet (+ and /) and padding"
    )]
    NotBase64(String),
    /// Decoded bytes are not UTF-8.
    #[error("the payment header does not decode to UTF-8 text")]
    NotUtf8,
    /// Decoded text is not JSON.
    #[error("the payment header does not decode to JSON: {0}")]
    NotJson(String),
    /// JSON, but not the expected object.
    #[error("the payment header JSON is not a valid x402 object: {0}")]
    Shape(String),
}

impl HeaderError {
    /// A stable code for `{reason}` in error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            HeaderError::Empty => "empty_header",
            HeaderError::TooLarge { .. } => "header_too_large",
            HeaderError::NotBase64(_) => "invalid_base64",
            HeaderError::NotUtf8 => "invalid_utf8",
            HeaderError::NotJson(_) => "invalid_json",
            HeaderError::Shape(_) => "invalid_payload",
        }
    }
}

/// Encodes any x402 object as a header value.
///
/// ```rust
/// use x402::header;
/// use x402::wire::SettleResponse;
///
/// // A receipt as the seller writes it into `PAYMENT-RESPONSE`, read back by the buyer.
/// let receipt: SettleResponse = serde_json::from_str(
///     r#"{"success":true,"transaction":"","network":"eip155:84532"}"#,
/// )?;
/// let value = header::encode(&receipt)?;
/// assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
/// assert_eq!(header::decode::<SettleResponse>(&value)?, receipt);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    Ok(STANDARD.encode(serde_json::to_vec(value)?))
}

/// Decodes a header value into `T`, bounded by [`MAX_HEADER_BYTES`].
///
/// ```rust
/// use x402::header::{self, HeaderError};
/// use x402::wire::Supported;
///
/// // Each way a stranger's header can be wrong has its own error and code.
/// let url_safe = header::decode::<Supported>("eyJr-_");
/// assert!(matches!(url_safe, Err(HeaderError::NotBase64(_))));
/// assert_eq!(header::decode::<Supported>("  ").unwrap_err().code(), "empty_header");
/// // `e30=` is `{}`: JSON, but not the object asked for.
/// assert!(matches!(header::decode::<Supported>("e30="), Err(HeaderError::Shape(_))));
/// ```
pub fn decode<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    let json = decode_json(value)?;
    serde_json::from_value(json).map_err(|e| HeaderError::Shape(e.to_string()))
}

/// Decodes a payment from `PAYMENT-SIGNATURE` or `X-PAYMENT`, whichever version it is.
pub fn decode_payment(value: &str) -> Result<PaymentPayload, HeaderError> {
    decode(value)
}

fn decode_json(value: &str) -> Result<serde_json::Value, HeaderError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(HeaderError::Empty);
    }
    if trimmed.len() > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLarge {
            len: trimmed.len(),
            max: MAX_HEADER_BYTES,
        });
    }
    if let Some(bad) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
    {
        return Err(HeaderError::NotBase64(format!(
            "unexpected character {bad:?}"
        )));
    }
    let bytes = STANDARD
        .decode(trimmed)
        .map_err(|e| HeaderError::NotBase64(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| HeaderError::NotUtf8)?;
    serde_json::from_str(text).map_err(|e| HeaderError::NotJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wire::{PaymentRequired, SettleResponse, X402Version};

    fn v2_payment_json() -> serde_json::Value {
        json!({
            "x402Version": 2,
            "accepted": {
                "scheme": "exact", "network": "eip155:84532", "amount": "1000",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}
            },
            "payload": {
                "signature": format!("0x{}1b", "11".repeat(64)),
                "authorization": {
                    "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                    "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                    "value": "1000", "validAfter": "0", "validBefore": "99999999999",
                    "nonce": format!("0x{}", "ab".repeat(32))
                }
            }
        })
    }

    #[test]
    fn payment_round_trips_through_a_header() {
        let payment: PaymentPayload = serde_json::from_value(v2_payment_json()).unwrap();
        let header = encode(&payment).unwrap();
        assert_eq!(decode_payment(&header).unwrap(), payment);
        let v1 = json!({"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": v2_payment_json()["payload"]});
        let header = encode(&v1).unwrap();
        assert_eq!(
            decode_payment(&header).unwrap().x402_version,
            X402Version::V1
        );
    }

    #[test]
    fn challenge_and_receipt_round_trip() {
        let required =
            json!({"x402Version": 2, "error": "", "accepts": [v2_payment_json()["accepted"]]});
        let parsed: PaymentRequired = decode(&encode(&required).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), required);
        let receipt = json!({"success": true, "transaction": format!("0x{}", "cd".repeat(32)), "network": "eip155:84532"});
        let parsed: SettleResponse = decode(&encode(&receipt).unwrap()).unwrap();
        assert!(parsed.success);
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        assert_eq!(decode_payment("").unwrap_err(), HeaderError::Empty);
        assert_eq!(decode_payment("   ").unwrap_err(), HeaderError::Empty);
        let huge = "A".repeat(MAX_HEADER_BYTES + 4);
        assert!(matches!(
            decode_payment(&huge),
            Err(HeaderError::TooLarge { .. })
        ));
        let url_safe = STANDARD
            .encode([0xfb, 0xff])
            .replace('+', "-")
            .replace('/', "_");
        assert!(matches!(
            decode_payment(&url_safe),
            Err(HeaderError::NotBase64(_))
        ));
        assert!(matches!(
            decode_payment("abc"),
            Err(HeaderError::NotBase64(_))
        ));
        assert_eq!(
            decode_payment(&STANDARD.encode([0xff, 0xfe, 0xfd])).unwrap_err(),
            HeaderError::NotUtf8
        );
        assert!(matches!(
            decode_payment(&STANDARD.encode("{not json")),
            Err(HeaderError::NotJson(_))
        ));
        assert!(matches!(
            decode_payment(&STANDARD.encode("{\"x402Version\":2}")),
            Err(HeaderError::Shape(_))
        ));
        let codes: std::collections::HashSet<_> = [
            HeaderError::Empty,
            HeaderError::TooLarge { len: 0, max: 0 },
            HeaderError::NotBase64(String::new()),
            HeaderError::NotUtf8,
            HeaderError::NotJson(String::new()),
            HeaderError::Shape(String::new()),
        ]
        .iter()
        .map(HeaderError::code)
        .collect();
        assert_eq!(codes.len(), 6);
    }
}
