//! The Registered stage: one ERC-8004 agent per seller, listing every offer whose
//! registration is enabled.
//!
//! The registration file is always published (at `/.well-known/agent-registration.json`
//! by the gateway); when the daemon has a registry key the agent is also minted or
//! found on chain, its URI kept current with `setAgentURI`, and its `x402.supported`
//! and `service.type` metadata set. On-chain work happens only when something changed
//! (the agent id and URI are remembered in the store's settings), and a failure never
//! stops serving: the offer stays Ready with the reason `OffChainOnly`.

use erc8004::registrar::{AgentMetadata, Registrar, ServiceType};
use erc8004::registration::{AgentProfile, AgentRegistration, OfferEntry, Registration};
use gateway::Site;
use serde_json::Value;

use crate::offer_store::{AgentRecord, OfferStore};
use crate::reconcile::Verdict;
use crate::spec::OfferType;
use crate::validate::ResolvedOffer;

mod metadata;

pub use metadata::ONCHAIN_PREFIX;

/// Path the gateway serves the registration file at.
pub const WELL_KNOWN_PATH: &str = "/.well-known/agent-registration.json";

/// The settings in which the SQLite store keeps the seller's registration, for the
/// admin API's status output.
pub use crate::store::RECORD_KEYS;

/// How the seller's agent is registered on chain.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Signs `register`, `setAgentURI` and `setMetadata`.
    pub registrar: Registrar,
    /// Put the whole document in a `data:` URI instead of pointing at the gateway.
    pub inline: bool,
}

/// The seller-level outcome of one pass.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    /// The Registered verdict for every enabled, published offer.
    pub verdict: Verdict,
    /// The agent id, once known.
    pub agent_id: Option<String>,
    /// The registering transaction, once known.
    pub tx: Option<String>,
    /// The document the gateway serves (or none when nothing was ever listed).
    pub document: Option<Value>,
}

/// The saved agent record; a store that cannot be read counts as no record, so the
/// stage registers (finding an existing agent by owner and URI) rather than stopping.
fn known(store: &dyn OfferStore) -> Option<AgentRecord> {
    store.agent().unwrap_or_else(|e| {
        tracing::warn!("cannot read the agent registration: {e}");
        None
    })
}

/// The seller's registration file: named after its offer when it sells one, after the
/// storefront title when it sells several.
fn document(
    site: &Site,
    offers: &[&ResolvedOffer],
    agent: Option<&AgentRecord>,
) -> Option<Registration> {
    let registrations: Vec<AgentRegistration> = agent
        .iter()
        .filter_map(|k| {
            Some(AgentRegistration {
                agent_id: u64::try_from(k.agent_id).ok()?,
                chain_id: k.chain_id,
                registry: k.registry,
            })
        })
        .collect();
    let single = match offers {
        [only] => Some(&only.registration),
        _ => None,
    };
    let profile = AgentProfile {
        name: single
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| site.title.clone()),
        description: single
            .and_then(|r| r.description.clone())
            .unwrap_or_default(),
        image: offers.iter().find_map(|o| o.registration.image.clone()),
        supported_trust: Vec::new(),
    };
    if offers.is_empty() {
        return agent.map(|_| Registration::tombstone(&profile, &registrations));
    }
    let base = if site.base_url.is_empty() {
        "http://127.0.0.1"
    } else {
        site.base_url.as_str()
    };
    let entries: Vec<OfferEntry> = offers
        .iter()
        .map(|o| OfferEntry {
            name: o.name.to_string(),
            endpoint_url: format!("{base}{}", o.path),
            description: o.registration.description.clone().unwrap_or_default(),
            skills: o.registration.skills.clone(),
            domains: o.registration.domains.clone(),
            x402: true,
        })
        .collect();
    match Registration::for_offers(&profile, &entries, &registrations) {
        Ok(mut doc) => {
            doc.metadata = metadata::merged(offers);
            // A later offer name wins a key two offers set, as for metadata.
            let mut sorted = offers.to_vec();
            sorted.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
            doc.provenance = sorted.iter().flat_map(|o| o.provenance.clone()).collect();
            Some(doc)
        }
        Err(e) => {
            tracing::warn!("cannot build the registration file: {e}");
            None
        }
    }
}

