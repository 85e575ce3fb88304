//! The values the store hands out: where an authorization stands in the guard, and
//! one settlement journal row with its status.

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::Serialize;

use super::AuthorizationKey;

/// Where an authorization stands in the replay guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardState {
    /// Verified and held for a settle until the lease ends.
    Reserved,
    /// A settlement is being sent or awaited.
    Settling,
    /// Paid.
    Settled,
}

impl GuardState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            GuardState::Reserved => "reserved",
            GuardState::Settling => "settling",
            GuardState::Settled => "settled",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "reserved" => Some(GuardState::Reserved),
            "settling" => Some(GuardState::Settling),
            "settled" => Some(GuardState::Settled),
            _ => None,
        }
    }
}

/// Status of one settlement in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettlementStatus {
    /// Recorded, not yet broadcast.
    Pending,
    /// Signed and (about to be) broadcast; hash and raw bytes are known.
    Sent,
    /// Mined with success.
    Confirmed,
    /// Reverted, refused, or abandoned.
    Failed,
}

impl SettlementStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SettlementStatus::Pending => "pending",
            SettlementStatus::Sent => "sent",
            SettlementStatus::Confirmed => "confirmed",
            SettlementStatus::Failed => "failed",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(SettlementStatus::Pending),
            "sent" => Some(SettlementStatus::Sent),
            "confirmed" => Some(SettlementStatus::Confirmed),
            "failed" => Some(SettlementStatus::Failed),
            _ => None,
        }
    }
}

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settlement {
    /// Row id.
    pub id: i64,
    /// Chain.
    pub chain_id: u64,
    /// Token.
    pub asset: Address,
    /// Payer.
    pub payer: Address,
    /// Authorization nonce.
    pub nonce: B256,
    /// Recipient.
    pub pay_to: Address,
    /// Atomic amount.
    pub amount: U256,
    /// Where it stands.
    pub status: SettlementStatus,
    /// Transaction hash once signed.
    pub tx_hash: Option<B256>,
    /// Signed transaction, kept to rebroadcast after a crash.
    #[serde(skip)]
    pub raw_tx: Option<Bytes>,
    /// Transactions this one replaced with higher fees; any of them may be the one
    /// that mines.
    pub prior_hashes: Vec<B256>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix time of the last change (sent, replaced, closed).
    pub updated_at: u64,
}

impl Settlement {
    /// The authorization this row settles.
    pub fn key(&self) -> AuthorizationKey {
        AuthorizationKey {
            chain_id: self.chain_id,
            asset: self.asset,
            payer: self.payer,
            nonce: self.nonce,
        }
    }
}
