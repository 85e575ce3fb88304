//! What the API answers with, as public types so clients in this workspace (`agora
//! discover`, the research coordinator) read responses with the same definitions the
//! server writes them with. The agent records themselves live in `erc8004::api`, so a
//! client needs no indexer to read them; the totals are this server's own.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

pub use erc8004::api::{AgentPage, AgentRecord, FetchError, FetchStatus, MetadataValue};

/// Totals over everything indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Agents currently existing.
    pub total_agents: u64,
    /// Distinct owners.
    pub total_users: u64,
    /// Agents that accept x402.
    pub x402_agents: u64,
    /// Agents whose document says active (or that have none yet).
    pub active_agents: u64,
    /// Registry events stored.
    pub total_events: u64,
    /// Agents by document fetch status.
    pub fetch: BTreeMap<String, u64>,
    /// Each indexed chain and how far it is indexed.
    pub chains: Vec<ChainStats>,
}

/// One indexed chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStats {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The Identity Registry followed.
    pub registry: Address,
    /// Last indexed block, if any.
    pub indexed_block: Option<u64>,
}
