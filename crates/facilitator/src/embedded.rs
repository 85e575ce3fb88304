//! The embedded facilitator: verifies EIP-3009 payments against the chain and settles
//! them by sending `transferWithAuthorization` from its own key.
//!
//! Verification follows the reference order (offline checks, then an `eth_call`
//! simulation with one diagnostic read on failure). Every authorization passes a
//! persisted replay guard before any chain work, and every settlement is journaled
//! before it is broadcast.
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
use tokio::sync::Mutex;
use x402::eip3009::{self, IEip3009Token, unix_now};
use x402::facilitator::BoxFuture;
use x402::redact;
use x402::{
    ErrorReason, Facilitator, FacilitatorError, FacilitatorRequest, Invalid, Network,
    SettleResponse, Supported, SupportedKind, VerifyResponse, X402Version,
};

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
    /// pass every second and fee bumps after 30 s.
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
        }
    }
}

/// Why the facilitator could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No chains.
    #[error("no chain to serve: pass at least one --rpc")]
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
    let provider = connect(rpc_url)?;
    provider
        .get_chain_id()
        .await
        .map(Network::Eip155)
        .map_err(|e| OpenError::Rpc {
            url: redact::origin(rpc_url),
            message: scrub(&e.to_string(), rpc_url),
        })
}

fn connect(rpc_url: &str) -> Result<DynProvider, OpenError> {
    let url = rpc_url.parse().map_err(|e| OpenError::Rpc {
        url: redact::origin(rpc_url),
        message: format!("not a URL: {e}"),
    })?;
    Ok(ProviderBuilder::new().connect_http(url).erased())
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
    /// Next transaction nonce of the signer; `None` means "ask the chain". Taken out
    /// (left `None`) for the whole sign-journal-broadcast, so a send that is cancelled
    /// or fails makes the next one ask the chain instead of reusing a stale count.
    next_nonce: Mutex<Option<u64>>,
}

/// The in-process facilitator. Dropping it stops its background resolver.
pub struct EmbeddedFacilitator {
    inner: Arc<Inner>,
    resolver: tokio::task::JoinHandle<()>,
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
}

/// A payment whose signature checked out, with where to settle it.
struct Checked<'a> {
    chain: &'a Chain,
    key: AuthorizationKey,
    request: &'a FacilitatorRequest,
}

enum SendError {
    /// The chain refused before broadcast; nothing is in flight.
    Refused(Invalid),
    /// The RPC failed before broadcast; nothing is in flight.
    Unavailable(FacilitatorError),
    /// Signed and journaled; whether the node took it is unknown.
    Ambiguous(B256, String),
}

/// What is known about one journaled settlement.
enum Outcome {
    /// Mined with success by this transaction.
    Confirmed(B256),
    /// Can never move the money: reverted, or replaced and the authorization unused.
    Failed(String),
    /// Not known yet: still in a mempool, or the chain cannot be asked right now.
    Unknown,
}

