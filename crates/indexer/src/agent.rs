//! An agent as the indexer sees it: the on-chain state folded from its events, and the
//! listing fields derived from that state plus its registration document. Both folds
//! are pure so a reorg rebuild and the forward path cannot disagree.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, B256, Bytes};
use erc8004::Registration;
use erc8004::registrar::{SERVICE_TYPE_KEY, X402_SUPPORTED_KEY};
use erc8004::registration::Service;

use crate::events::{ChainEvent, Change};

/// What the chain says about one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnChain {
    /// Current owner.
    pub(crate) owner: Address,
    /// Current agent URI (empty when registered without one).
    pub(crate) uri: String,
    /// Current metadata entries; cleared keys are removed.
    pub(crate) metadata: BTreeMap<String, Bytes>,
    /// Block of the mint.
    pub(crate) registered_block: u64,
    /// Transaction of the mint.
    pub(crate) registered_tx: B256,
    /// Block of the latest event.
    pub(crate) updated_block: u64,
}

impl OnChain {
    /// The state after `event`; `None` before the mint and after a burn. Events for an
    /// agent whose mint was not seen (indexing started after it) leave it unknown,
    /// except `Registered`, which carries everything a listing needs.
    pub(crate) fn apply(state: Option<Self>, event: &ChainEvent) -> Option<Self> {
        let minted = || Self {
            owner: Address::ZERO,
            uri: String::new(),
            metadata: BTreeMap::new(),
            registered_block: event.block,
            registered_tx: event.tx_hash,
            updated_block: event.block,
        };
        let mut agent = match (&event.change, state) {
            (Change::Transfer { to, .. }, _) if to.is_zero() => return None,
            // A mint always starts a fresh token, whatever was recorded before.
            (Change::Transfer { from, .. }, _) if from.is_zero() => minted(),
            (_, Some(agent)) => agent,
            (Change::Registered { .. }, None) => minted(),
            (_, None) => return None,
        };
        agent.updated_block = event.block;
        match &event.change {
            Change::Registered { uri, owner } => {
                agent.uri.clone_from(uri);
                agent.owner = *owner;
            }
            Change::UriUpdated { uri, .. } => agent.uri.clone_from(uri),
            Change::MetadataSet { key, value } if value.is_empty() => {
                agent.metadata.remove(key);
            }
            Change::MetadataSet { key, value } => {
                agent.metadata.insert(key.clone(), value.clone());
            }
            Change::Transfer { to, .. } => agent.owner = *to,
        }
        Some(agent)
    }
}

/// The listing fields buyers filter on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Profile {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) image: Option<String>,
    /// `x402.supported` metadata when set, else the document's `x402Support`.
    pub(crate) x402: bool,
    /// The document's `active`; true while there is no document.
    pub(crate) active: bool,
    /// `service.type` metadata (`inference`, `http`).
    pub(crate) service_type: Option<String>,
    /// Union of the OASF entries' skills, sorted.
    pub(crate) skills: Vec<String>,
    /// Union of the OASF entries' domains, sorted.
    pub(crate) domains: Vec<String>,
    /// Distinct service names as written (`web`, `OASF`, `MCP`, `A2A`, ...).
    pub(crate) protocols: Vec<String>,
    /// The services verbatim.
    pub(crate) services: Vec<Service>,
}

impl Profile {
    /// Derives the listing from the chain state and the fetched document, if any.
    pub(crate) fn derive(agent: &OnChain, document: Option<&Registration>) -> Self {
        let metadata_x402 = agent.metadata.get(X402_SUPPORTED_KEY).map(|v| truthy(v));
        let service_type = agent
            .metadata
            .get(SERVICE_TYPE_KEY)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let Some(doc) = document else {
            return Self {
                x402: metadata_x402.unwrap_or(false),
                active: true,
                service_type,
                ..Self::default()
            };
        };
        let oasf = doc.services.iter().filter(|s| {
            s.name
                .eq_ignore_ascii_case(erc8004::registration::OASF_SERVICE)
        });
        let mut skills = BTreeSet::new();
        let mut domains = BTreeSet::new();
        for service in oasf {
            skills.extend(service.skills.iter().map(|s| s.trim().to_string()));
            domains.extend(service.domains.iter().map(|s| s.trim().to_string()));
        }
        let mut protocols: Vec<String> = Vec::new();
        for service in &doc.services {
            let name = service.name.trim();
            if !name.is_empty() && !protocols.iter().any(|p| p.eq_ignore_ascii_case(name)) {
                protocols.push(name.to_string());
            }
        }
        Self {
            name: doc.name.clone(),
            description: doc.description.clone(),
            image: doc.image.clone(),
            x402: metadata_x402.unwrap_or(doc.x402_support),
            active: doc.active,
            service_type,
            skills: skills.into_iter().filter(|s| !s.is_empty()).collect(),
            domains: domains.into_iter().filter(|s| !s.is_empty()).collect(),
            protocols,
            services: doc.services.clone(),
        }
    }

