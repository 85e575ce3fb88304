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
use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{Transaction, TxEnvelope};
use alloy::eips::{Decodable2718, Encodable2718};
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
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

mod answers;
mod batch;
mod config;
mod resolve;
mod rpc;
mod rpc_count;
mod settle;
mod simulate;
mod verify;
mod watch;

pub use batch::{BatchConfig, MULTICALL3};
pub use config::{ChainConfig, DEFAULT_GAS_LIMIT_CAP, EmbeddedConfig, OpenError};
pub use rpc::network_of_rpc;
pub use rpc_count::RpcCounts;

use answers::{confirmed, failed_settle, invalid_verify, pending, refusal, unexpected};
use resolve::resolve_forever;
use rpc::{connect, scrub, unreachable};

use crate::store::{
    AuthorizationKey, Claim, GuardState, Settlement, SettlementStatus, Store, StoreError,
};

/// One chain as the running facilitator holds it: its provider, its tokens, and the
/// tasks that send and simulate for it.
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
