//! Which agents a search wants, written once: the filters an indexer is asked with,
//! the rule that checks every filter on the records it returns (an 8004scan-shaped
//! indexer applies only the first skill and the first domain), and where an agent
//! sells (its `web` services).

use alloy::primitives::Address;
use erc8004::registration::WEB_SERVICE;
use erc8004::{AgentRecord, Kind, Taxonomy, matches_filter};
use serde::Serialize;

use crate::MarketError;

/// Most agents an indexer returns for one query.
pub const MAX_LIMIT: u32 = 100;

/// What to look for on the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Search {
    /// OASF skills, exact or `prefix/*`; all must match.
    pub skills: Vec<String>,
    /// OASF domains, exact or `prefix/*`; all must match.
    pub domains: Vec<String>,
    /// Only agents that accept x402 payments.
    pub x402: bool,
    /// Words in the name or description.
    pub text: Option<String>,
    /// Only agents owned by this address.
    pub owner: Option<Address>,
    /// Most agents to return (an indexer answers 1 to [`MAX_LIMIT`]).
    pub limit: u32,
}

impl Search {
    /// At most `limit` agents that accept x402: sellers, before any skill is added.
    pub fn x402(limit: u32) -> Self {
        Self {
            x402: true,
            limit,
            ..Self::default()
        }
    }

    /// Refuses a skill or domain filter that names nothing in the OASF taxonomy, with
    /// the nearest names, before anything is asked.
    pub fn check(&self) -> Result<(), MarketError> {
        let filters = (self.skills.iter().map(|f| (Kind::Skill, f)))
            .chain(self.domains.iter().map(|f| (Kind::Domain, f)));
        for (kind, filter) in filters {
            Taxonomy::filter(kind, filter)
                .map_err(|source| MarketError::Filter { kind, source })?;
        }
        Ok(())
    }

    /// The page size an indexer is asked for.
    pub fn page_size(&self) -> u32 {
        self.limit.clamp(1, MAX_LIMIT)
    }

    /// Whether `record` passes every skill and domain filter; the indexer applies only
    /// the first of each.
    pub fn matches(&self, record: &AgentRecord) -> bool {
        let all_match = |filters: &[String], names: &[String]| {
            filters
                .iter()
                .all(|f| names.iter().any(|n| matches_filter(f, n)))
        };
        all_match(&self.skills, &record.oasf_skills)
            && all_match(&self.domains, &record.oasf_domains)
    }

    /// The query parameters of an 8004scan-shaped `GET /api/v1/public/agents`.
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![("limit", self.page_size().to_string())];
        if let Some(skill) = self.skills.first() {
            params.push(("skill", skill.clone()));
        }
        if let Some(domain) = self.domains.first() {
            params.push(("domain", domain.clone()));
        }
        if self.x402 {
            params.push(("x402", "true".into()));
        }
        if let Some(text) = &self.text {
            params.push(("search", text.clone()));
        }
        if let Some(owner) = &self.owner {
            params.push(("ownerAddress", owner.to_string()));
        }
        params
    }
}

/// The endpoints of an agent's `web` services, as registered: where its offers are
/// sold.
pub fn web_endpoints(record: &AgentRecord) -> Vec<String> {
    record
        .services
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case(WEB_SERVICE))
        .map(|s| s.endpoint.clone())
        .collect()
}

/// One agent as a buyer sees it: who, what it does, where it sells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// ERC-8004 agent id (0 is valid).
    pub agent_id: u64,
    /// The registration's name (empty until the indexer read it).
    pub name: String,
    /// Its owner.
    pub owner: Address,
    /// Whether it accepts x402 payments.
    pub x402: bool,
    /// Its OASF skills.
    pub skills: Vec<String>,
    /// Its OASF domains.
    pub domains: Vec<String>,
    /// Its `web` endpoints.
    pub endpoints: Vec<String>,
}

