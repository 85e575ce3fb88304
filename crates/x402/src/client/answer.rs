//! Reading the server's answer to a paid request: delivered (with the receipt from
//! `PAYMENT-RESPONSE` or `X-PAYMENT-RESPONSE`, body left streaming), pending (503:
//! resend the same header), or refused (402 again, with the server's reason, and a
//! changed `payTo` called out as such).

use std::time::Duration;

use alloy::primitives::{Address, B256};
use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use super::ClientError;
use super::challenge::{Challenge, MAX_CHALLENGE_BODY_BYTES};
use super::sign::SignedPayment;
use crate::header::{self, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use crate::wire::SettleResponse;

/// An answer to a paid request that is neither 402 nor 503. The body is not read:
/// it streams from [`Delivered::response`] as the server sends it.
#[derive(Debug)]
pub struct Delivered {
    /// The live response; read it with `bytes_stream()` for SSE.
    pub response: Response,
    /// The receipt, when the server sent a readable one. A success without one
    /// means the server did not say whether it charged.
    pub receipt: Option<SettleResponse>,
    /// Why a receipt header that was present could not be read.
    pub receipt_error: Option<String>,
    /// What was sent (already persisted by the caller, ideally).
    pub signed: SignedPayment,
}

impl Delivered {
    /// The settlement transaction, when the receipt says the payment was charged.
    pub fn charged_in(&self) -> Option<B256> {
        self.receipt
            .as_ref()
            .filter(|r| r.success)
            .and_then(|r| r.transaction)
    }
}

/// The server does not know yet whether the payment settled (503, for agora
/// `settlement_pending`): send the SAME [`SignedPayment`] again later, never a new one.
#[derive(Debug, Clone)]
pub struct Pending {
    /// What to resend.
    pub signed: SignedPayment,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The settlement transaction, when the server named it.
    pub transaction: Option<B256>,
    /// The server's reason code (`settlement_pending`, `payment_in_use`, ...).
    pub reason: Option<String>,
    /// The server's explanation.
    pub message: String,
}

/// What a paid request came to.
#[derive(Debug)]
pub enum Outcome {
    /// Served (see the status and the receipt).
    Delivered(Box<Delivered>),
    /// Not known yet: resend the same header.
    Pending(Box<Pending>),
}

/// The receipt in `PAYMENT-RESPONSE`, else `X-PAYMENT-RESPONSE`.
pub fn receipt(headers: &HeaderMap) -> (Option<SettleResponse>, Option<String>) {
    let Some(value) = headers
        .get(PAYMENT_RESPONSE)
        .or_else(|| headers.get(X_PAYMENT_RESPONSE))
    else {
        return (None, None);
    };
    match value
        .to_str()
        .map_err(|e| e.to_string())
        .and_then(|v| header::decode::<SettleResponse>(v).map_err(|e| e.to_string()))
    {
        Ok(receipt) => (Some(receipt), None),
        Err(e) => (None, Some(format!("unreadable payment receipt: {e}"))),
    }
}

/// Reads up to [`MAX_CHALLENGE_BODY_BYTES`] of a (small) error body.
pub(crate) async fn bounded_body(mut response: Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ClientError::http)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_CHALLENGE_BODY_BYTES {
            body.truncate(MAX_CHALLENGE_BODY_BYTES);
            break;
        }
    }
    Ok(body)
}

fn text_field(json: &Value, key: &str) -> Option<String> {
    json.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Classifies the answer to a request that carried `signed`.
pub(crate) async fn read(
    response: Response,
    signed: &SignedPayment,
) -> Result<Outcome, ClientError> {
    let status = response.status().as_u16();
    let (receipt, receipt_error) = receipt(response.headers());
    match status {
        402 => Err(refused(response, signed).await),
        503 => {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = bounded_body(response).await?;
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let reason = text_field(&json, "reason")
                .or_else(|| receipt.as_ref().and_then(|r| r.error_reason.clone()));
            let message = text_field(&json, "hint")
                .or_else(|| text_field(&json, "error"))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            Ok(Outcome::Pending(Box::new(Pending {
                signed: signed.clone(),
                retry_after,
                transaction: receipt.and_then(|r| r.transaction),
                reason,
                message,
            })))
        }
        _ => Ok(Outcome::Delivered(Box::new(Delivered {
            response,
            receipt,
            receipt_error,
            signed: signed.clone(),
        }))),
    }
}

/// A 402 after paying: the server's reason, or [`ClientError::PayToChanged`] when
/// its new offers on the same network and token pay someone else.
async fn refused(response: Response, signed: &SignedPayment) -> ClientError {
    let headers = response.headers().clone();
    let body = match bounded_body(response).await {
        Ok(body) => body,
        Err(e) => return e,
    };
    let challenge = Challenge::read(&headers, &body).ok();
    if let Some(c) = &challenge {
        let paid = &signed.requirement;
        let same_token: Vec<Address> = c
            .offers
            .iter()
            .map(|o| &o.requirement)
            .filter(|r| r.network == paid.network && r.asset == paid.asset)
            .map(|r| r.pay_to)
            .collect();
        if !same_token.is_empty() && !same_token.contains(&paid.pay_to) {
            return ClientError::PayToChanged {
                signed: paid.pay_to,
                offered: same_token,
            };
        }
    }
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reason = headers
        .get("x-payment-invalid-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            challenge.as_ref().and_then(|_| {
                headers
                    .get(header::PAYMENT_REQUIRED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| header::decode::<Value>(v).ok())
                    .and_then(|j| {
                        j.pointer("/extensions/paymentFailure/reason")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
            })
        })
        .or_else(|| text_field(&body_json, "reason"));
    let message = challenge
        .and_then(|c| c.error)
        .or_else(|| text_field(&body_json, "error"))
        .unwrap_or_else(|| "the server gave no reason".to_string());
    ClientError::Rejected { reason, message }
}