impl EmbeddedFacilitator {
    /// Connects to each chain, checks its chain id, opens (and locks) the database,
    /// looks once at settlements a previous run left open, and starts the resolver.
    pub async fn open(config: EmbeddedConfig) -> Result<Self, OpenError> {
        if config.chains.is_empty() {
            return Err(OpenError::NoChains);
        }
        let mut chains = HashMap::new();
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
            let mut assets: Vec<Address> = chain
                .network
                .known()
                .map(|k| vec![k.usdc.address])
                .unwrap_or_default();
            assets.extend(config.extra_assets.iter().copied());
            chains.insert(
                expected,
                Chain {
                    network: chain.network.clone(),
                    chain_id: expected,
                    rpc_url: chain.rpc_url.clone(),
                    provider: connect(&chain.rpc_url)?,
                    assets,
                    next_nonce: Mutex::new(None),
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
        });
        inner.resolve_pass(true).await?;
        let resolver = tokio::spawn(resolve_forever(
            Arc::downgrade(&inner),
            config.resolve_interval,
        ));
        Ok(Self { inner, resolver })
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
        self.resolver.abort();
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

    /// One look at every open settlement. At `startup` every pending row is from the
    /// dead process (the store's lock guarantees it); later only old ones are.
    async fn resolve_pass(&self, startup: bool) -> Result<(), StoreError> {
        for settlement in self.db(Store::open_settlements).await? {
            let Some(chain) = self.chains.get(&settlement.chain_id) else {
                continue;
            };
            let now = unix_now();
            if settlement.tx_hash.is_none() {
                let abandoned = startup
                    || now.saturating_sub(settlement.updated_at) > ABANDONED_PENDING_SECONDS;
                if abandoned {
                    self.finish(
                        &settlement,
                        SettlementStatus::Failed,
                        Some("interrupted before the transaction was broadcast"),
                        None,
                    )
                    .await;
                }
                continue;
            }
            match self.resolve(chain, &settlement, false).await {
                Outcome::Unknown => {
                    let stuck = now.saturating_sub(settlement.updated_at)
                        >= self.bump_after.as_secs().max(1);
                    if !startup && stuck && settlement.prior_hashes.len() < MAX_FEE_BUMPS {
                        self.bump(chain, &settlement).await;
                    }
                }
                Outcome::Confirmed(_) | Outcome::Failed(_) => {}
            }
        }
        Ok(())
    }

    /// Finds out what became of `settlement` and records it when it is final;
    /// `wait` polls the newest transaction's receipt up to the receipt timeout first.
    async fn resolve(&self, chain: &Chain, settlement: &Settlement, wait: bool) -> Outcome {
        let Some(current) = settlement.tx_hash else {
            return Outcome::Unknown;
        };
        if wait && let Some(receipt) = self.await_receipt(chain, current).await {
            return self.record_receipt(settlement, &receipt, current).await;
        }
        let mut hashes = vec![current];
        hashes.extend(settlement.prior_hashes.iter().rev().copied());
        for hash in &hashes {
            if let Ok(Some(receipt)) = chain.provider.get_transaction_receipt(*hash).await {
                return self.record_receipt(settlement, &receipt, *hash).await;
            }
        }
        match chain.provider.get_transaction_by_hash(current).await {
            Ok(Some(_)) => return Outcome::Unknown,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%current, "cannot look up a settlement: {}", scrub(&e.to_string(), &chain.rpc_url));
                return Outcome::Unknown;
            }
        }
        let Some(raw) = settlement.raw_tx.as_ref() else {
            return Outcome::Unknown;
        };
        let rebroadcast = chain.provider.send_raw_transaction(raw).await;
        if rebroadcast.is_ok() {
            return Outcome::Unknown;
        }
        // The node neither knows the transaction nor takes it again. It can still
        // mine only if its signer nonce is unused; once that nonce is taken, the
        // token's record of the authorization is the whole truth.
        let Some(tx_nonce) = decode(raw).map(|tx| tx.nonce()) else {
            return Outcome::Unknown;
        };
        let Ok(mined_nonce) = chain
            .provider
            .get_transaction_count(self.signer_address)
            .latest()
            .await
        else {
            return Outcome::Unknown;
        };
        if mined_nonce <= tx_nonce {
            return Outcome::Unknown;
        }
        let used = IEip3009Token::new(settlement.asset, &chain.provider)
            .authorizationState(settlement.payer, settlement.nonce)
            .call()
            .await;
        match used {
            Ok(true) => {
                self.finish(
                    settlement,
                    SettlementStatus::Confirmed,
                    Some("settled by another transaction"),
                    None,
                )
                .await;
                Outcome::Confirmed(current)
            }
            Ok(false) => {
                let why = "the transaction was replaced and the authorization is unused";
                self.finish(settlement, SettlementStatus::Failed, Some(why), None)
                    .await;
                Outcome::Failed(why.to_string())
            }
            Err(_) => Outcome::Unknown,
        }
    }

    async fn record_receipt(
        &self,
        settlement: &Settlement,
        receipt: &TransactionReceipt,
        hash: B256,
    ) -> Outcome {
        if receipt.status() {
            self.finish(settlement, SettlementStatus::Confirmed, None, Some(hash))
                .await;
            Outcome::Confirmed(hash)
        } else {
            let why = format!("settlement transaction {hash} reverted");
            self.finish(settlement, SettlementStatus::Failed, Some(&why), Some(hash))
                .await;
            Outcome::Failed(why)
        }
    }

    async fn finish(
        &self,
        settlement: &Settlement,
        status: SettlementStatus,
        error: Option<&str>,
        mined: Option<B256>,
    ) {
        let row = settlement.clone();
        let error = error.map(str::to_string);
        let id = settlement.id;
        let done = self
            .db(move |s| s.finish_with_hash(&row, status, error.as_deref(), mined, unix_now()))
            .await;
        if let Err(e) = done {
            tracing::error!(id, "cannot record settlement outcome: {e}");
        }
    }

    /// Re-signs a stuck settlement with the same signer nonce and fees raised by a
    /// quarter (nodes want at least a tenth), journals it, then broadcasts it.
    async fn bump(&self, chain: &Chain, settlement: &Settlement) {
        let Some(old) = settlement.raw_tx.as_ref().and_then(|raw| decode(raw)) else {
            return;
        };
        let Some(to) = old.to() else {
            return;
        };
        let current = chain.provider.estimate_eip1559_fees().await.ok();
        let raise = |fee: u128| fee.saturating_add(fee / 4).saturating_add(1);
        let max_fee = raise(old.max_fee_per_gas()).max(current.map_or(0, |f| f.max_fee_per_gas));
        let priority = raise(old.max_priority_fee_per_gas().unwrap_or(0))
            .max(current.map_or(0, |f| f.max_priority_fee_per_gas));
        let replacement = TransactionRequest::default()
            .from(self.signer_address)
            .to(to)
            .input(old.input().clone().into())
            .nonce(old.nonce())
            .with_chain_id(chain.chain_id)
            .gas_limit(old.gas_limit())
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(priority.min(max_fee));
        let envelope = match replacement.build(&self.wallet).await {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::error!("cannot sign a fee bump: {e}");
                return;
            }
        };
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        let id = settlement.id;
        let journal_raw = raw.clone();
        match self
            .db(move |s| s.mark_replaced(id, hash, &journal_raw, unix_now()))
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(id, "cannot journal a fee bump: {e}");
                return;
            }
        }
        tracing::info!(id, old = ?settlement.tx_hash, new = %hash, "raised the fees of a stuck settlement");
        if let Err(e) = chain.provider.send_raw_transaction(&raw).await {
            tracing::warn!(%hash, "fee bump broadcast: {}", scrub(&e.to_string(), &chain.rpc_url));
        }
    }

    /// The signature checks plus "do we settle this token on this chain".
    fn check<'a>(&'a self, request: &'a FacilitatorRequest) -> Result<Checked<'a>, Invalid> {
        let requirements = &request.payment_requirements;
        let payer = eip3009::verify_signature(&request.payment_payload, requirements)?;
        let chain = requirements
            .network
            .chain_id()
            .and_then(|id| self.chains.get(&id))
            .ok_or_else(|| {
                Invalid::new(
                    ErrorReason::InvalidNetwork,
                    format!(
                        "this facilitator does not settle on {}",
                        requirements.network
                    ),
                )
            })?;
        if !chain.assets.contains(&requirements.asset) {
            return Err(Invalid::new(
                ErrorReason::AssetNotAllowed,
                format!(
                    "this facilitator does not settle token {} on {}; its operator can allow it with --asset {}",
                    requirements.asset, chain.network, requirements.asset
                ),
            ));
        }
        Ok(Checked {
            chain,
            key: AuthorizationKey {
                chain_id: chain.chain_id,
                asset: requirements.asset,
                payer,
                nonce: request.payment_payload.payload.authorization.nonce,
            },
            request,
        })
    }

    async fn claim(&self, checked: &Checked<'_>, want: GuardState) -> Result<Claim, Invalid> {
        let key = checked.key;
        let lease = self.reservation_seconds;
        self.db(move |s| s.claim(&key, want, unix_now(), lease))
            .await
            .map_err(|e| Invalid::new(unexpected(want), e.to_string()))
    }

    fn settlement_tx(&self, checked: &Checked<'_>) -> Result<TransactionRequest, Invalid> {
        let call = eip3009::settlement_call(&checked.request.payment_payload.payload)?;
        Ok(TransactionRequest::default()
            .from(self.signer_address)
            .to(checked.request.payment_requirements.asset)
            .input(call.abi_encode().into()))
    }

    /// `eth_call` of the settlement; on revert, one diagnostic read names the reason.
    async fn simulate(
        &self,
        checked: &Checked<'_>,
    ) -> Result<Result<(), Invalid>, FacilitatorError> {
        let tx = match self.settlement_tx(checked) {
            Ok(tx) => tx,
            Err(invalid) => return Ok(Err(invalid)),
        };
        match checked.chain.provider.call(tx).await {
            Ok(_) => Ok(Ok(())),
            Err(RpcError::ErrorResp(payload)) => Ok(Err(self
                .diagnose(checked, payload.message.to_string())
                .await?)),
            Err(e) => Err(unreachable(checked.chain, e)),
        }
    }

    async fn diagnose(
        &self,
        checked: &Checked<'_>,
        revert: String,
    ) -> Result<Invalid, FacilitatorError> {
        let requirements = &checked.request.payment_requirements;
        let auth = &checked.request.payment_payload.payload.authorization;
        let token = IEip3009Token::new(requirements.asset, &checked.chain.provider);
        let state = match token.authorizationState(auth.from, auth.nonce).call().await {
            Ok(state) => state,
            Err(alloy::contract::Error::TransportError(RpcError::ErrorResp(_)))
            | Err(alloy::contract::Error::AbiError(_))
            | Err(alloy::contract::Error::ZeroData(..)) => {
                return Ok(Invalid::new(
                    ErrorReason::Eip3009NotSupported,
                    format!(
                        "{} does not implement EIP-3009 authorizationState",
                        requirements.asset
                    ),
                ));
            }
            Err(e) => return Err(unreachable(checked.chain, e)),
        };
        if state {
            return Ok(Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "the token has already used this authorization's nonce; sign a new one",
            ));
        }
        if let Some((name, version)) = requirements.eip712_domain() {
            let on_chain_name = token
                .name()
                .call()
                .await
                .map_err(|e| unreachable(checked.chain, e))?;
            if on_chain_name != name {
                return Ok(Invalid::new(
                    ErrorReason::TokenNameMismatch,
                    format!(
                        "the token's EIP-712 name is {on_chain_name:?}, the requirement says {name:?}"
                    ),
                ));
            }
            let on_chain_version = token
                .version()
                .call()
                .await
                .map_err(|e| unreachable(checked.chain, e))?;
            if on_chain_version != version {
                return Ok(Invalid::new(
                    ErrorReason::TokenVersionMismatch,
                    format!(
                        "the token's EIP-712 version is {on_chain_version:?}, the requirement says {version:?}"
                    ),
                ));
            }
        }
        let balance = token
            .balanceOf(auth.from)
            .call()
            .await
            .map_err(|e| unreachable(checked.chain, e))?;
        if balance < auth.value {
            return Ok(Invalid::new(
                ErrorReason::InsufficientFunds,
                format!(
                    "payer {} holds {balance} atomic units, the payment needs {}",
                    auth.from, auth.value
                ),
            ));
        }
        Ok(Invalid::new(
            ErrorReason::SimulationFailed,
            format!("transferWithAuthorization would revert: {revert}"),
        ))
    }

    async fn verify_request(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let checked = match self.check(request) {
            Ok(checked) => checked,
            Err(invalid) => return Ok(invalid_verify(invalid, None)),
        };
        let payer = checked.key.payer;
        let authorization = &request.payment_payload.payload.authorization;
        if let Err(invalid) = eip3009::check_validity(authorization, unix_now()) {
            return Ok(invalid_verify(invalid, Some(payer)));
        }
        match self.claim(&checked, GuardState::Reserved).await {
            Ok(Claim::Granted) => {}
            Ok(verdict) => return Ok(invalid_verify(refusal(verdict), Some(payer))),
            Err(invalid) => return Ok(invalid_verify(invalid, Some(payer))),
        }
        let simulated = self.simulate(&checked).await;
        if !matches!(simulated, Ok(Ok(()))) {
            self.release_key(checked.key).await;
        }
        Ok(match simulated? {
            Ok(()) => VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                invalid_message: None,
                payer: Some(payer),
            },
            Err(invalid) => invalid_verify(invalid, Some(payer)),
        })
    }

    async fn settle_request(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.payment_requirements.network.clone();
        let checked = match self.check(request) {
            Ok(checked) => checked,
            Err(invalid) => return Ok(failed_settle(invalid, None, None, network)),
        };
        let payer = checked.key.payer;
        // A settle of an authorization already in the journal answers from it; a
        // failed one frees the claim, so the second round starts a fresh settlement.
        for _ in 0..2 {
            let verdict = match self.claim(&checked, GuardState::Settling).await {
                Ok(verdict) => verdict,
                Err(invalid) => return Ok(failed_settle(invalid, Some(payer), None, network)),
            };
            match verdict {
                Claim::Granted => return self.settle_new(&checked).await,
                Claim::Settled | Claim::InFlight => {
                    let key = checked.key;
                    let latest = self
                        .db(move |s| s.latest_for(&key))
                        .await
                        .map_err(|e| FacilitatorError::Internal(e.to_string()))?;
                    match self.answer_from_journal(&checked, latest, verdict).await {
                        Some(answer) => return answer,
                        None => continue,
                    }
                }
            }
        }
        Err(FacilitatorError::Internal(
            "the settlement of this authorization changed state twice while being read; retry"
                .into(),
        ))
    }

    /// The answer for an authorization the journal already has; `None` when its
    /// settlement failed and a new one may be tried.
    async fn answer_from_journal(
        &self,
        checked: &Checked<'_>,
        latest: Option<Settlement>,
        verdict: Claim,
    ) -> Option<Result<SettleResponse, FacilitatorError>> {
        let requirements = &checked.request.payment_requirements;
        let network = requirements.network.clone();
        let payer = checked.key.payer;
        let same_terms = |row: &Settlement| {
            row.pay_to == requirements.pay_to && row.amount == requirements.amount
        };
        let Some(row) = latest.filter(|row| same_terms(row)) else {
            return Some(Ok(failed_settle(
                refusal(verdict),
                Some(payer),
                None,
                network,
            )));
        };
        let outcome = match row.status {
            SettlementStatus::Confirmed => Outcome::Confirmed(row.tx_hash.unwrap_or_default()),
            SettlementStatus::Failed => return None,
            SettlementStatus::Sent => self.resolve(checked.chain, &row, true).await,
            SettlementStatus::Pending => {
                return Some(Err(FacilitatorError::Internal(
                    "a settlement of this authorization is being sent right now; retry in a moment"
                        .into(),
                )));
            }
        };
        Some(Ok(match outcome {
            Outcome::Confirmed(hash) => confirmed(payer, hash, network, row.amount),
            Outcome::Failed(_) => return None,
            Outcome::Unknown => pending(&row, payer, network, self.receipt_timeout),
        }))
    }

    /// Journals, sends and awaits a first settlement of a claimed authorization.
    async fn settle_new(&self, checked: &Checked<'_>) -> Result<SettleResponse, FacilitatorError> {
        let request = checked.request;
        let network = request.payment_requirements.network.clone();
        let payer = checked.key.payer;
        let authorization = &request.payment_payload.payload.authorization;
        if let Err(invalid) = eip3009::check_validity(authorization, unix_now()) {
            let key = checked.key;
            if let Err(e) = self.db(move |s| s.unclaim(&key)).await {
                tracing::error!("cannot free authorization {}: {e}", key.nonce);
            }
            return Ok(failed_settle(invalid, Some(payer), None, network));
        }
        let amount = request.payment_requirements.amount;
        let key = checked.key;
        let pay_to = request.payment_requirements.pay_to;
        let settlement = self
            .db(move |s| {
                let id = s.begin_settlement(&key, pay_to, amount, unix_now())?;
                s.settlement(id)?
                    .ok_or_else(|| StoreError::Corrupt("journal row vanished".into()))
            })
            .await
            .map_err(|e| FacilitatorError::Internal(e.to_string()))?;
        let hash = match self.send(checked, settlement.id).await {
            Ok(hash) => hash,
            Err(SendError::Refused(invalid)) => {
                self.finish(
                    &settlement,
                    SettlementStatus::Failed,
                    Some(&invalid.message),
                    None,
                )
                .await;
                return Ok(failed_settle(invalid, Some(payer), None, network));
            }
            Err(SendError::Unavailable(e)) => {
                self.finish(
                    &settlement,
                    SettlementStatus::Failed,
                    Some(&e.to_string()),
                    None,
                )
                .await;
                return Err(e);
            }
            Err(SendError::Ambiguous(hash, why)) => {
                tracing::warn!(%hash, "settlement broadcast answered an error ({why}); waiting on the transaction anyway");
                hash
            }
        };
        let id = settlement.id;
        let sent = self
            .db(move |s| s.settlement(id))
            .await
            .ok()
            .flatten()
            .unwrap_or(Settlement {
                tx_hash: Some(hash),
                ..settlement
            });
        Ok(match self.resolve(checked.chain, &sent, true).await {
            Outcome::Confirmed(mined) => confirmed(payer, mined, network, amount),
            Outcome::Failed(why) => failed_settle(
                Invalid::new(ErrorReason::TransactionFailed, why),
                Some(payer),
                Some(hash),
                network,
            ),
            Outcome::Unknown => pending(&sent, payer, network, self.receipt_timeout),
        })
    }

    /// Estimates, then with the chain's nonce taken: signs, journals as sent, and
    /// broadcasts. Once journaled, no broadcast error is taken as a refusal: the node
    /// may have the transaction anyway.
    async fn send(&self, checked: &Checked<'_>, journal_id: i64) -> Result<B256, SendError> {
        let chain = checked.chain;
        let tx = self.settlement_tx(checked).map_err(SendError::Refused)?;
        let gas = match chain.provider.estimate_gas(tx.clone()).await {
            Ok(gas) => gas,
            Err(RpcError::ErrorResp(payload)) => {
                let diagnosis = self.diagnose(checked, payload.message.to_string()).await;
                return Err(match diagnosis {
                    Ok(invalid) => SendError::Refused(invalid),
                    Err(e) => SendError::Unavailable(e),
                });
            }
            Err(e) => return Err(SendError::Unavailable(unreachable(chain, e))),
        };
        if gas > self.gas_limit_cap {
            return Err(SendError::Refused(Invalid::new(
                ErrorReason::SimulationFailed,
                format!(
                    "settling this payment would use {gas} gas, above this facilitator's cap of {}",
                    self.gas_limit_cap
                ),
            )));
        }
        let fees = chain
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| SendError::Unavailable(unreachable(chain, e)))?;
        let mut slot = chain.next_nonce.lock().await;
        let nonce = match slot.take() {
            Some(nonce) => nonce,
            None => chain
                .provider
                .get_transaction_count(self.signer_address)
                .pending()
                .await
                .map_err(|e| SendError::Unavailable(unreachable(chain, e)))?,
        };
        let envelope = tx
            .nonce(nonce)
            .with_chain_id(chain.chain_id)
            .gas_limit((gas.saturating_mul(12) / 10).min(self.gas_limit_cap))
            .max_fee_per_gas(fees.max_fee_per_gas)
            .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(&self.wallet)
            .await
            .map_err(|e| {
                SendError::Unavailable(FacilitatorError::Internal(format!("signing failed: {e}")))
            })?;
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        let journal_raw = raw.clone();
        let journaled = self
            .db(move |s| s.mark_sent(journal_id, hash, &journal_raw, unix_now()))
            .await;
        match journaled {
            Ok(true) => {}
            Ok(false) => {
                return Err(SendError::Unavailable(FacilitatorError::Internal(
                    "the settlement was closed before it could be sent".into(),
                )));
            }
            Err(e) => {
                return Err(SendError::Unavailable(FacilitatorError::Internal(
                    e.to_string(),
                )));
            }
        }
        match chain.provider.send_raw_transaction(&raw).await {
            Ok(_) => {
                *slot = Some(nonce + 1);
                Ok(hash)
            }
            Err(e) => Err(SendError::Ambiguous(
                hash,
                scrub(&e.to_string(), &chain.rpc_url),
            )),
        }
    }

    async fn await_receipt(&self, chain: &Chain, hash: B256) -> Option<TransactionReceipt> {
        let deadline = tokio::time::Instant::now() + self.receipt_timeout;
        let mut interval = Duration::from_millis(5);
        loop {
            if let Ok(Some(receipt)) = chain.provider.get_transaction_receipt(hash).await {
                return Some(receipt);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(1));
        }
    }

    async fn release_key(&self, key: AuthorizationKey) {
        if let Err(e) = self.db(move |s| s.release(&key)).await {
            tracing::error!("cannot release authorization {}: {e}", key.nonce);
        }
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
