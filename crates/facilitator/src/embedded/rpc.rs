//! Talking to a chain's RPC: connecting with every call counted, reading its chain id,
//! and keeping the RPC URL's path and query (where providers put API keys) out of
//! every error a caller sees.

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use x402::redact;
use x402::{FacilitatorError, Network};

use super::{Chain, OpenError, RpcCounts, rpc_count};

/// Reads the chain id behind `rpc_url` as a network.
pub async fn network_of_rpc(rpc_url: &str) -> Result<Network, OpenError> {
    let provider = connect(rpc_url, &RpcCounts::default())?;
    provider
        .get_chain_id()
        .await
        .map(Network::Eip155)
        .map_err(|e| OpenError::Rpc {
            url: redact::origin(rpc_url),
            message: scrub(&e.to_string(), rpc_url),
        })
}

/// A provider for `rpc_url` whose every call is counted in `counts`.
pub(super) fn connect(rpc_url: &str, counts: &RpcCounts) -> Result<DynProvider, OpenError> {
    let url = rpc_url.parse().map_err(|e| OpenError::Rpc {
        url: redact::origin(rpc_url),
        message: format!("not a URL: {e}"),
    })?;
    let client = alloy::rpc::client::ClientBuilder::default()
        .layer(rpc_count::CountingLayer(counts.clone()))
        .http(url);
    Ok(ProviderBuilder::new().connect_client(client).erased())
}

/// `message` with every copy of the RPC URL cut down to its origin.
pub(super) fn scrub(message: &str, rpc_url: &str) -> String {
    if rpc_url.is_empty() {
        return message.to_string();
    }
    message.replace(rpc_url, &redact::origin(rpc_url))
}

/// An RPC failure as callers may see it: the RPC's origin only, never its path or
/// query (provider API keys live there); the full text goes to the log.
pub(super) fn unreachable(chain: &Chain, e: impl std::fmt::Display) -> FacilitatorError {
    let message = scrub(&e.to_string(), &chain.rpc_url);
    tracing::warn!(rpc = %redact::origin(&chain.rpc_url), "chain RPC failed: {message}");
    FacilitatorError::Unreachable {
        endpoint: redact::origin(&chain.rpc_url),
        message,
    }
}
