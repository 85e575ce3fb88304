//! Why a paid call did not end in a delivered answer, one kind per thing the caller
//! does next: nothing was signed (change a limit), the outcome is open (resume with
//! the same authorization, never sign anew), the server refused the signed payment,
//! or something else failed. Each carries the data a front-end prints; the texts
//! name no command-line flag (the front-end adds its own).

use std::time::Duration;

use alloy::primitives::B256;
use reqwest::Url;
use wallet::budget::BudgetRefusal;
use wallet::ledger::Entry;
use x402::Money;
use x402::client::{ClientError, Price};

/// An error to pass through: the wallet store's, an RPC's, a sink's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why [`Buyer::pay`](crate::Buyer::pay) or [`Buyer::resume`](crate::Buyer::resume)
/// stopped.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// Refused before anything could be charged: nothing was signed, or a signature
    /// was dropped unsent.
    #[error(transparent)]
    Refused(Box<Refusal>),
    /// Sent, and the server does not know yet whether it settled: resume later with
    /// the same authorization.
    #[error(
        "the payment of {price} was sent but the server does not know yet whether it settled ({}); nothing new will be signed; resume it later",
        reason.as_deref().unwrap_or("pending")
    )]
    Pending {
        /// The ledger row of the payment.
        ledger_id: i64,
        /// What was authorized.
        price: Box<Price>,
        /// The server's reason code.
        reason: Option<String>,
        /// The settlement transaction, when the server named one.
        tx: Option<B256>,
        /// When to ask again, when the server said.
        retry_after: Option<Duration>,
    },
    /// Sent, and the answer was lost: it may or may not have been charged. Resume to
    /// get the answer with the same authorization.
    #[error(
        "the payment of {price} was sent but its answer was lost ({error}); it may or may not have been charged"
    )]
    Unknown {
        /// The ledger row of the payment.
        ledger_id: i64,
        /// What was authorized.
        price: Box<Price>,
        /// How the answer was lost.
        error: ClientError,
    },
    /// Charged, and the answer stopped part way (or the sink could not take it):
    /// resume to get it whole with the same authorization.
    #[error(
        "the payment of {price} was charged, but the answer did not arrive whole; the server owes the rest"
    )]
    Incomplete {
        /// The ledger row of the payment.
        ledger_id: i64,
        /// What was charged.
        price: Box<Price>,
        /// Why the answer stopped.
        #[source]
        source: BoxError,
    },
    /// The server refused the signed payment.
    #[error("{error}")]
    Rejected {
        /// The ledger row of the payment.
        ledger_id: i64,
        /// The server's refusal.
        error: ClientError,
        /// What the ledger knew of this authorization before this send.
        before: Before,
        /// Unix seconds until which the server could still submit it.
        valid_before: u64,
    },
    /// A resume found nothing it may send.
    #[error(transparent)]
    NotResumable(NotResumable),
    /// The answer was delivered, but its ledger row could not be updated.
    #[error("the answer was delivered, but ledger entry {ledger_id} could not be updated")]
    Unrecorded {
        /// The ledger row.
        ledger_id: i64,
        /// The ledger's error.
        #[source]
        source: BoxError,
    },
    /// The request could not be built from its spec.
    #[error("cannot build the request to {url}")]
    Request {
        /// Where it was going.
        url: Url,
        /// reqwest's reason.
        #[source]
        source: reqwest::Error,
    },
    /// Anything else: the wallet store, an RPC, the HTTP client, the free answer's
    /// sink.
    #[error(transparent)]
    Other(BoxError),
}

/// Why a call was refused before anything could be charged.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The policy refused every offer of the 402.
    #[error("{}; nothing was signed", policy_text(refusal, *cap_from_wallet))]
    Policy {
        /// x402's reason, naming the price.
        refusal: x402::client::Refusal,
        /// The wallet's per-call budget, not the caller's max, was the lower cap.
        cap_from_wallet: bool,
    },
    /// A 402 met no cap at all: neither a max nor a per-call budget is set.
    #[error("the price is {price} and no spending cap is set; nothing was signed")]
    NoCap {
        /// What the server asks.
        price: Price,
    },
    /// An earlier payment for the same URL is still open and may yet be charged.
    #[error(
        "ledger entry {} is a payment of wallet {wallet} for {url} that is still open and may yet be charged; nothing was signed",
        entry.id
    )]
    Open {
        /// The wallet.
        wallet: String,
        /// The URL.
        url: String,
        /// The open row.
        entry: Box<Entry>,
    },
    /// Signed, but it did not fit the wallet's budget when recorded (another payment
    /// spent the remainder meanwhile); the signature was dropped unsent.
    #[error("{0}; the signature was dropped unsent")]
    Budget(BudgetRefusal),
    /// The 402 could not be read, or its offer could not be signed.
    #[error("{0}; nothing was signed")]
    Unpayable(ClientError),
}

/// x402's refusal, or the wallet's per-call budget named when it was the lower cap.
fn policy_text(refusal: &x402::client::Refusal, cap_from_wallet: bool) -> String {
    match refusal {
        x402::client::Refusal::AboveMax { price, max } if cap_from_wallet => format!(
            "the price {price} is above the wallet's per-call budget of {}",
            Money::from_atomic(*max, price.money.decimals)
        ),
        other => other.to_string(),
    }
}

/// Why a resume sent nothing.
#[derive(Debug, thiserror::Error)]
pub enum NotResumable {
    /// No open or undelivered payment of this wallet for the URL.
    #[error("the ledger holds no payment of wallet {wallet} for {url} whose answer is missing")]
    Nothing {
        /// The wallet.
        wallet: String,
        /// The URL.
        url: String,
    },
    /// The stored signed payment does not read back.
    #[error(
        "ledger entry {ledger_id} holds an unreadable signed payment ({error}); nothing was sent"
    )]
    Unreadable {
        /// The ledger row.
        ledger_id: i64,
        /// Why it does not read.
        error: String,
    },
    /// The authorization expired unsettled: no server may take it any more.
    #[error(
        "the authorization of ledger entry {ledger_id} expired at {valid_before}; it cannot be sent again"
    )]
    Expired {
        /// The ledger row.
        ledger_id: i64,
        /// Unix seconds.
        valid_before: u64,
        /// The URL.
        url: String,
    },
}

/// What the ledger knew of an authorization before the send that was refused: a
/// refusal proves nothing about an earlier send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Sent for the first time (no retry).
    Fresh,
    /// Sent before (the automatic retry, or a resume of an open row): the refusal
    /// may be a replay guard refusing a payment that did settle, so the row stays
    /// unknown until the chain says.
    Sent,
    /// Charged already, its answer cut: the row stays settled whatever comes.
    Settled,
}
