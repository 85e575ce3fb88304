//! Listing an agent on the Identity Registry: mint it, point it at a registration
//! document, set its on-chain metadata, and do all of that idempotently so a seller can
//! re-run registration (after a crash, on every reconcile) without minting twice.
//!
//! The [`Registrar`] signs through the provider it is given; the address that provider
//! signs with is passed alongside it, because an erased provider cannot say.

use std::collections::BTreeMap;
use std::fmt;

use alloy::contract::Error as ContractError;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::sol_types::SolEvent;

use crate::abi::IIdentityRegistry::{self, IIdentityRegistryErrors, IIdentityRegistryInstance};

/// Metadata key obol sets to `0x01` on agents that accept x402 payments; indexers read
/// it as "this agent is paid with x402" even before they fetch the document.
pub const X402_SUPPORTED_KEY: &str = "x402.supported";

/// Metadata key naming what kind of service the agent sells (see [`ServiceType`]).
pub const SERVICE_TYPE_KEY: &str = "service.type";

/// The key the registry reserves for the payment wallet; it is set with
/// `setAgentWallet`, and both `register` and `setMetadata` refuse it.
pub const AGENT_WALLET_KEY: &str = "agentWallet";

/// What kind of service an agent sells, as obol writes it under [`SERVICE_TYPE_KEY`],
/// so buyers can tell model inference from other paid HTTP APIs without fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// A model server (Ollama, vLLM, llama.cpp, ...).
    Inference,
    /// Any other HTTP service.
    Http,
}

impl ServiceType {
    /// The on-chain spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Inference => "inference",
            ServiceType::Http => "http",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The on-chain metadata an agent should carry, key by key; [`Registrar::ensure_registered`]
/// writes only the entries whose current value differs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentMetadata {
    entries: BTreeMap<String, Bytes>,
}

impl AgentMetadata {
    /// What agora sets on a seller's agent: `x402.supported = 0x01` and `service.type`.
    pub fn seller(service_type: ServiceType) -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(X402_SUPPORTED_KEY.to_string(), Bytes::from_static(&[1]));
        entries.insert(
            SERVICE_TYPE_KEY.to_string(),
            Bytes::copy_from_slice(service_type.as_str().as_bytes()),
        );
        Self { entries }
    }

    /// Adds or replaces one entry (for example obol's `metadata.<k>` values); refuses
    /// the empty key and `agentWallet`, which the registry would revert on.
    pub fn with(mut self, key: &str, value: Bytes) -> Result<Self, RegistrarError> {
        if key.is_empty() || key == AGENT_WALLET_KEY {
            return Err(RegistrarError::ReservedKey(key.to_string()));
        }
        self.entries.insert(key.to_string(), value);
        Ok(self)
    }

    /// The entries, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn to_abi(&self) -> Vec<IIdentityRegistry::MetadataEntry> {
        self.entries
            .iter()
            .map(|(k, v)| IIdentityRegistry::MetadataEntry {
                metadataKey: k.clone(),
                metadataValue: v.clone(),
            })
            .collect()
    }
}

/// What [`Registrar::ensure_registered`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The agent (0 is a valid id).
    pub agent_id: U256,
    /// True when this call minted it, false when an existing agent was found.
    pub minted: bool,
    /// Every transaction sent, in order; empty when nothing had to change.
    pub transactions: Vec<B256>,
}

