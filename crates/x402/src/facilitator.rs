//! The facilitator seam: whoever checks a payment and moves the money.
//!
//! A seller's gateway and agora's own facilitator server call this trait without
//! knowing whether the work happens in-process (the embedded facilitator, which signs
//! settlement transactions itself) or at a remote x402 facilitator over HTTP.

use std::future::Future;
use std::pin::Pin;

use crate::wire::{FacilitatorRequest, SettleResponse, Supported, VerifyResponse};

/// A boxed future, so facilitators can be used as `Arc<dyn Facilitator>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The facilitator could not give an answer (as opposed to answering "invalid").
///
/// Callers treat every variant as "try again later": a gateway answers 503 and never
/// calls the upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// Connection refused, DNS, TLS, or the chain RPC behind an embedded facilitator.
    #[error("facilitator {endpoint} is unreachable: {message}")]
    Unreachable {
        /// The facilitator URL or RPC endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// No answer in time.
    #[error("facilitator {endpoint} did not answer within {seconds}s")]
    Timeout {
        /// The facilitator URL.
        endpoint: String,
        /// The limit.
        seconds: u64,
    },
    /// An answer that is not an x402 response.
    #[error("facilitator {endpoint} answered HTTP {status} with no usable x402 body: {body}")]
    BadResponse {
        /// The facilitator URL.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The request itself could not be processed (e.g. it could not be serialized).
    #[error("facilitator request failed: {0}")]
    Internal(String),
}

/// Verifies and settles x402 payments.
pub trait Facilitator: Send + Sync {
    /// Would this payment settle? Invalid payments are `Ok` with `is_valid: false`.
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>>;

    /// Moves the money. A refused or reverted settlement is `Ok` with `success: false`.
    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>>;

    /// What this facilitator can settle.
    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>>;

    /// Gives back an authorization that was verified but will not be settled (the
    /// upstream failed), so the buyer can retry with it. Remote facilitators hold no
    /// reservation, so the default does nothing.
    fn release<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Prometheus text of the facilitator's own counters (an embedded one counts its
    /// JSON-RPC calls, which providers bill and rate-limit), appended to the
    /// gateway's operator `/metrics`. Remote facilitators report nothing here.
    fn metrics(&self) -> String {
        String::new()
    }
}
