//! How an indexer is set up: which chain and registry to follow, how carefully, where
//! to keep its database and where to serve the API. Defaults suit a local devnet and
//! are safe on public chains except `confirmations`, which a public deployment should
//! raise to its chain's reorg depth.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use reqwest::Url;

/// Blocks per `eth_getLogs` request unless the RPC refuses that many.
pub const DEFAULT_BLOCK_RANGE: u64 = 2000;

/// Port the API listens on by default (the one obol's indexer issue proposes).
pub const DEFAULT_PORT: u16 = 3400;

/// Everything [`crate::Indexer::open`] needs.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// JSON-RPC endpoint of the chain (anything that serves `eth_getLogs`).
    pub rpc_url: String,
    /// The Identity Registry; `None` uses ERC-8004's deployment on the chain.
    pub registry: Option<Address>,
    /// The chain id; `None` asks the RPC (`eth_chainId`) at startup.
    pub chain_id: Option<u64>,
    /// SQLite database file (created if missing).
    pub db_path: PathBuf,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Blocks to stay behind the head, so shallow reorgs never reach the index.
    pub confirmations: u64,
    /// Largest block range per `eth_getLogs`; halved while the RPC refuses a range.
    pub block_range: u64,
    /// First block to index (the registry's deployment block saves work on long chains).
    pub start_block: u64,
    /// Pause between polls once caught up.
    pub poll_interval: Duration,
    /// How many blocks back block hashes are kept to find a fork point; a deeper
    /// reorg re-indexes from `start_block`.
    pub reorg_window: u64,
    /// Limit on each RPC call, so a hung endpoint is noticed and retried.
    pub rpc_timeout: Duration,
    /// IPFS HTTP gateway that `ipfs://` URIs are read through.
    pub ipfs_gateway: Url,
    /// Limits on reading registration documents.
    pub fetch: FetchConfig,
}

impl IndexerConfig {
    /// A configuration with the defaults for everything but the RPC and the database.
    pub fn new(rpc_url: impl Into<String>, db_path: impl Into<PathBuf>) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            registry: None,
            chain_id: None,
            db_path: db_path.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            confirmations: 0,
            block_range: DEFAULT_BLOCK_RANGE,
            start_block: 0,
            poll_interval: Duration::from_secs(2),
            reorg_window: 1024,
            rpc_timeout: Duration::from_secs(30),
            ipfs_gateway: default_gateway(),
            fetch: FetchConfig::default(),
        }
    }
}

/// Whether `rpc` points at this machine (a devnet), where sellers serve their
/// registration files on loopback too, so fetching from private addresses is safe to
/// allow ([`FetchConfig::allow_private_addresses`]).
pub fn is_local_rpc(rpc: &str) -> bool {
    Url::parse(rpc)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
}

/// The public ipfs.io gateway.
fn default_gateway() -> Url {
    Url::parse("https://ipfs.io/").expect("a valid literal URL")
}

/// Limits on reading one registration document.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Total time for one attempt (connect, headers and body).
    pub timeout: Duration,
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Extra attempts after a timeout, connection failure, 5xx or 429.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub backoff: Duration,
    /// Documents fetched at once.
    pub concurrency: usize,
    /// Allow documents on loopback, private and link-local addresses. Off by default:
    /// URIs are chosen by whoever registers, and must not reach the indexer's network.
    /// Turn it on for a local devnet whose sellers serve documents on 127.0.0.1.
    pub allow_private_addresses: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_bytes: 256 * 1024,
            retries: 2,
            backoff: Duration::from_millis(250),
            concurrency: 8,
            allow_private_addresses: false,
        }
    }
}