/// Why a registry operation failed; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The address holds no contract on this chain.
    #[error(
        "no ERC-8004 Identity Registry at {registry} on chain {chain_id}; pass the registry address deployed on this chain, or use a chain where ERC-8004 is deployed (base-sepolia, base, or the local `agora devnet`)"
    )]
    NoRegistry {
        /// The address tried.
        registry: Address,
        /// The chain the RPC serves.
        chain_id: u64,
    },
    /// The RPC failed or refused a request.
    #[error(
        "{action} failed: {message}; check that the RPC URL is reachable and that the signing account has ETH for gas"
    )]
    Rpc {
        /// What was being done.
        action: &'static str,
        /// What the RPC said.
        message: String,
    },
    /// The transaction was mined but reverted.
    #[error(
        "{action} reverted in transaction {tx_hash}; check that the signing account owns the agent or is approved for it"
    )]
    Reverted {
        /// What was being done.
        action: &'static str,
        /// The reverted transaction.
        tx_hash: B256,
    },
    /// The agent id is not minted (or was burned).
    #[error("agent {0} does not exist in this registry; register it first or check the agent id")]
    UnknownAgent(U256),
    /// The signing account may not change the agent.
    #[error(
        "{sender} may not update agent {agent_id}, which {owner} owns; sign with the owner's key or have the owner approve {sender}"
    )]
    NotAuthorized {
        /// The agent.
        agent_id: U256,
        /// The account the registrar signs with.
        sender: Address,
        /// The agent's owner.
        owner: Address,
    },
    /// A successful `register` receipt without the `Registered` event.
    #[error(
        "register transaction {tx_hash} emitted no Registered event from {registry}; check that the address is an ERC-8004 Identity Registry (getVersion() should be 2.0.0)"
    )]
    NoRegisteredEvent {
        /// The transaction.
        tx_hash: B256,
        /// The registry address used.
        registry: Address,
    },
    /// A metadata key the registry refuses.
    #[error(
        "metadata key {0:?} cannot be set with setMetadata; use a non-empty key other than agentWallet (the wallet is set with setAgentWallet)"
    )]
    ReservedKey(String),
    /// Minting for someone else was requested.
    #[error(
        "no agent of {owner} has this URI, and the registrar signs as {sender}, so it can only mint to {sender}; sign with {owner}'s key"
    )]
    OwnerIsNotSender {
        /// Who should own the agent.
        owner: Address,
        /// Who the registrar signs as.
        sender: Address,
    },
}

/// Registers and updates agents on one Identity Registry, signing as one account.
#[derive(Debug, Clone)]
pub struct Registrar {
    registry: IIdentityRegistryInstance<DynProvider>,
    chain_id: u64,
    sender: Address,
    start_block: u64,
}

