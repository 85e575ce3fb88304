//! agora's ERC-8004 indexer: follows one Identity Registry through any JSON-RPC
//! endpoint into SQLite and serves an 8004scan-shaped API, so buyers can discover
//! sellers by OASF skill, domain, protocol, owner or text without a third-party
//! service.
//!
//! - `Registered`, `URIUpdated`, `MetadataSet` and ERC-721 `Transfer` are read with
//!   `eth_getLogs` in bounded ranges, behind a confirmation depth, with reorgs detected
//!   by block hash and rolled back from the stored events ([`sync`](crate::Indexer::sync));
//! - a persisted cursor makes a restart resume where it stopped, with no duplicates;
//! - registration documents are fetched by a separate worker (`data:`, `http(s)://`
//!   with size and time limits, `ipfs://` through a gateway), and a document that is
//!   malformed, too large, slow or unreachable is recorded on its agent without holding
//!   anything else up;
//! - [`Indexer::run`] does all of that and serves the API until shutdown;
//! - [`Indexer::agents`] answers the API's list query in process, for embedders that
//!   index into their own database (a one-off registry scan) and need no server.

mod agent;
mod api;
mod config;
mod events;
mod fetch;
mod query;
mod record;
mod store;
mod sync;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use x402::Network;

pub use config::{DEFAULT_BLOCK_RANGE, DEFAULT_PORT, FetchConfig, IndexerConfig, is_local_rpc};
pub use query::{AgentQuery, Sort, TagFilter, TagKind};
pub use record::{
    AgentPage, AgentRecord, ChainStats, FetchError, FetchStatus, MetadataValue, Stats,
};
pub use store::StoreError;
pub use sync::SyncReport;

use crate::fetch::Fetcher;
use crate::store::Store;
use crate::sync::{FollowConfig, Follower, Status};

/// Why the indexer could not start or go on; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The RPC URL does not parse.
    #[error(
        "the RPC URL {url:?} is not valid: {message}; pass an http(s) URL such as http://127.0.0.1:8545"
    )]
    RpcUrl {
        /// What was given.
        url: String,
        /// Why it does not parse.
        message: String,
    },
    /// The chain id had to be asked for and the RPC did not answer.
    #[error(
        "cannot ask {url} for its chain id: {message}; check the RPC URL, or pass the chain id explicitly"
    )]
    ChainId {
        /// The RPC.
        url: String,
        /// What failed.
        message: String,
    },
    /// No registry address was given and ERC-8004 has no known deployment on the chain.
    #[error("ERC-8004 has no known Identity Registry on chain {0}; pass the registry address")]
    UnknownRegistry(u64),
    /// The registry address holds no contract.
    #[error(
        "no contract at {registry} on chain {chain_id}; pass the address of the ERC-8004 Identity Registry on this chain"
    )]
    NoRegistry {
        /// The address given or derived.
        registry: Address,
        /// The chain.
        chain_id: u64,
    },
    /// The database file could not be opened or created.
    #[error(
        "cannot open the index database {path}: {message}; check that its directory is writable"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A database operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chain RPC call failed (the follower retries with backoff).
    #[error("RPC {action} failed: {message}")]
    Rpc {
        /// The JSON-RPC method.
        action: &'static str,
        /// What the RPC or transport said.
        message: String,
    },
    /// The HTTP client for documents could not be built.
    #[error("cannot set up the HTTP client for registration files: {0}")]
    HttpClient(String),
    /// The API address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}; pick a free port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A list query stopped before answering (its task panicked or was cancelled).
    #[error("the agent query did not finish: {0}; retry it")]
    Query(String),
    /// The API server stopped with an error.
    #[error("the indexer's HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// One indexer: a follower, a document fetcher and the API over one database.
pub struct Indexer {
    config: IndexerConfig,
    chain_id: u64,
    registry: Address,
    store: Arc<Store>,
    status: Arc<Status>,
    follower: Arc<Follower>,
    fetcher: Arc<Fetcher>,
    wake_fetcher: Arc<Notify>,
}

