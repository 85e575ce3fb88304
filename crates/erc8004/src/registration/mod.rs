//! The ERC-8004 registration document (`registration-v1`), the JSON an agent's URI
//! points at: written exactly as the spec spells it, read leniently because documents
//! in the wild predate or bend it (`endpoints` for `services`, string agent ids, nulls).
//!
//! This file holds the document's types and errors; [`aggregate`] builds a seller's one
//! document for all its offers, [`read`] is the lenient reader and [`data_uri`] the
//! inline `data:` form.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

use crate::oasf::OasfError;

mod aggregate;
mod data_uri;
mod read;

pub use data_uri::DATA_URI_PREFIX;
use read::{RawRegistration, RawService, number_or_decimal_string};

/// The `type` every registration document carries.
pub const REGISTRATION_TYPE: &str = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1";

/// Service name of an HTTP endpoint.
pub const WEB_SERVICE: &str = "web";

/// Service name of the entry that carries OASF skills and domains.
pub const OASF_SERVICE: &str = "OASF";

/// The OASF version ERC-8004 pins, as the spec writes it in the OASF service entry.
pub const OASF_SERVICE_VERSION: &str = "0.8";

/// The OASF entry's endpoint: agora publishes no OASF record of its own, so it points at
/// the taxonomy the skill and domain names come from, as other registrants do.
pub const OASF_ENDPOINT: &str = "https://github.com/agntcy/oasf/";

/// A registration document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawRegistration")]
pub struct Registration {
    /// Always [`REGISTRATION_TYPE`] when written.
    #[serde(rename = "type")]
    pub kind: String,
    /// Agent name (also the ERC-721 name).
    pub name: String,
    /// What the agent offers, for people browsing registries.
    pub description: String,
    /// Avatar URL; omitted when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How to reach the agent (`web`, `OASF`, `A2A`, `MCP`, ...).
    pub services: Vec<Service>,
    /// Whether the agent accepts x402 payments.
    pub x402_support: bool,
    /// False once the agent has stopped serving (tombstone).
    pub active: bool,
    /// The on-chain identities this document belongs to.
    pub registrations: Vec<RegistrationRef>,
    /// Trust models (`reputation`, `crypto-economic`, `tee-attestation`).
    pub supported_trust: Vec<String>,
    /// Free-form string metadata (obol extension); omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Free-form provenance strings (obol extension); omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, String>,
}

/// One entry of `services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawService")]
pub struct Service {
    /// Protocol name (`web`, `OASF`, ...; custom names are allowed).
    pub name: String,
    /// URL, address or identifier, depending on the protocol.
    pub endpoint: String,
    /// Protocol version (`0.8` for OASF); the spec recommends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// OASF skill names (OASF entries only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// OASF domain names (OASF entries only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
}

/// One entry of `registrations`: which registry minted this agent, under which id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRef {
    /// The token id; 0 is a valid id (the first agent of a registry).
    #[serde(deserialize_with = "number_or_decimal_string")]
    pub agent_id: u64,
    /// `eip155:<chainId>:<registry address>`, see [`crate::abi::agent_registry_id`].
    pub agent_registry: String,
}

/// One sold offer, as the aggregate document needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OfferEntry {
    /// Offer name (orders the services; fills in a missing agent name).
    pub name: String,
    /// The public URL buyers call (becomes a `web` service).
    pub endpoint_url: String,
    /// What the offer does (fills in a missing agent description).
    pub description: String,
    /// OASF v0.8.0 skill names.
    pub skills: Vec<String>,
    /// OASF v0.8.0 domain names.
    pub domains: Vec<String>,
    /// Whether the offer is behind an x402 payment gate.
    pub x402: bool,
}

/// The agent-level fields the operator chooses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentProfile {
    /// Agent name; when blank, the offer names are used.
    pub name: String,
    /// Agent description; when blank, one is made from the offers'.
    pub description: String,
    /// Avatar URL.
    pub image: Option<String>,
    /// Trust models to advertise.
    pub supported_trust: Vec<String>,
}

/// An on-chain identity of the agent, typed; written as a [`RegistrationRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRegistration {
    /// The token id.
    pub agent_id: u64,
    /// The chain the registry is on.
    pub chain_id: u64,
    /// The Identity Registry contract.
    pub registry: Address,
}

/// Why a document could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The URI is not a `data:` URI.
    #[error(
        "{0:?} is not a data URI; inline registrations look like {DATA_URI_PREFIX}<base64 JSON>"
    )]
    NotDataUri(String),
    /// A `data:` URI of another media type.
    #[error("the data URI has media type {0:?}; a registration must be application/json")]
    MediaType(String),
    /// The base64 payload does not decode.
    #[error("the data URI's base64 payload does not decode: {0}")]
    Base64(#[from] base64::DecodeError),
    /// A non-base64 payload with a broken `%XX` escape.
    #[error("the data URI's payload has an invalid %-escape; encode the JSON as base64 instead")]
    PercentEncoding,
    /// The payload is not a registration document.
    #[error("the registration JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// An offer names a skill or domain outside OASF v0.8.0.
    #[error("offer {offer}: {source}")]
    Oasf {
        /// The offer.
        offer: String,
        /// What was wrong with the name.
        source: OasfError,
    },
    /// An offer's endpoint is not an absolute http(s) URL.
    #[error(
        "offer {offer} has endpoint {endpoint:?}; a web service endpoint must be an absolute http(s) URL such as https://host/services/{offer}"
    )]
    Endpoint {
        /// The offer.
        offer: String,
        /// What it had.
        endpoint: String,
    },
}

impl Registration {
    /// The service carrying OASF skills and domains, if any (name compared without
    /// case, since documents in the wild write `oasf` too).
    pub fn oasf_service(&self) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(OASF_SERVICE))
    }
}