impl Registrar {
    /// Connects to the registry at `registry` through `provider`, which must sign as
    /// `sender`. Fails with [`RegistrarError::NoRegistry`] when nothing is deployed
    /// there, so a wrong address or chain is caught before any transaction is sent.
    pub async fn connect(
        provider: DynProvider,
        registry: Address,
        sender: Address,
    ) -> Result<Self, RegistrarError> {
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| rpc("eth_chainId", e))?;
        let code = provider
            .get_code_at(registry)
            .await
            .map_err(|e| rpc("eth_getCode", e))?;
        if code.is_empty() {
            return Err(RegistrarError::NoRegistry { registry, chain_id });
        }
        Ok(Self {
            registry: IIdentityRegistry::new(registry, provider),
            chain_id,
            sender,
            start_block: 0,
        })
    }

    /// Scans for existing agents from `block` instead of genesis: the registry's
    /// deployment block makes [`Registrar::find_existing`] cheaper on long chains.
    pub fn with_start_block(mut self, block: u64) -> Self {
        self.start_block = block;
        self
    }

    /// The chain the RPC serves.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The registry contract.
    pub fn registry(&self) -> Address {
        *self.registry.address()
    }

    /// The account transactions are signed with; new agents are minted to it.
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// Mints an agent whose document is at `agent_uri`, with initial metadata in the same
    /// transaction. The id comes from the receipt's `Registered` event (0 is valid).
    pub async fn register(
        &self,
        agent_uri: &str,
        metadata: &AgentMetadata,
    ) -> Result<(U256, B256), RegistrarError> {
        const ACTION: &str = "register";
        let call = self
            .registry
            .register_2(agent_uri.to_string(), metadata.to_abi());
        let pending = call.send().await.map_err(|e| send_error(ACTION, e))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| rpc("waiting for the register receipt", e))?;
        let tx_hash = succeeded(ACTION, &receipt)?;
        let registry = self.registry();
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == registry)
            .find_map(|log| IIdentityRegistry::Registered::decode_log(&log.inner).ok())
            .map(|event| (event.data.agentId, tx_hash))
            .ok_or(RegistrarError::NoRegisteredEvent { tx_hash, registry })
    }

    /// Points agent `agent_id` at a new registration document.
    pub async fn set_agent_uri(&self, agent_id: U256, uri: &str) -> Result<B256, RegistrarError> {
        const ACTION: &str = "setAgentURI";
        self.check_authorized(agent_id).await?;
        let call = self.registry.setAgentURI(agent_id, uri.to_string());
        let pending = call.send().await.map_err(|e| send_error(ACTION, e))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| rpc("waiting for the setAgentURI receipt", e))?;
        succeeded(ACTION, &receipt)
    }

    /// Sets one metadata entry of agent `agent_id`.
    pub async fn set_metadata(
        &self,
        agent_id: U256,
        key: &str,
        value: Bytes,
    ) -> Result<B256, RegistrarError> {
        const ACTION: &str = "setMetadata";
        if key.is_empty() || key == AGENT_WALLET_KEY {
            return Err(RegistrarError::ReservedKey(key.to_string()));
        }
        self.check_authorized(agent_id).await?;
        let call = self.registry.setMetadata(agent_id, key.to_string(), value);
        let pending = call.send().await.map_err(|e| send_error(ACTION, e))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| rpc("waiting for the setMetadata receipt", e))?;
        succeeded(ACTION, &receipt)
    }

    /// One metadata value of agent `agent_id` (empty when unset).
    pub async fn metadata(&self, agent_id: U256, key: &str) -> Result<Bytes, RegistrarError> {
        self.registry
            .getMetadata(agent_id, key.to_string())
            .call()
            .await
            .map_err(|e| call_error("getMetadata", agent_id, e))
    }

    /// The agent `owner` holds whose current URI is exactly `uri`, if any, newest first.
    /// Candidates come from the registry's `Transfer` logs to `owner` (mints included,
    /// so agents bought or moved to `owner` count too); each is confirmed with
    /// `ownerOf` and `tokenURI`, so agents since sold, burned or re-pointed are skipped.
    pub async fn find_existing(
        &self,
        owner: Address,
        uri: &str,
    ) -> Result<Option<U256>, RegistrarError> {
        let mut candidates = self.received_by(owner).await?;
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        candidates.dedup();
        for agent_id in candidates {
            let current_owner = match self.registry.ownerOf(agent_id).call().await {
                Ok(o) => o,
                Err(e) if is_nonexistent(&e) => continue,
                Err(e) => return Err(call_error("ownerOf", agent_id, e)),
            };
            if current_owner != owner {
                continue;
            }
            let current_uri = self
                .registry
                .tokenURI(agent_id)
                .call()
                .await
                .map_err(|e| call_error("tokenURI", agent_id, e))?;
            if current_uri == uri {
                return Ok(Some(agent_id));
            }
        }
        Ok(None)
    }

    /// Makes sure `owner` has an agent at `uri` carrying `metadata`: finds it or mints
    /// it (with the metadata in the same transaction), then sets only the entries whose
    /// value differs. Running it again changes nothing and sends nothing.
    pub async fn ensure_registered(
        &self,
        owner: Address,
        uri: &str,
        metadata: &AgentMetadata,
    ) -> Result<Ensured, RegistrarError> {
        if let Some(agent_id) = self.find_existing(owner, uri).await? {
            let mut transactions = Vec::new();
            for (key, value) in metadata.entries() {
                if self.metadata(agent_id, key).await? != *value {
                    transactions.push(self.set_metadata(agent_id, key, value.clone()).await?);
                }
            }
            return Ok(Ensured {
                agent_id,
                minted: false,
                transactions,
            });
        }
        if owner != self.sender {
            return Err(RegistrarError::OwnerIsNotSender {
                owner,
                sender: self.sender,
            });
        }
        let (agent_id, tx_hash) = self.register(uri, metadata).await?;
        Ok(Ensured {
            agent_id,
            minted: true,
            transactions: vec![tx_hash],
        })
    }

    /// Token ids ever transferred (or minted) to `owner`, read in block ranges that
    /// shrink when the RPC refuses a range as too large.
    async fn received_by(&self, owner: Address) -> Result<Vec<U256>, RegistrarError> {
        let provider = self.registry.provider();
        let head = provider
            .get_block_number()
            .await
            .map_err(|e| rpc("eth_blockNumber", e))?;
        let filter = Filter::new()
            .address(self.registry())
            .event_signature(IIdentityRegistry::Transfer::SIGNATURE_HASH)
            .topic2(owner.into_word());
        let mut ids = Vec::new();
        let mut from = self.start_block;
        let mut span = head.saturating_sub(from).saturating_add(1);
        while from <= head {
            let to = from.saturating_add(span - 1).min(head);
            match provider
                .get_logs(&filter.clone().from_block(from).to_block(to))
                .await
            {
                Ok(logs) => {
                    ids.extend(logs.iter().filter_map(|log| {
                        IIdentityRegistry::Transfer::decode_log(&log.inner)
                            .ok()
                            .map(|e| e.data.tokenId)
                    }));
                    from = to.saturating_add(1);
                }
                Err(_) if span > 1 => span /= 2,
                Err(e) => return Err(rpc("eth_getLogs", e)),
            }
        }
        Ok(ids)
    }

    /// Fails early, with the owner named, when the sender may not change the agent.
    async fn check_authorized(&self, agent_id: U256) -> Result<(), RegistrarError> {
        let allowed = self
            .registry
            .isAuthorizedOrOwner(self.sender, agent_id)
            .call()
            .await
            .map_err(|e| call_error("isAuthorizedOrOwner", agent_id, e))?;
        if allowed {
            return Ok(());
        }
        let owner = self
            .registry
            .ownerOf(agent_id)
            .call()
            .await
            .map_err(|e| call_error("ownerOf", agent_id, e))?;
        Err(RegistrarError::NotAuthorized {
            agent_id,
            sender: self.sender,
            owner,
        })
    }
}

