//! Verification and settlement reason codes, the strings of the current x402 spec.
//!
//! Peers treat these as opaque strings, so one enum owns the spelling and every
//! refusal carries a human message beside its code.

use std::fmt;

/// Why a payment was refused (the `invalidReason` / `errorReason` wire value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// Scheme is not `exact`.
    InvalidScheme,
    /// The requirement lacks the token's EIP-712 name/version.
    MissingEip712Domain,
    /// Paid on a different network than required, or one not served.
    InvalidNetwork,
    /// Signature does not recover to the payer, or is malformed.
    InvalidSignature,
    /// `to` is not the seller.
    RecipientMismatch,
    /// Expired, or expires too soon.
    ValidBefore,
    /// Not valid yet.
    ValidAfter,
    /// Value differs from the price.
    ValueMismatch,
    /// The nonce was used (settled or in flight).
    NonceAlreadyUsed,
    /// Token `name()` differs from the signed domain.
    TokenNameMismatch,
    /// Token `version()` differs from the signed domain.
    TokenVersionMismatch,
    /// The token has no EIP-3009.
    Eip3009NotSupported,
    /// The payer's balance is below the amount.
    InsufficientFunds,
    /// Simulation failed for another reason.
    SimulationFailed,
    /// The settlement transaction reverted.
    TransactionFailed,
    /// The payload or requirement could not be understood.
    InvalidPayload,
    /// Something unexpected while verifying.
    UnexpectedVerifyError,
    /// Something unexpected while settling.
    UnexpectedSettleError,
    /// Valid now, but not for as long as the seller may need to call its service and
    /// settle: paying would risk an authorization that expires mid-settlement.
    ExpiresTooSoon,
    /// The token is not one this facilitator settles.
    AssetNotAllowed,
    /// The authorization's nonce was spent without paying this seller: its payer
    /// cancelled it (`cancelAuthorization`) or used it for another transfer. Not
    /// charged, and not served.
    AuthorizationSpentElsewhere,
}

impl ErrorReason {
    /// Every code, for reading peers' strings back.
    pub const ALL: [ErrorReason; 21] = [
        ErrorReason::InvalidScheme,
        ErrorReason::MissingEip712Domain,
        ErrorReason::InvalidNetwork,
        ErrorReason::InvalidSignature,
        ErrorReason::RecipientMismatch,
        ErrorReason::ValidBefore,
        ErrorReason::ValidAfter,
        ErrorReason::ValueMismatch,
        ErrorReason::NonceAlreadyUsed,
        ErrorReason::TokenNameMismatch,
        ErrorReason::TokenVersionMismatch,
        ErrorReason::Eip3009NotSupported,
        ErrorReason::InsufficientFunds,
        ErrorReason::SimulationFailed,
        ErrorReason::TransactionFailed,
        ErrorReason::InvalidPayload,
        ErrorReason::UnexpectedVerifyError,
        ErrorReason::UnexpectedSettleError,
        ErrorReason::ExpiresTooSoon,
        ErrorReason::AssetNotAllowed,
        ErrorReason::AuthorizationSpentElsewhere,
    ];

    /// The code spelled `wire`, if it is one of ours.
    pub fn from_wire(wire: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == wire)
    }

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::InvalidScheme => "invalid_scheme",
            ErrorReason::MissingEip712Domain => "invalid_exact_evm_missing_eip712_domain",
            ErrorReason::InvalidNetwork => "invalid_network",
            ErrorReason::InvalidSignature => "invalid_exact_evm_payload_signature",
            ErrorReason::RecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch",
            ErrorReason::ValidBefore => "invalid_exact_evm_payload_authorization_valid_before",
            ErrorReason::ValidAfter => "invalid_exact_evm_payload_authorization_valid_after",
            ErrorReason::ValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch",
            ErrorReason::NonceAlreadyUsed => "invalid_exact_evm_nonce_already_used",
            ErrorReason::TokenNameMismatch => "invalid_exact_evm_token_name_mismatch",
            ErrorReason::TokenVersionMismatch => "invalid_exact_evm_token_version_mismatch",
            ErrorReason::Eip3009NotSupported => "invalid_exact_evm_eip3009_not_supported",
            ErrorReason::InsufficientFunds => "insufficient_funds",
            ErrorReason::SimulationFailed => "invalid_exact_evm_transaction_simulation_failed",
            ErrorReason::TransactionFailed => "invalid_exact_evm_transaction_failed",
            ErrorReason::InvalidPayload => "invalid_payload",
            ErrorReason::UnexpectedVerifyError => "unexpected_verify_error",
            ErrorReason::UnexpectedSettleError => "unexpected_settle_error",
            ErrorReason::ExpiresTooSoon => "expires_too_soon",
            ErrorReason::AssetNotAllowed => "asset_not_allowed",
            ErrorReason::AuthorizationSpentElsewhere => "authorization_spent_elsewhere",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the code peers match on and the sentence people read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Invalid {
    /// Machine code.
    pub reason: ErrorReason,
    /// What was wrong and what to do.
    pub message: String,
}

impl Invalid {
    /// Builds a refusal.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_codes_are_distinct() {
        for reason in ErrorReason::ALL {
            assert_eq!(ErrorReason::from_wire(reason.as_str()), Some(reason));
        }
        let mut codes: Vec<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorReason::ALL.len());
        assert_eq!(ErrorReason::from_wire("made_up"), None);
    }
}
