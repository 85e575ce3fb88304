//! agora's facilitator: an x402 facilitator that runs in-process (for the seller's
//! gateway and `agora demo`) or as a server (`agora facilitator`), settling EIP-3009
//! USDC payments from its own key with a persisted replay guard and a crash-safe
//! settlement journal.

mod chains;
mod embedded;
mod router;
pub mod store;

pub use chains::{ChainsError, node_name};
pub use embedded::{
    BatchConfig, ChainConfig, DEFAULT_GAS_LIMIT_CAP, EmbeddedConfig, EmbeddedFacilitator,
    MULTICALL3, OpenError, RpcCounts, network_of_rpc,
};
pub use router::{
    ApiKey, MAX_BODY_BYTES, MIN_API_KEY_CHARS, WeakApiKey, metrics_router, router, router_with_key,
};
