//! The verify and settle answers the facilitator gives: refusals, confirmations and
//! the "still pending" settle, built in one place so every path words them alike.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use x402::{ErrorReason, Invalid, Network, SettleResponse, VerifyResponse};

use crate::store::{Claim, GuardState, Settlement};

/// Why a claim that was not granted refuses the authorization.
pub(super) fn refusal(verdict: Claim) -> Invalid {
    match verdict {
        Claim::Settled => Invalid::new(
            ErrorReason::NonceAlreadyUsed,
            "this authorization was already settled; sign a new one",
        ),
        Claim::InFlight | Claim::Granted => Invalid::new(
            ErrorReason::NonceAlreadyUsed,
            "this authorization is already being used by another request; sign a new one",
        ),
    }
}

/// The answer for a settlement mined and paid.
pub(super) fn confirmed(
    payer: Address,
    hash: B256,
    network: Network,
    amount: U256,
) -> SettleResponse {
    SettleResponse {
        success: true,
        error_reason: None,
        error_message: None,
        payer: Some(payer),
        transaction: Some(hash),
        network,
        amount: Some(amount),
        extensions: None,
    }
}

/// The answer for a sent settlement whose outcome is not known yet: unsuccessful but
/// carrying the hash, which callers must read as "pending", never as "not charged".
pub(super) fn pending(
    row: &Settlement,
    payer: Address,
    network: Network,
    waited: Duration,
) -> SettleResponse {
    let hash = row.tx_hash.unwrap_or_default();
    failed_settle(
        Invalid::new(
            ErrorReason::UnexpectedSettleError,
            format!(
                "settlement {hash} was not mined within {}s; it is still pending, settle the same authorization again to learn its outcome",
                waited.as_secs()
            ),
        ),
        Some(payer),
        Some(hash),
        network,
    )
}

/// The error reason for a store failure while claiming for `want`.
pub(super) fn unexpected(want: GuardState) -> ErrorReason {
    match want {
        GuardState::Reserved => ErrorReason::UnexpectedVerifyError,
        GuardState::Settling | GuardState::Settled => ErrorReason::UnexpectedSettleError,
    }
}

/// A verify that refuses the payment.
pub(super) fn invalid_verify(invalid: Invalid, payer: Option<Address>) -> VerifyResponse {
    VerifyResponse {
        is_valid: false,
        invalid_reason: Some(invalid.reason.as_str().to_string()),
        invalid_message: Some(invalid.message),
        payer,
    }
}

/// A settle that did not pay, with the payer and transaction when known.
pub(super) fn failed_settle(
    invalid: Invalid,
    payer: Option<Address>,
    transaction: Option<B256>,
    network: Network,
) -> SettleResponse {
    SettleResponse {
        success: false,
        error_reason: Some(invalid.reason.as_str().to_string()),
        error_message: Some(invalid.message),
        payer,
        transaction,
        network,
        amount: None,
        extensions: None,
    }
}