fn rpc(action: &'static str, e: impl fmt::Display) -> RegistrarError {
    RegistrarError::Rpc {
        action,
        message: e.to_string(),
    }
}

fn is_nonexistent(e: &ContractError) -> bool {
    matches!(
        e.as_decoded_interface_error::<IIdentityRegistryErrors>(),
        Some(IIdentityRegistryErrors::ERC721NonexistentToken(_))
    )
}

/// A failed view call on one agent: "no such agent" when the registry says so.
fn call_error(action: &'static str, agent_id: U256, e: ContractError) -> RegistrarError {
    if is_nonexistent(&e) {
        RegistrarError::UnknownAgent(agent_id)
    } else {
        rpc(action, e)
    }
}

/// A transaction refused before it was mined (gas estimation reverts land here).
fn send_error(action: &'static str, e: ContractError) -> RegistrarError {
    match e.as_decoded_interface_error::<IIdentityRegistryErrors>() {
        Some(IIdentityRegistryErrors::ERC721NonexistentToken(t)) => {
            RegistrarError::UnknownAgent(t.tokenId)
        }
        _ => rpc(action, e),
    }
}

fn succeeded(action: &'static str, receipt: &TransactionReceipt) -> Result<B256, RegistrarError> {
    if receipt.status() {
        Ok(receipt.transaction_hash)
    } else {
        Err(RegistrarError::Reverted {
            action,
            tx_hash: receipt.transaction_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seller_metadata_follows_obol_conventions() {
        let metadata = AgentMetadata::seller(ServiceType::Inference);
        let entries: Vec<(&str, &[u8])> =
            metadata.entries().map(|(k, v)| (k, v.as_ref())).collect();
        assert_eq!(
            entries,
            [
                ("service.type", b"inference".as_slice()),
                ("x402.supported", &[1])
            ]
        );
        assert_eq!(ServiceType::Http.to_string(), "http");
    }

    #[test]
    fn reserved_keys_are_refused_with_advice() {
        for key in ["", AGENT_WALLET_KEY] {
            let err = AgentMetadata::default()
                .with(key, Bytes::new())
                .unwrap_err();
            assert!(err.to_string().contains("setAgentWallet"), "{err}");
        }
        let extra = AgentMetadata::seller(ServiceType::Http)
            .with("metadata.best_val_bpb", Bytes::from_static(b"0.97"))
            .unwrap();
        assert_eq!(extra.entries().count(), 3);
    }
}
