//! The embedded facilitator: verifies EIP-3009 payments against the chain and settles
//! them by sending `transferWithAuthorization` from its own key.
//!
//! Verification follows the reference order (offline checks, then an `eth_call`
//! simulation with one diagnostic read on failure); simulations that meet one in
//! flight on their chain leave together as one Multicall3 `eth_call`. Every
//! authorization passes a persisted replay guard before any chain work, and every
//! settlement is journaled before it is broadcast.
//!
//! Settling is idempotent per authorization: settling one that this facilitator
//! already settled answers the original receipt, and settling one whose transaction is
//! still out waits on that transaction instead of sending another. So a gateway that
//! lost a settle's answer (a timeout, a crash) simply settles again. An outcome that
//! is not known yet is never reported as a failure: the journal keeps the transaction
//! `sent`, and a background resolver settles the question by receipt or by the
//! token's `authorizationState`, rebroadcasting forgotten transactions and raising the
//! fees of stuck ones.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{Transaction, TxEnvelope};
use alloy::eips::{Decodable2718, Encodable2718};
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::RpcError;
use x402::eip3009::{self, IEip3009Token};
use x402::facilitator::BoxFuture;
use x402::redact;
use x402::time::unix_now;
use x402::{
    ErrorReason, Facilitator, FacilitatorError, FacilitatorRequest, Invalid, Network,
    SettleResponse, Supported, SupportedKind, VerifyResponse, X402Version,
};

mod batch;
mod resolve;
mod rpc_count;
mod settle;
mod simulate;
mod verify;
mod watch;

pub use batch::{BatchConfig, MULTICALL3};
pub use rpc_count::RpcCounts;

use crate::store::{
    AuthorizationKey, Claim, GuardState, Settlement, SettlementStatus, Store, StoreError,
};

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

/// Fee raises per settlement before the resolver only waits.
const MAX_FEE_BUMPS: usize = 5;

/// A pending row older than this was abandoned mid-send (a live send takes well
/// under a second between its two journal writes).
const ABANDONED_PENDING_SECONDS: u64 = 60;

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
fn connect(rpc_url: &str, counts: &RpcCounts) -> Result<DynProvider, OpenError> {
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
fn scrub(message: &str, rpc_url: &str) -> String {
    if rpc_url.is_empty() {
        return message.to_string();
    }
    message.replace(rpc_url, &redact::origin(rpc_url))
}

struct Chain {
    network: Network,
    chain_id: u64,
    rpc_url: String,
    provider: DynProvider,
    /// Tokens settled on this chain.
    assets: Vec<Address>,
    /// The chain's known tokens (USDC): settled with a fixed, capped gas limit and
    /// no second simulation (verify simulated), so they may share a batch.
    batchable: Vec<Address>,
    /// Receipts of every transaction in flight, and the fee estimate per block.
    watch: Arc<watch::Watcher>,
    /// The chain's sender, which alone holds the signer's nonce.
    jobs: tokio::sync::mpsc::UnboundedSender<batch::Job>,
    /// Its batching: as configured, or off without Multicall3 on the chain.
    batch: BatchConfig,
    /// The chain's verify simulator, when it batches.
    simulator: Option<tokio::sync::mpsc::UnboundedSender<simulate::Job>>,
}

/// The in-process facilitator. Dropping it stops its background resolver and its
/// senders.
pub struct EmbeddedFacilitator {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Inner {
    chains: HashMap<u64, Chain>,
    signer_address: Address,
    wallet: EthereumWallet,
    store: Arc<Store>,
    receipt_timeout: Duration,
    reservation_seconds: u64,
    gas_limit_cap: u64,
    bump_after: Duration,
    rpc_calls: RpcCounts,
}

/// A payment whose signature checked out, with where to settle it.
struct Checked<'a> {
    chain: &'a Chain,
    key: AuthorizationKey,
    request: &'a FacilitatorRequest,
}

impl EmbeddedFacilitator {
    /// Connects to each chain, checks its chain id, opens (and locks) the database,
    /// looks once at settlements a previous run left open, and starts the resolver.
    pub async fn open(config: EmbeddedConfig) -> Result<Self, OpenError> {
        if config.chains.is_empty() {
            return Err(OpenError::NoChains);
        }
        let mut chains = HashMap::new();
        let mut receivers = Vec::new();
        let mut tasks = Vec::new();
        let rpc_calls = RpcCounts::default();
        for chain in &config.chains {
            let expected = chain
                .network
                .chain_id()
                .ok_or_else(|| OpenError::NotEvm(chain.network.caip2()))?;
            let actual = network_of_rpc(&chain.rpc_url).await?;
            if actual.chain_id() != Some(expected) {
                return Err(OpenError::WrongChain {
                    url: redact::origin(&chain.rpc_url),
                    expected: chain.network.caip2(),
                    actual: actual.chain_id().unwrap_or_default(),
                });
            }
            let batchable: Vec<Address> = chain
                .network
                .known()
                .map(|k| vec![k.usdc.address])
                .unwrap_or_default();
            let mut assets = batchable.clone();
            assets.extend(config.extra_assets.iter().copied());
            let provider = connect(&chain.rpc_url, &rpc_calls)?;
            let batch = if config.batch.max_size > 1
                && batch::multicall_deployed(&provider, &chain.network, &chain.rpc_url).await
            {
                batch::fitting(
                    &provider,
                    &chain.network,
                    config.batch,
                    config.gas_limit_cap,
                )
                .await
            } else {
                BatchConfig::OFF
            };
            let simulator = (batch.max_size > 1).then(|| {
                let (sims, receiver) = tokio::sync::mpsc::unbounded_channel();
                tasks.push(tokio::spawn(simulate::run(
                    provider.clone(),
                    config.signer.address(),
                    batch.max_size,
                    receiver,
                )));
                sims
            });
            let (jobs, receiver) = tokio::sync::mpsc::unbounded_channel();
            receivers.push((expected, receiver));
            chains.insert(
                expected,
                Chain {
                    network: chain.network.clone(),
                    chain_id: expected,
                    rpc_url: chain.rpc_url.clone(),
                    watch: watch::Watcher::start(provider.clone(), config.receipt_timeout),
                    provider,
                    assets,
                    batchable,
                    jobs,
                    batch,
                    simulator,
                },
            );
        }
        let store = Arc::new(Store::open(&config.db_path)?);
        let inner = Arc::new(Inner {
            chains,
            signer_address: config.signer.address(),
            wallet: EthereumWallet::from(config.signer),
            store,
            receipt_timeout: config.receipt_timeout,
            reservation_seconds: config.reservation_seconds,
            gas_limit_cap: config.gas_limit_cap,
            bump_after: config.bump_after,
            rpc_calls,
        });
        inner.resolve_pass(true).await?;
        tasks.extend(
            receivers
                .into_iter()
                .map(|(chain_id, jobs)| tokio::spawn(batch::run(inner.clone(), chain_id, jobs))),
        );
        tasks.push(tokio::spawn(resolve_forever(
            Arc::downgrade(&inner),
            config.resolve_interval,
        )));
        Ok(Self { inner, tasks })
    }

    /// JSON-RPC calls made so far, by method: the cost that RPC providers bill and
    /// rate-limit.
    pub fn rpc_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner.rpc_calls.snapshot()
    }

    /// Prometheus text for the facilitator's own counters (RPC calls by method).
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP agora_facilitator_rpc_calls_total JSON-RPC calls the facilitator made, by method.\n# TYPE agora_facilitator_rpc_calls_total counter\n",
        );
        for (method, count) in self.rpc_calls() {
            out.push_str(&format!(
                "agora_facilitator_rpc_calls_total{{method=\"{method}\"}} {count}\n"
            ));
        }
        out
    }

    /// The address that sends settlements (needs gas on every chain).
    pub fn signer_address(&self) -> Address {
        self.inner.signer_address
    }

    /// The settlement journal, oldest first.
    pub fn journal(&self) -> Result<Vec<Settlement>, StoreError> {
        self.inner.store.journal()
    }

    /// Looks at every open settlement once: the resolver's pass, for callers that
    /// want it now (tests, and operators after fixing an RPC).
    pub async fn resolve_open_settlements(&self) -> Result<(), StoreError> {
        self.inner.resolve_pass(false).await
    }
}

