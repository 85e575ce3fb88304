//! The embedded facilitator: verifies EIP-3009 payments against the chain and settles
//! them by sending `transferWithAuthorization` from its own key.
//!
//! Verification follows the reference order (offline checks, then an `eth_call`
//! simulation with one diagnostic read on failure). Every authorization passes a
//! persisted replay guard before any chain work, and every settlement is journaled
//! before it is broadcast.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::eips::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::RpcError;
use tokio::sync::Mutex;
use x402::eip3009::{self, IEip3009Token, unix_now};
use x402::facilitator::BoxFuture;
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
    /// How long to wait for a settlement receipt.
    pub receipt_timeout: Duration,
    /// How long a verified authorization is held for its settle.
    pub reservation_seconds: u64,
}

impl EmbeddedConfig {
    /// Defaults: 30 s receipts, 5 min reservations.
    pub fn new(chains: Vec<ChainConfig>, signer: PrivateKeySigner, db_path: PathBuf) -> Self {
        Self {
            chains,
            signer,
            db_path,
            receipt_timeout: Duration::from_secs(30),
            reservation_seconds: 300,
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
        /// Endpoint.
        url: String,
        /// Error.
        message: String,
    },
    /// The RPC serves another chain.
    #[error("the RPC {url} serves chain {actual}, not {expected}")]
    WrongChain {
        /// Endpoint.
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
            url: rpc_url.to_string(),
            message: e.to_string(),
        })
}

fn connect(rpc_url: &str) -> Result<DynProvider, OpenError> {
    let url = rpc_url.parse().map_err(|e| OpenError::Rpc {
        url: rpc_url.to_string(),
        message: format!("not a URL: {e}"),
    })?;
    Ok(ProviderBuilder::new().connect_http(url).erased())
}

struct Chain {
    network: Network,
    chain_id: u64,
    rpc_url: String,
    provider: DynProvider,
    /// Next transaction nonce of the signer; `None` means "ask the chain". Held across
    /// sign-journal-broadcast so concurrent settlements never reuse or skip a nonce.
    next_nonce: Mutex<Option<u64>>,
}

/// The in-process facilitator.
pub struct EmbeddedFacilitator {
    chains: HashMap<u64, Chain>,
    signer_address: Address,
    wallet: EthereumWallet,
    store: Arc<Store>,
    receipt_timeout: Duration,
    reservation_seconds: u64,
}

/// A payment that passed the offline checks, with where to settle it.
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
    /// Broadcast outcome unknown; the journal keeps it as sent.
    Ambiguous(B256, FacilitatorError),
}

