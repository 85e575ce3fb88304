//! The records of an 8004scan-shaped agent API (agora's indexer serves them, buyers and
//! coordinators read them), here beside the registration document they are built from
//! so a client reads an indexer's answer without depending on the indexer's server.
//! Field names follow 8004scan's snake_case records.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, Bytes};
use serde::{Deserialize, Serialize};

use crate::registration::Service;

/// One indexed agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// `<chainId>:<lowercase registry>:<agentId>`, unique across chains and registries.
    pub id: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The ERC-8004 agentId (ERC-721 token id); 0 is a valid id.
    pub agent_id: u64,
    /// `eip155:<chainId>:<checksummed registry>`, as registration documents write it.
    pub agent_registry: String,
    /// Current owner (follows ERC-721 transfers).
    pub owner_address: Address,
    /// Current agent URI (empty when registered without one).
    pub uri: String,
    /// From the registration document; empty until it is fetched.
    pub name: String,
    /// From the registration document.
    pub description: String,
    /// Avatar URL from the registration document.
    pub image_url: Option<String>,
    /// The document's `active` (true while no document was read).
    pub active: bool,
    /// `x402.supported` metadata when set, else the document's `x402Support`.
    pub x402_supported: bool,
    /// `service.type` metadata (`inference`, `http`).
    pub service_type: Option<String>,
    /// Distinct service names (`web`, `OASF`, `MCP`, `A2A`, ...).
    pub supported_protocols: Vec<String>,
    /// OASF skill names from the document's OASF entries.
    pub oasf_skills: Vec<String>,
    /// OASF domain names from the document's OASF entries.
    pub oasf_domains: Vec<String>,
    /// The document's services verbatim.
    pub services: Vec<Service>,
    /// On-chain metadata by key.
    pub metadata: BTreeMap<String, MetadataValue>,
    /// The registration document as read (normalized), when it was fetched.
    pub registration: Option<serde_json::Value>,
    /// Where fetching the document stands.
    pub fetch_status: FetchStatus,
    /// Why the last fetch failed.
    pub fetch_error: Option<FetchError>,
    /// Unix time of the last fetch attempt that finished.
    pub fetched_at: Option<u64>,
    /// Block of the mint.
    pub registered_block: u64,
    /// Transaction of the mint.
    pub registered_tx: B256,
    /// Block of the agent's latest on-chain change.
    pub updated_block: u64,
}

/// One on-chain metadata value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataValue {
    /// The raw bytes, 0x-hex.
    pub hex: Bytes,
    /// The bytes as text when they are printable UTF-8 (`service.type` and the like).
    pub text: Option<String>,
}

impl MetadataValue {
    /// Wraps raw bytes, adding the text form when there is one.
    pub fn new(hex: Bytes) -> Self {
        let text = std::str::from_utf8(&hex)
            .ok()
            .filter(|t| !t.chars().any(char::is_control))
            .map(str::to_string);
        Self { hex, text }
    }
}

/// Where fetching an agent's registration document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchStatus {
    /// Queued (new agent or new URI).
    Pending,
    /// Fetched and parsed.
    Ok,
    /// The last attempt failed; see [`AgentRecord::fetch_error`].
    Error,
    /// The agent has no URI.
    None,
}

impl FetchStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchStatus::Pending => "pending",
            FetchStatus::Ok => "ok",
            FetchStatus::Error => "error",
            FetchStatus::None => "none",
        }
    }

    /// Reads the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(FetchStatus::Pending),
            "ok" => Some(FetchStatus::Ok),
            "error" => Some(FetchStatus::Error),
            "none" => Some(FetchStatus::None),
            _ => None,
        }
    }
}

/// Why a registration document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchError {
    /// `malformed`, `too_large`, `timeout`, `unreachable`, `http_status`,
    /// `unsupported_uri` or `blocked_address`.
    pub kind: String,
    /// What happened, for people.
    pub message: String,
}

/// One page of agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPage {
    /// The agents on this page.
    pub items: Vec<AgentRecord>,
    /// How many agents match, over all pages.
    pub total: u64,
    /// This page, from 1.
    pub page: u64,
    /// Page size.
    pub limit: u64,
}