    /// Lowercased name and description, what `search` matches substrings in.
    pub(crate) fn search_text(&self) -> String {
        format!("{}\n{}", self.name, self.description).to_lowercase()
    }
}

/// obol writes `0x01`; others write the text `1` or `true`.
fn truthy(value: &[u8]) -> bool {
    match value {
        [1] => true,
        text => std::str::from_utf8(text).is_ok_and(|t| {
            let t = t.trim();
            t == "1" || t.eq_ignore_ascii_case("true")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;
    use serde_json::json;

    const OWNER: Address = address!("0x00000000000000000000000000000000000000aa");
    const BUYER: Address = address!("0x00000000000000000000000000000000000000bb");

    fn at(block: u64, change: Change) -> ChainEvent {
        ChainEvent {
            block,
            block_hash: B256::repeat_byte(block as u8),
            log_index: 0,
            tx_hash: B256::repeat_byte(0x10 + block as u8),
            agent_id: 0,
            change,
        }
    }

    fn fold(events: &[ChainEvent]) -> Option<OnChain> {
        events.iter().fold(None, OnChain::apply)
    }

    #[test]
    fn the_reference_registration_order_folds_into_one_agent() {
        let events = [
            at(
                1,
                Change::Transfer {
                    from: Address::ZERO,
                    to: OWNER,
                },
            ),
            at(
                1,
                Change::Registered {
                    uri: "ipfs://a".into(),
                    owner: OWNER,
                },
            ),
            at(
                1,
                Change::MetadataSet {
                    key: "agentWallet".into(),
                    value: Bytes::copy_from_slice(OWNER.as_slice()),
                },
            ),
            at(
                2,
                Change::UriUpdated {
                    uri: "ipfs://b".into(),
                    by: OWNER,
                },
            ),
            at(
                3,
                Change::MetadataSet {
                    key: "agentWallet".into(),
                    value: Bytes::new(),
                },
            ),
            at(
                3,
                Change::Transfer {
                    from: OWNER,
                    to: BUYER,
                },
            ),
        ];
        let agent = fold(&events).unwrap();
        assert_eq!(agent.owner, BUYER);
        assert_eq!(agent.uri, "ipfs://b");
        assert!(
            agent.metadata.is_empty(),
            "the transfer cleared agentWallet"
        );
        assert_eq!((agent.registered_block, agent.updated_block), (1, 3));
        assert_eq!(agent.registered_tx, B256::repeat_byte(0x11));

        let burned = [
            events[0].clone(),
            at(
                4,
                Change::Transfer {
                    from: OWNER,
                    to: Address::ZERO,
                },
            ),
        ];
        assert_eq!(fold(&burned), None);
        assert_eq!(fold(&events[3..]), None, "no mint seen, no agent");
    }

    #[test]
    fn metadata_overrides_the_document_and_oasf_entries_are_merged() {
        let agent = fold(&[
            at(
                1,
                Change::Registered {
                    uri: "data:".into(),
                    owner: OWNER,
                },
            ),
            at(
                1,
                Change::MetadataSet {
                    key: "service.type".into(),
                    value: Bytes::from_static(b"inference"),
                },
            ),
        ])
        .unwrap();
        let doc: Registration = serde_json::from_value(json!({
            "name": "Qwen",
            "description": "Small MODEL",
            "x402Support": true,
            "active": false,
            "services": [
                {"name": "web", "endpoint": "https://a/"},
                {"name": "Web", "endpoint": "https://b/"},
                {"name": "OASF", "skills": ["b/c", "a"], "domains": ["d"]},
                {"name": "oasf", "skills": ["a", " "]},
                {"name": "MCP", "endpoint": "https://a/mcp"}
            ]
        }))
        .unwrap();
        let profile = Profile::derive(&agent, Some(&doc));
        assert!(profile.x402);
        assert!(!profile.active);
        assert_eq!(profile.service_type.as_deref(), Some("inference"));
        assert_eq!(profile.skills, ["a", "b/c"]);
        assert_eq!(profile.domains, ["d"]);
        assert_eq!(profile.protocols, ["web", "OASF", "MCP"]);
        assert_eq!(profile.search_text(), "qwen\nsmall model");

        let mut off = agent.clone();
        off.metadata
            .insert("x402.supported".into(), Bytes::from_static(&[0]));
        assert!(!Profile::derive(&off, Some(&doc)).x402);
        for on in [&[1u8][..], b"1", b" TRUE "] {
            off.metadata
                .insert("x402.supported".into(), Bytes::copy_from_slice(on));
            assert!(Profile::derive(&off, None).x402, "{on:?}");
        }
        let bare = Profile::derive(&agent, None);
        assert!(bare.active && !bare.x402 && bare.skills.is_empty());
    }
}