impl EmbeddedFacilitator {
    /// Connects to each chain, checks its chain id, opens the database and resolves
    /// settlements a previous run left open.
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
                    url: chain.rpc_url.clone(),
                    expected: chain.network.caip2(),
                    actual: actual.chain_id().unwrap_or_default(),
                });
            }
            chains.insert(
                expected,
                Chain {
                    network: chain.network.clone(),
                    chain_id: expected,
                    rpc_url: chain.rpc_url.clone(),
                    provider: connect(&chain.rpc_url)?,
                    next_nonce: Mutex::new(None),
                },
            );
        }
        let facilitator = Self {
            chains,
            signer_address: config.signer.address(),
            wallet: EthereumWallet::from(config.signer),
            store: Arc::new(Store::open(&config.db_path)?),
            receipt_timeout: config.receipt_timeout,
            reservation_seconds: config.reservation_seconds,
        };
        facilitator.resolve_open_settlements().await?;
        Ok(facilitator)
    }

    /// The address that sends settlements (needs gas on every chain).
    pub fn signer_address(&self) -> Address {
        self.signer_address
    }

    /// The settlement journal, oldest first.
    pub fn journal(&self) -> Result<Vec<Settlement>, StoreError> {
        self.store.journal()
    }

    /// Finds out what happened to settlements left `pending` or `sent` by a crash:
    /// reads receipts, rebroadcasts signed transactions the chain forgot, and checks
    /// the token's `authorizationState` when the transaction is gone.
    pub async fn resolve_open_settlements(&self) -> Result<(), StoreError> {
        for settlement in self.store.open_settlements()? {
            let now = unix_now();
            let Some(chain) = self.chains.get(&settlement.chain_id) else {
                continue;
            };
            let (Some(hash), Some(raw)) = (settlement.tx_hash, settlement.raw_tx.as_ref()) else {
                self.store.finish_settlement(
                    &settlement,
                    SettlementStatus::Failed,
                    Some("interrupted before the transaction was broadcast"),
                    now,
                )?;
                continue;
            };
            let known = matches!(
                chain.provider.get_transaction_by_hash(hash).await,
                Ok(Some(_))
            );
            if !known && let Err(e) = chain.provider.send_raw_transaction(raw).await {
                tracing::warn!(%hash, "rebroadcast of an interrupted settlement failed: {e}");
            }
            match self.await_receipt(chain, hash).await {
                Some(receipt) => {
                    let (status, error) = receipt_outcome(&receipt);
                    self.store
                        .finish_settlement(&settlement, status, error, unix_now())?;
                }
                None => {
                    let used = IEip3009Token::new(settlement.asset, &chain.provider)
                        .authorizationState(settlement.payer, settlement.nonce)
                        .call()
                        .await;
                    match used {
                        Ok(true) => self.store.finish_settlement(
                            &settlement,
                            SettlementStatus::Confirmed,
                            Some("settled by another transaction"),
                            unix_now(),
                        )?,
                        Ok(false) => self.store.finish_settlement(
                            &settlement,
                            SettlementStatus::Failed,
                            Some("the transaction was dropped and the authorization is unused"),
                            unix_now(),
                        )?,
                        Err(e) => tracing::warn!(%hash, "cannot resolve settlement yet: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// Offline checks plus "do we serve this chain".
    fn check<'a>(&'a self, request: &'a FacilitatorRequest) -> Result<Checked<'a>, Invalid> {
        let requirements = &request.payment_requirements;
        let payer = eip3009::verify_offline(&request.payment_payload, requirements, unix_now())?;
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

    fn claim(&self, checked: &Checked<'_>, want: GuardState) -> Result<(), Invalid> {
        let verdict = self
            .store
            .claim(&checked.key, want, unix_now(), self.reservation_seconds)
            .map_err(|e| Invalid::new(unexpected(want), e.to_string()))?;
        match verdict {
            Claim::Granted => Ok(()),
            Claim::Settled => Err(Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "this authorization was already settled; sign a new one",
            )),
            Claim::InFlight => Err(Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "this authorization is already being used by another request; sign a new one",
            )),
        }
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
        if let Err(invalid) = self.claim(&checked, GuardState::Reserved) {
            return Ok(invalid_verify(invalid, Some(payer)));
        }
        let simulated = self.simulate(&checked).await;
        if !matches!(simulated, Ok(Ok(()))) {
            self.release_key(&checked.key);
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
        if let Err(invalid) = self.claim(&checked, GuardState::Settling) {
            return Ok(failed_settle(invalid, Some(payer), None, network));
        }
        let amount = request.payment_requirements.amount;
        let journal_id = self
            .store
            .begin_settlement(
                &checked.key,
                request.payment_requirements.pay_to,
                amount,
                unix_now(),
            )
            .map_err(|e| FacilitatorError::Internal(e.to_string()))?;
        let settlement = self
            .store
            .settlement(journal_id)
            .map_err(|e| FacilitatorError::Internal(e.to_string()))?
            .ok_or_else(|| FacilitatorError::Internal("journal row vanished".into()))?;
        let finish = |status, error: Option<&str>| {
            if let Err(e) = self
                .store
                .finish_settlement(&settlement, status, error, unix_now())
            {
                tracing::error!(id = settlement.id, "cannot record settlement outcome: {e}");
            }
        };
        let hash = match self.send(&checked, journal_id).await {
            Ok(hash) => hash,
            Err(SendError::Refused(invalid)) => {
                finish(SettlementStatus::Failed, Some(&invalid.message));
                return Ok(failed_settle(invalid, Some(payer), None, network));
            }
            Err(SendError::Unavailable(e)) => {
                finish(SettlementStatus::Failed, Some(&e.to_string()));
                return Err(e);
            }
            Err(SendError::Ambiguous(hash, e)) => {
                let invalid = Invalid::new(
                    ErrorReason::UnexpectedSettleError,
                    format!(
                        "broadcast of {hash} is unconfirmed ({e}); the journal will resolve it"
                    ),
                );
                return Ok(failed_settle(invalid, Some(payer), Some(hash), network));
            }
        };
        match self.await_receipt(checked.chain, hash).await {
            Some(receipt) if receipt.status() => {
                finish(SettlementStatus::Confirmed, None);
                Ok(SettleResponse {
                    success: true,
                    error_reason: None,
                    error_message: None,
                    payer: Some(payer),
                    transaction: Some(hash),
                    network,
                    amount: Some(amount),
                    extensions: None,
                })
            }
            Some(_) => {
                let invalid = Invalid::new(
                    ErrorReason::TransactionFailed,
                    format!("settlement transaction {hash} reverted"),
                );
                finish(SettlementStatus::Failed, Some(&invalid.message));
                Ok(failed_settle(invalid, Some(payer), Some(hash), network))
            }
            None => {
                let invalid = Invalid::new(
                    ErrorReason::UnexpectedSettleError,
                    format!(
                        "settlement {hash} was not mined within {}s; the journal will resolve it",
                        self.receipt_timeout.as_secs()
                    ),
                );
                Ok(failed_settle(invalid, Some(payer), Some(hash), network))
            }
        }
    }

    /// Estimates, then under the chain's nonce lock: signs, journals as sent, broadcasts.
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
        let fees = chain
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| SendError::Unavailable(unreachable(chain, e)))?;
        let mut next_nonce = chain.next_nonce.lock().await;
        let nonce = match *next_nonce {
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
            .gas_limit(gas.saturating_mul(12) / 10)
            .max_fee_per_gas(fees.max_fee_per_gas)
            .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(&self.wallet)
            .await
            .map_err(|e| {
                SendError::Unavailable(FacilitatorError::Internal(format!("signing failed: {e}")))
            })?;
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        self.store
            .mark_sent(journal_id, hash, &raw, unix_now())
            .map_err(|e| SendError::Unavailable(FacilitatorError::Internal(e.to_string())))?;
        match chain.provider.send_raw_transaction(&raw).await {
            Ok(_) => {
                *next_nonce = Some(nonce + 1);
                Ok(hash)
            }
            Err(RpcError::ErrorResp(payload)) => {
                *next_nonce = None;
                Err(SendError::Refused(Invalid::new(
                    ErrorReason::TransactionFailed,
                    format!(
                        "the RPC refused the settlement transaction: {}",
                        payload.message
                    ),
                )))
            }
            Err(e) => {
                *next_nonce = None;
                Err(SendError::Ambiguous(hash, unreachable(chain, e)))
            }
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

    fn release_key(&self, key: &AuthorizationKey) {
        if let Err(e) = self.store.release(key) {
            tracing::error!("cannot release authorization {}: {e}", key.nonce);
        }
    }
}

fn receipt_outcome(receipt: &TransactionReceipt) -> (SettlementStatus, Option<&'static str>) {
    if receipt.status() {
        (SettlementStatus::Confirmed, None)
    } else {
        (
            SettlementStatus::Failed,
            Some("settlement transaction reverted"),
        )
    }
}

fn unexpected(want: GuardState) -> ErrorReason {
    match want {
        GuardState::Reserved => ErrorReason::UnexpectedVerifyError,
        GuardState::Settling | GuardState::Settled => ErrorReason::UnexpectedSettleError,
    }
}

fn unreachable(chain: &Chain, e: impl std::fmt::Display) -> FacilitatorError {
    FacilitatorError::Unreachable {
        endpoint: chain.rpc_url.clone(),
        message: e.to_string(),
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
        Box::pin(self.verify_request(request))
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(self.settle_request(request))
    }

    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>> {
        let mut kinds = Vec::new();
        let mut chains: Vec<&Chain> = self.chains.values().collect();
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
            vec![self.signer_address.to_checksum(None)],
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
        if let Ok(checked) = self.check(request) {
            self.release_key(&checked.key);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
