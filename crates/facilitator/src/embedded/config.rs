//! What an embedded facilitator is opened with, and why opening it fails: kept apart
//! from the running facilitator in `mod.rs` so an embedder reads the knobs and their
//! defaults in one place.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use x402::Network;

use super::BatchConfig;
use crate::store::StoreError;

/// One chain the facilitator settles on.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// The network, which must match the RPC's chain id.
    pub network: Network,
    /// JSON-RPC endpoint.
    pub rpc_url: String,
}

/// How to run an embedded facilitator.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Chains to serve.
    pub chains: Vec<ChainConfig>,
    /// The key that sends settlement transactions and pays their gas.
    pub signer: PrivateKeySigner,
    /// SQLite file for the replay guard and the settlement journal.
    pub db_path: PathBuf,
    /// How long a settle waits for its receipt before answering "not known yet".
    pub receipt_timeout: Duration,
    /// How long a verified authorization is held for its settle.
    pub reservation_seconds: u64,
    /// Tokens settled besides each chain's USDC: the facilitator pays gas for every
    /// settlement, so it settles only tokens its operator chose.
    pub extra_assets: Vec<Address>,
    /// Most gas one settlement may use; a token that wants more is refused rather
    /// than paid for.
    pub gas_limit_cap: u64,
    /// How often the background resolver looks at unresolved settlements.
    pub resolve_interval: Duration,
    /// How long a sent settlement may sit unmined before its fees are raised.
    pub bump_after: Duration,
    /// When settlements of a chain's known token share one Multicall3 transaction
    /// (and their verify simulations one `eth_call`).
    pub batch: BatchConfig,
}

/// Gas a USDC `transferWithAuthorization` needs with room to spare (about 80k).
pub const DEFAULT_GAS_LIMIT_CAP: u64 = 250_000;

impl EmbeddedConfig {
    /// Defaults: 30 s receipts, 5 min reservations, USDC only, 250k gas, a resolver
    /// pass every second, fee bumps after 30 s, and no batching.
    pub fn new(chains: Vec<ChainConfig>, signer: PrivateKeySigner, db_path: PathBuf) -> Self {
        Self {
            chains,
            signer,
            db_path,
            receipt_timeout: Duration::from_secs(30),
            reservation_seconds: 300,
            extra_assets: Vec::new(),
            gas_limit_cap: DEFAULT_GAS_LIMIT_CAP,
            resolve_interval: Duration::from_secs(1),
            bump_after: Duration::from_secs(30),
            batch: BatchConfig::OFF,
        }
    }
}

/// Why the facilitator could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No chains.
    #[error("no chain to serve: the configuration names no RPC endpoint")]
    NoChains,
    /// The RPC is down.
    #[error("cannot reach the RPC {url}: {message}")]
    Rpc {
        /// Endpoint (scheme and host only: RPC URLs carry API keys).
        url: String,
        /// Error.
        message: String,
    },
    /// The RPC serves another chain.
    #[error("the RPC {url} serves chain {actual}, not {expected}")]
    WrongChain {
        /// Endpoint (scheme and host only).
        url: String,
        /// Configured network.
        expected: String,
        /// What the RPC said.
        actual: u64,
    },
    /// A non-EVM network.
    #[error("{0} is not an EVM network; the embedded facilitator settles eip155 chains only")]
    NotEvm(String),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
}