/// Publishes and (when configured) registers the seller's agent for `offers`, the
/// enabled offers whose route is published.
pub(crate) async fn list(
    config: Option<&RegistryConfig>,
    store: &dyn OfferStore,
    site: &Site,
    offers: &[&ResolvedOffer],
) -> Listing {
    let agent = known(store);
    let doc = document(site, offers, agent.as_ref());
    let as_value = |d: &Registration| serde_json::to_value(d).ok();
    let published = doc.as_ref().and_then(as_value);
    let Some(config) = config else {
        return Listing {
            verdict: Verdict::yes(
                "Skipped",
                format!(
                    "the registration file is published at {WELL_KNOWN_PATH}; give the daemon a registry key to also list it on the ERC-8004 registry"
                ),
            ),
            agent_id: agent.as_ref().map(|k| k.agent_id.to_string()),
            tx: agent.and_then(|k| k.tx),
            document: published,
        };
    };
    let Some(doc) = doc else {
        return Listing {
            verdict: Verdict::yes("Skipped", "nothing to register"),
            agent_id: None,
            tx: None,
            document: None,
        };
    };
    let uri = if config.inline {
        doc.to_data_uri()
    } else {
        format!("{}{WELL_KNOWN_PATH}", site.base_url)
    };
    let registrar = &config.registrar;
    let same_registry = agent
        .as_ref()
        .filter(|k| k.chain_id == registrar.chain_id() && k.registry == registrar.registry());
    let outcome = match same_registry {
        Some(k) if k.uri.as_deref() == Some(uri.as_str()) => {
            Ok((k.agent_id, k.tx.clone(), "AlreadyRegistered"))
        }
        // The URI follows the public URL even with nothing listed, so a stopped tunnel
        // leaves the tombstone reachable where the gateway now is.
        Some(k) => registrar
            .set_agent_uri(k.agent_id, &uri)
            .await
            .map(|tx| (k.agent_id, Some(tx.to_string()), "URIUpdated")),
        None if offers.is_empty() => {
            return Listing {
                verdict: Verdict::yes("Skipped", "nothing to register"),
                agent_id: None,
                tx: None,
                document: published,
            };
        }
        None => {
            let service = if offers.iter().any(|o| o.offer_type == OfferType::Inference) {
                ServiceType::Inference
            } else {
                ServiceType::Http
            };
            registrar
                .ensure_registered(registrar.sender(), &uri, &AgentMetadata::seller(service))
                .await
                .map(|e| {
                    let reason = if e.minted {
                        "Registered"
                    } else {
                        "AlreadyRegistered"
                    };
                    (
                        e.agent_id,
                        e.transactions.first().map(ToString::to_string),
                        reason,
                    )
                })
        }
    };
    match outcome {
        Ok((agent_id, tx, reason)) => {
            let record = AgentRecord {
                agent_id,
                uri: Some(uri.clone()),
                chain_id: registrar.chain_id(),
                registry: registrar.registry(),
                tx: tx.clone(),
            };
            if let Err(e) = store.save_agent(&record) {
                tracing::error!("cannot remember the agent registration: {e}");
            }
            match metadata::publish(registrar, agent_id, &metadata::merged(offers)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("wrote {n} registration metadata values on chain"),
                Err(e) => tracing::warn!(
                    "cannot write the registration metadata on chain ({e}); retried on the next pass"
                ),
            }
            let now_known = known(store);
            let document = document(site, offers, now_known.as_ref())
                .as_ref()
                .and_then(as_value);
            Listing {
                verdict: Verdict::yes(
                    reason,
                    format!(
                        "agent {agent_id} on {}",
                        erc8004::agent_registry_id(registrar.chain_id(), registrar.registry())
                    ),
                ),
                agent_id: Some(agent_id.to_string()),
                tx,
                document,
            }
        }
        Err(e) => Listing {
            verdict: Verdict::yes(
                "OffChainOnly",
                format!(
                    "off-chain only ({e}); the offer keeps serving and registration is retried"
                ),
            ),
            agent_id: agent.as_ref().map(|k| k.agent_id.to_string()),
            tx: agent.and_then(|k| k.tx),
            document: published,
        },
    }
}
