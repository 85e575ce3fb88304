//! The seller's aggregation policy: one registration document for all of its offers (a
//! `web` service per offer endpoint and one OASF entry with the union of their skills
//! and domains), and a tombstone after the last offer is gone.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    AgentProfile, AgentRegistration, OASF_ENDPOINT, OASF_SERVICE, OASF_SERVICE_VERSION, OfferEntry,
    REGISTRATION_TYPE, Registration, RegistrationError, RegistrationRef, Service, WEB_SERVICE,
};
use crate::abi::agent_registry_id;
use crate::oasf::Taxonomy;

impl Registration {
    /// The one document for all of a seller's offers: a `web` service per distinct
    /// endpoint (offers in name order), one OASF entry with the sorted union of their
    /// skills and domains, and `x402Support` when any offer is gated. With no offers
    /// this is the [`Registration::tombstone`]. Skills and domains are checked against
    /// OASF v0.8.0 so an invalid name is never published.
    pub fn for_offers(
        profile: &AgentProfile,
        offers: &[OfferEntry],
        registrations: &[AgentRegistration],
    ) -> Result<Self, RegistrationError> {
        if offers.is_empty() {
            return Ok(Self::tombstone(profile, registrations));
        }
        let mut sorted: Vec<&OfferEntry> = offers.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));

        let mut skills = BTreeSet::new();
        let mut domains = BTreeSet::new();
        let mut services: Vec<Service> = Vec::new();
        for offer in &sorted {
            let oasf = |source| RegistrationError::Oasf {
                offer: offer.name.clone(),
                source,
            };
            for skill in &offer.skills {
                skills.insert(Taxonomy::validate_skill(skill).map_err(oasf)?.name.as_str());
            }
            for domain in &offer.domains {
                domains.insert(
                    Taxonomy::validate_domain(domain)
                        .map_err(oasf)?
                        .name
                        .as_str(),
                );
            }
            if !is_http_url(&offer.endpoint_url) {
                return Err(RegistrationError::Endpoint {
                    offer: offer.name.clone(),
                    endpoint: offer.endpoint_url.clone(),
                });
            }
            if !services.iter().any(|s| s.endpoint == offer.endpoint_url) {
                services.push(Service::web(&offer.endpoint_url));
            }
        }
        if !skills.is_empty() || !domains.is_empty() {
            services.push(Service {
                name: OASF_SERVICE.to_string(),
                endpoint: OASF_ENDPOINT.to_string(),
                version: Some(OASF_SERVICE_VERSION.to_string()),
                skills: skills.into_iter().map(str::to_string).collect(),
                domains: domains.into_iter().map(str::to_string).collect(),
            });
        }

        let name = non_blank(&profile.name).unwrap_or_else(|| {
            let names: Vec<&str> = sorted.iter().map(|o| o.name.as_str()).collect();
            names.join(", ")
        });
        let description =
            non_blank(&profile.description).unwrap_or_else(|| describe_offers(&sorted));
        Ok(Self {
            services,
            x402_support: sorted.iter().any(|o| o.x402),
            active: true,
            ..Self::base(profile, name, description, registrations)
        })
    }

    /// The document after the last offer is deleted: still names the agent and its
    /// registrations, but is inactive, lists no services and says "(deactivated)".
    pub fn tombstone(profile: &AgentProfile, registrations: &[AgentRegistration]) -> Self {
        let description = match non_blank(&profile.description) {
            Some(d) => format!("{d} (deactivated)"),
            None => "(deactivated)".to_string(),
        };
        Self::base(profile, profile.name.clone(), description, registrations)
    }

    fn base(
        profile: &AgentProfile,
        name: String,
        description: String,
        registrations: &[AgentRegistration],
    ) -> Self {
        Self {
            kind: REGISTRATION_TYPE.to_string(),
            name,
            description,
            image: profile.image.clone(),
            services: Vec::new(),
            x402_support: false,
            active: false,
            registrations: registrations
                .iter()
                .map(|r| RegistrationRef {
                    agent_id: r.agent_id,
                    agent_registry: agent_registry_id(r.chain_id, r.registry),
                })
                .collect(),
            supported_trust: profile.supported_trust.clone(),
            metadata: BTreeMap::new(),
            provenance: BTreeMap::new(),
        }
    }
}

impl Service {
    /// A `web` service at `endpoint`.
    pub fn web(endpoint: &str) -> Self {
        Self {
            name: WEB_SERVICE.to_string(),
            endpoint: endpoint.to_string(),
            version: None,
            skills: Vec::new(),
            domains: Vec::new(),
        }
    }
}