impl Drop for EmbeddedFacilitator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The background resolver: a pass every `interval` while the facilitator lives.
async fn resolve_forever(inner: std::sync::Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.resolve_pass(false).await {
            tracing::warn!("settlement resolver: {e}");
        }
    }
}

impl Inner {
    /// Runs `work` on the store off the async workers: SQLite waits for the disk.
    async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| StoreError::Corrupt(format!("a database task failed: {e}")))?
    }
}

/// The signed transaction behind a journal row.
fn decode(raw: &[u8]) -> Option<TxEnvelope> {
    TxEnvelope::decode_2718(&mut &raw[..]).ok()
}

fn refusal(verdict: Claim) -> Invalid {
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

fn confirmed(payer: Address, hash: B256, network: Network, amount: U256) -> SettleResponse {
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
fn pending(row: &Settlement, payer: Address, network: Network, waited: Duration) -> SettleResponse {
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

fn unexpected(want: GuardState) -> ErrorReason {
    match want {
        GuardState::Reserved => ErrorReason::UnexpectedVerifyError,
        GuardState::Settling | GuardState::Settled => ErrorReason::UnexpectedSettleError,
    }
}

/// An RPC failure as callers may see it: the RPC's origin only, never its path or
/// query (provider API keys live there); the full text goes to the log.
fn unreachable(chain: &Chain, e: impl std::fmt::Display) -> FacilitatorError {
    let message = scrub(&e.to_string(), &chain.rpc_url);
    tracing::warn!(rpc = %redact::origin(&chain.rpc_url), "chain RPC failed: {message}");
    FacilitatorError::Unreachable {
        endpoint: redact::origin(&chain.rpc_url),
        message,
    }
}

fn invalid_verify(invalid: Invalid, payer: Option<Address>) -> VerifyResponse {
    VerifyResponse {
        is_valid: false,
        invalid_reason: Some(invalid.reason.as_str().to_string()),
        invalid_message: Some(invalid.message),
        payer,
    }
}

fn failed_settle(
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

impl Facilitator for EmbeddedFacilitator {
    fn metrics(&self) -> String {
        self.render_metrics()
    }

    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(self.inner.verify_request(request))
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(self.inner.settle_request(request))
    }

    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>> {
        let mut kinds = Vec::new();
        let mut chains: Vec<&Chain> = self.inner.chains.values().collect();
        chains.sort_by_key(|c| c.chain_id);
        for chain in chains {
            for version in [X402Version::V1, X402Version::V2] {
                kinds.push(SupportedKind {
                    x402_version: version,
                    scheme: x402::wire::SCHEME_EXACT.to_string(),
                    network: chain.network.clone(),
                    extra: None,
                });
            }
        }
        let signers = [(
            "eip155:*".to_string(),
            vec![self.inner.signer_address.to_checksum(None)],
        )]
        .into_iter()
        .collect();
        Box::pin(std::future::ready(Ok(Supported {
            kinds,
            extensions: Vec::new(),
            signers,
        })))
    }

    fn release<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            if let Ok(checked) = self.inner.check(request) {
                self.inner.release_key(checked.key).await;
            }
            Ok(())
        })
    }
}