impl Agent {
    /// The agent of an indexer record.
    pub fn of(record: &AgentRecord) -> Self {
        Self {
            chain_id: record.chain_id,
            agent_id: record.agent_id,
            name: record.name.clone(),
            owner: record.owner_address,
            x402: record.x402_supported,
            skills: record.oasf_skills.clone(),
            domains: record.oasf_domains.clone(),
            endpoints: web_endpoints(record),
        }
    }
}

/// The agents among `records` that pass every filter of `search`.
pub fn agents(records: &[AgentRecord], search: &Search) -> Vec<Agent> {
    records
        .iter()
        .filter(|r| search.matches(r))
        .map(Agent::of)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use erc8004::registration::Service;

    /// A fetched record with these tags and services.
    pub(crate) fn record(
        agent_id: u64,
        skills: &[&str],
        domains: &[&str],
        services: &[(&str, &str)],
    ) -> AgentRecord {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        serde_json::from_value(serde_json::json!({
            "id": format!("84532:0x8004a818bfb912233c491871b3d84c89a494bd9e:{agent_id}"),
            "chain_id": 84532,
            "agent_id": agent_id,
            "agent_registry": "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e",
            "owner_address": "0x00000000000000000000000000000000000000aa",
            "uri": "",
            "name": format!("agent {agent_id}"),
            "description": "",
            "image_url": null,
            "active": true,
            "x402_supported": true,
            "service_type": null,
            "supported_protocols": [],
            "oasf_skills": strings(skills),
            "oasf_domains": strings(domains),
            "services": services.iter().map(|(name, endpoint)| Service {
                name: name.to_string(),
                endpoint: endpoint.to_string(),
                version: None,
                skills: vec![],
                domains: vec![],
            }).collect::<Vec<_>>(),
            "metadata": {},
            "registration": null,
            "fetch_status": "ok",
            "fetch_error": null,
            "fetched_at": null,
            "registered_block": 1,
            "registered_tx": format!("0x{}", "00".repeat(32)),
            "updated_block": 1,
        }))
        .expect("a record")
    }

    #[test]
    fn every_filter_must_match_and_web_endpoints_are_kept_as_registered() {
        let records = [
            record(
                1,
                &["devops_mlops/model_versioning"],
                &["research_and_development/scientific_research"],
                &[
                    ("web", "http://a/offer/"),
                    ("MCP", "http://a/mcp"),
                    ("Web", "http://a/2"),
                ],
            ),
            record(2, &["devops_mlops/monitoring_alerting"], &[], &[]),
        ];
        let search = Search {
            skills: vec![
                "devops_mlops/*".into(),
                "devops_mlops/model_versioning".into(),
            ],
            domains: vec!["research_and_development/*".into()],
            ..Search::x402(20)
        };
        let found = agents(&records, &search);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].agent_id, 1);
        assert_eq!(found[0].endpoints, ["http://a/offer/", "http://a/2"]);
        let json = serde_json::to_value(&found[0]).expect("json");
        // As the indexer writes it, and as `{:#x}` shows it.
        assert_eq!(json["owner"], "0x00000000000000000000000000000000000000aa");
        assert_eq!(json["owner"], format!("{:#x}", found[0].owner));
        assert_eq!(agents(&records, &Search::x402(20)).len(), 2);
    }

    #[test]
    fn filters_are_checked_against_the_taxonomy_and_sent_first_only() {
        let search = Search {
            skills: vec![
                "devops_mlops/*".into(),
                "devops_mlops/model_versioning".into(),
            ],
            text: Some("qwen".into()),
            ..Search::x402(500)
        };
        assert!(search.check().is_ok());
        assert_eq!(
            search.params(),
            [
                ("limit", "100".to_string()),
                ("skill", "devops_mlops/*".into()),
                ("x402", "true".into()),
                ("search", "qwen".into()),
            ]
        );
        let unknown = Search {
            domains: vec!["technologi/*".into()],
            ..Search::default()
        };
        let e = unknown.check().expect_err("not a domain");
        assert!(
            matches!(
                e,
                MarketError::Filter {
                    kind: Kind::Domain,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(unknown.page_size(), 1);
    }
}