fn non_blank(s: &str) -> Option<String> {
    let trimmed = s.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// One offer: its description (or name); several: `name: description; ...`.
fn describe_offers(offers: &[&OfferEntry]) -> String {
    let parts: Vec<String> = offers
        .iter()
        .map(|o| match non_blank(&o.description) {
            Some(d) if offers.len() == 1 => d,
            Some(d) => format!("{}: {d}", o.name),
            None => o.name.clone(),
        })
        .collect();
    parts.join("; ")
}

fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    ["https://", "http://"].iter().any(|scheme| {
        lower.strip_prefix(scheme).is_some_and(|rest| {
            !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, address};
    use serde_json::json;

    const TESTNET: Address = address!("0x8004A818BFB912233c491871b3d84c89A494BD9e");

    fn offer(name: &str, skills: &[&str], domains: &[&str]) -> OfferEntry {
        OfferEntry {
            name: name.to_string(),
            endpoint_url: format!("https://seller.example/services/{name}"),
            description: format!("{name} via x402"),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            x402: true,
        }
    }

    fn profile() -> AgentProfile {
        AgentProfile {
            name: "seller".into(),
            description: "A seller".into(),
            image: Some("https://seller.example/icon.png".into()),
            supported_trust: vec!["reputation".into()],
        }
    }

    const TEXT_COMPLETION: &str =
        "natural_language_processing/natural_language_generation/text_completion";

    #[test]
    fn aggregates_offers_into_web_services_and_one_oasf_entry() {
        let offers = [
            offer(
                "worker",
                &["devops_mlops/model_versioning"],
                &[
                    "research_and_development/scientific_research",
                    "technology/data_science",
                ],
            ),
            offer(
                "my-qwen",
                &[TEXT_COMPLETION, "devops_mlops/model_versioning"],
                &["technology/data_science"],
            ),
        ];
        let registration = AgentRegistration {
            agent_id: 0,
            chain_id: 84532,
            registry: TESTNET,
        };
        let doc = Registration::for_offers(&profile(), &offers, &[registration]).unwrap();
        let expected = json!({
            "type": REGISTRATION_TYPE,
            "name": "seller",
            "description": "A seller",
            "image": "https://seller.example/icon.png",
            "services": [
                {"name": "web", "endpoint": "https://seller.example/services/my-qwen"},
                {"name": "web", "endpoint": "https://seller.example/services/worker"},
                {
                    "name": "OASF",
                    "endpoint": OASF_ENDPOINT,
                    "version": "0.8",
                    "skills": ["devops_mlops/model_versioning", TEXT_COMPLETION],
                    "domains": ["research_and_development/scientific_research", "technology/data_science"]
                }
            ],
            "x402Support": true,
            "active": true,
            "registrations": [
                {"agentId": 0, "agentRegistry": "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"}
            ],
            "supportedTrust": ["reputation"]
        });
        assert_eq!(serde_json::to_value(&doc).unwrap(), expected);
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.starts_with(
            r#"{"type":"https://eips.ethereum.org/EIPS/eip-8004#registration-v1","name""#
        ));
        assert_eq!(doc.oasf_service().unwrap().skills.len(), 2);
    }

    #[test]
    fn blank_profile_fields_come_from_the_offers_and_endpoints_are_deduplicated() {
        let mut a = offer("a", &[], &[]);
        let mut b = offer("b", &[], &[]);
        b.endpoint_url = a.endpoint_url.clone();
        b.description = String::new();
        a.x402 = false;
        b.x402 = false;
        let doc = Registration::for_offers(&AgentProfile::default(), &[b, a], &[]).unwrap();
        assert_eq!(doc.name, "a, b");
        assert_eq!(doc.description, "a: a via x402; b");
        assert_eq!(
            doc.services,
            [Service::web("https://seller.example/services/a")]
        );
        assert!(doc.oasf_service().is_none());
        assert!(!doc.x402_support);
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json.get("image").is_none());
        assert_eq!(json["registrations"], json!([]));
        assert_eq!(json["supportedTrust"], json!([]));

        let single =
            Registration::for_offers(&AgentProfile::default(), &[offer("q", &[], &[])], &[])
                .unwrap();
        assert_eq!(single.description, "q via x402");
    }

    #[test]
    fn invalid_oasf_names_and_endpoints_are_refused() {
        let err =
            Registration::for_offers(&profile(), &[offer("w", &["text_completion"], &[])], &[])
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "offer w: unknown OASF v0.8.0 skill \"text_completion\": type {TEXT_COMPLETION} instead"
            )
        );
        let err = Registration::for_offers(&profile(), &[offer("w", &[], &["technology/ai"])], &[])
            .unwrap_err();
        assert!(matches!(err, RegistrationError::Oasf { .. }), "{err}");

        for bad in [
            "",
            "seller.example/x",
            "ftp://x",
            "https:///x",
            "https://a b",
        ] {
            let mut o = offer("w", &[], &[]);
            o.endpoint_url = bad.to_string();
            let err = Registration::for_offers(&profile(), &[o], &[]).unwrap_err();
            assert!(
                err.to_string().contains("absolute http(s) URL"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn tombstone_is_inactive_with_no_services() {
        let registration = AgentRegistration {
            agent_id: 7,
            chain_id: 8453,
            registry: address!("0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"),
        };
        let doc = Registration::tombstone(&profile(), &[registration]);
        assert!(!doc.active);
        assert!(!doc.x402_support);
        assert!(doc.services.is_empty());
        assert_eq!(doc.description, "A seller (deactivated)");
        assert_eq!(doc.registrations[0].agent_id, 7);
        assert_eq!(
            doc.registrations[0].agent_registry,
            "eip155:8453:0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
        );
        assert_eq!(
            Registration::for_offers(&profile(), &[], &[registration]).unwrap(),
            doc
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["services"], json!([]));
        assert_eq!(json["active"], json!(false));
    }
}