impl Indexer {
    /// Connects, settles the chain id and registry (asking the RPC where not given),
    /// and opens the database. A registry address with no code is refused when the RPC
    /// can say so; an RPC that is down only delays indexing, so the API still starts.
    pub async fn open(config: IndexerConfig) -> Result<Self, IndexerError> {
        let url = config.rpc_url.parse().map_err(|e| IndexerError::RpcUrl {
            url: config.rpc_url.clone(),
            message: format!("{e}"),
        })?;
        let provider: DynProvider = ProviderBuilder::new().connect_http(url).erased();
        let chain_id = match config.chain_id {
            Some(id) => id,
            None => {
                let asked = tokio::time::timeout(config.rpc_timeout, provider.get_chain_id()).await;
                match asked {
                    Ok(Ok(id)) => id,
                    Ok(Err(e)) => {
                        return Err(IndexerError::ChainId {
                            url: config.rpc_url.clone(),
                            message: e.to_string(),
                        });
                    }
                    Err(_) => {
                        return Err(IndexerError::ChainId {
                            url: config.rpc_url.clone(),
                            message: format!("no answer within {:?}", config.rpc_timeout),
                        });
                    }
                }
            }
        };
        let registry = match config.registry {
            Some(r) => r,
            None => erc8004::identity_registry(&Network::Eip155(chain_id))
                .ok_or(IndexerError::UnknownRegistry(chain_id))?,
        };
        let code = tokio::time::timeout(config.rpc_timeout, provider.get_code_at(registry)).await;
        if let Ok(Ok(code)) = code
            && code.is_empty()
        {
            return Err(IndexerError::NoRegistry { registry, chain_id });
        }

        let open_error = |message: String| IndexerError::Open {
            path: config.db_path.clone(),
            message,
        };
        if let Some(dir) = config
            .db_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let store = Arc::new(Store::open(&config.db_path).map_err(|e| open_error(e.to_string()))?);
        store.bind(chain_id, registry)?;
        let status = Arc::new(Status::starting(store.cursor(chain_id)?.map(|c| c.block)));

        let fetcher = Fetcher::new(config.fetch.clone(), config.ipfs_gateway.clone())
            .map_err(|e| IndexerError::HttpClient(e.to_string()))?;
        let wake_fetcher = Arc::new(Notify::new());
        let follower = Follower::new(
            provider,
            Arc::clone(&store),
            (chain_id, registry),
            FollowConfig {
                confirmations: config.confirmations,
                max_range: config.block_range.max(1),
                start_block: config.start_block,
                reorg_window: config.reorg_window,
                rpc_timeout: config.rpc_timeout,
            },
            Arc::clone(&status),
            Arc::clone(&wake_fetcher),
        );
        Ok(Self {
            config,
            chain_id,
            registry,
            store,
            status,
            follower: Arc::new(follower),
            fetcher: Arc::new(fetcher),
            wake_fetcher,
        })
    }

    /// The chain indexed.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The Identity Registry followed.
    pub fn registry(&self) -> Address {
        self.registry
    }

    /// The HTTP API, for embedding in another server.
    pub fn router(&self) -> Router {
        api::router(api::ApiState {
            store: Arc::clone(&self.store),
            status: Arc::clone(&self.status),
            chain_id: self.chain_id,
            registry: self.registry,
            confirmations: self.config.confirmations,
        })
    }

    /// Indexes once up to head minus confirmations (handling a reorg on the way) and
    /// returns; [`Indexer::run`] repeats this. For one-shot catch-up and tools.
    pub async fn sync(&self) -> Result<SyncReport, IndexerError> {
        self.follower.poll().await
    }

    /// Fetches every pending registration document and returns how many results were
    /// recorded; [`Indexer::run`] does this continuously in the background.
    pub async fn fetch_pending(&self) -> Result<usize, IndexerError> {
        Ok(Arc::clone(&self.fetcher)
            .work(
                Arc::clone(&self.store),
                self.chain_id,
                Arc::clone(&self.wake_fetcher),
                None,
            )
            .await?)
    }

    /// One page of the agents matching `query` and how many match in all: what
    /// `GET /api/v1/public/agents` answers, without going through HTTP.
    pub async fn agents(&self, query: AgentQuery) -> Result<(Vec<AgentRecord>, u64), IndexerError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.list(&query))
            .await
            .map_err(|e| IndexerError::Query(e.to_string()))?
            .map_err(IndexerError::Store)
    }

    /// Binds the configured address, then [`Indexer::serve`]s.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IndexerError> {
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| IndexerError::Bind { addr, source })?;
        self.serve(listener, shutdown).await
    }

    /// Indexes, fetches documents and serves the API on `listener` until `shutdown`
    /// resolves. Work stops between database transactions, so what was committed is
    /// exactly what the next start resumes from.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IndexerError> {
        let interval = self.config.poll_interval;
        let follow = tokio::spawn(Arc::clone(&self.follower).run(interval));
        let fetcher = Arc::clone(&self.fetcher);
        let (store, wake, chain_id) = (
            Arc::clone(&self.store),
            Arc::clone(&self.wake_fetcher),
            self.chain_id,
        );
        let fetch = tokio::spawn(async move {
            loop {
                let worked = Arc::clone(&fetcher)
                    .work(
                        Arc::clone(&store),
                        chain_id,
                        Arc::clone(&wake),
                        Some(interval),
                    )
                    .await;
                if let Err(e) = worked {
                    tracing::warn!(chain = chain_id, "registration fetching paused: {e}");
                    tokio::time::sleep(interval).await;
                }
            }
        });
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        follow.abort();
        fetch.abort();
        // Both tasks were aborted; their join results only say so.
        let _ = follow.await;
        let _ = fetch.await;
        served.map_err(IndexerError::Serve)
    }
}
