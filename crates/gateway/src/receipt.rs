//! Receipts: what a settle answer means for the buyer's money, and how the buyer
//! is shown it.
//!
//! A settlement receipt rides on every answer that follows a charge, in both
//! `PAYMENT-RESPONSE` (v2) and `X-PAYMENT-RESPONSE` (v1). When the outcome is not
//! known yet the buyer gets a `settlement_pending` receipt instead, never a fresh 402:
//! a 402 would make it sign again and could charge it twice.

use alloy::primitives::B256;
use axum::http::StatusCode;
use axum::http::header::{HeaderMap, HeaderValue};
use axum::response::Response;
use x402::header::{PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use x402::reason::{ErrorReason, Invalid};
use x402::wire::{FacilitatorRequest, SettleResponse, X402Version};

use crate::respond;

/// What a settle told us about the money.
pub(crate) enum Settled {
    /// Charged; the answer must carry this receipt.
    Charged(SettleResponse),
    /// Not charged, for this reason.
    NotCharged(Invalid),
    /// Not known yet; the transaction if one was named.
    Unknown(Option<B256>, String),
}

/// Reads the facilitator's settle answer; `earlier` is the transaction an earlier
/// settle of the same authorization named, if any.
pub(crate) fn read(receipt: SettleResponse, earlier: Option<B256>) -> Settled {
    if receipt.success {
        return Settled::Charged(receipt);
    }
    let reason = reason_from_wire(receipt.error_reason.as_deref());
    if let Some(tx) = receipt.transaction {
        // A transaction went out: until the chain says otherwise, money may move.
        return Settled::Unknown(
            Some(tx),
            receipt
                .error_message
                .unwrap_or_else(|| "the settlement is not confirmed yet".into()),
        );
    }
    if reason == ErrorReason::NonceAlreadyUsed {
        // "The nonce is used" is not "this seller was paid": the buyer may have
        // cancelled the authorization or spent its nonce on another transfer. Without
        // a transaction that paid this payee (agora's facilitators name it, or answer
        // `authorization_spent_elsewhere`), the outcome is not known: the buyer is not
        // served, and not told "not charged" either, since an earlier settle of ours
        // may be the one that used it. The gateway has no chain RPC to look itself.
        return Settled::Unknown(
            earlier,
            "the facilitator says this authorization was already used but names no transaction that paid this seller"
                .into(),
        );
    }
    let message = receipt
        .error_message
        .unwrap_or_else(|| "settlement failed".into());
    Settled::NotCharged(Invalid::new(reason, message))
}

/// Puts `receipt`, in the buyer's protocol version, under both receipt headers.
pub(crate) fn put(headers: &mut HeaderMap, receipt: &SettleResponse, version: X402Version) {
    match x402::header::encode(&receipt.to_wire(version)) {
        Ok(encoded) => {
            respond::put(headers, PAYMENT_RESPONSE, &encoded);
            respond::put(headers, X_PAYMENT_RESPONSE, &encoded);
        }
        Err(e) => tracing::error!("cannot encode a payment receipt: {e}"),
    }
}

/// 503 `settlement_pending` with its receipt: the settle may have moved the money;
/// the same header sent again finds out and answers.
pub(crate) fn pending(
    request: &FacilitatorRequest,
    transaction: Option<B256>,
    why: String,
) -> Response {
    let shown = transaction.map_or_else(|| "not known yet".to_string(), |t| t.to_string());
    let mut response = respond::retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "settlement_pending",
        "settlement_pending",
        format!(
            "{why}; the outcome of your payment is not known yet (transaction {shown}). Do not sign a new payment: retry with the same payment header, and you get the answer if it was charged, or a 402 if it was not; it is charged at most once"
        ),
        5,
    );
    let receipt = SettleResponse {
        success: false,
        error_reason: Some("settlement_pending".to_string()),
        error_message: Some(why),
        payer: Some(request.payment_payload.payload.authorization.from),
        transaction,
        network: request.payment_requirements.network.clone(),
        amount: None,
        extensions: None,
    };
    put(response.headers_mut(), &receipt, request.x402_version);
    if let Some(tx) = transaction
        && let Ok(v) = HeaderValue::from_str(&tx.to_string())
    {
        response.headers_mut().insert("x-settlement-transaction", v);
    }
    response
}

/// 503 `paid_not_served` with the original receipt: the buyer paid earlier, but the
/// service failed (`status`) when called again; the payment stays redeemable.
pub(crate) fn not_served(
    receipt: &SettleResponse,
    version: X402Version,
    status: StatusCode,
) -> Response {
    let mut response = respond::retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "paid_not_served",
        "upstream_failed_after_payment",
        format!(
            "you already paid for this call (transaction {}), but the service failed to answer ({status}); resend the same request (same method, path, query and body) with the same payment header to get the answer, it is not charged again",
            receipt.transaction.unwrap_or_default(),
        ),
        5,
    );
    put(response.headers_mut(), receipt, version);
    response
}

/// Maps a facilitator's reason string back to ours; unknown codes become "invalid
/// payload" (the facilitator's message is kept beside it).
pub(crate) fn reason_from_wire(reason: Option<&str>) -> ErrorReason {
    reason
        .and_then(ErrorReason::from_wire)
        .unwrap_or(ErrorReason::InvalidPayload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_reasons_map_back() {
        assert_eq!(
            reason_from_wire(Some("invalid_exact_evm_nonce_already_used")),
            ErrorReason::NonceAlreadyUsed
        );
        assert_eq!(
            reason_from_wire(Some("made_up")),
            ErrorReason::InvalidPayload
        );
        assert_eq!(reason_from_wire(None), ErrorReason::InvalidPayload);
    }
}
