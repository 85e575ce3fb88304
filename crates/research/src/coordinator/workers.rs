//! Finding and sizing up workers: which registered agents sell experiments (by OASF
//! skill and x402 support, not "the first agent seen"), whether a worker is idle
//! (`GET /status`, served free), and what one run costs (`POST /experiment` with
//! `{probe:true}`, answered 402 by the gate, read as x402 v1 or v2 by
//! `x402::client`).

use std::time::Duration;

use alloy::primitives::U256;
use erc8004::AgentRecord;
use serde::Serialize;
use serde_json::{Value, json};
use x402::client::{Challenge, Policy, choose};

/// The OASF skill autoresearch workers register (v0.8.0).
pub const WORKER_SKILL: &str = "devops_mlops/model_versioning";
/// The OASF domain autoresearch workers register (v0.8.0).
pub const WORKER_DOMAIN: &str = "research_and_development/scientific_research";

/// A registered agent that may sell experiments, with the endpoints to try.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// ERC-8004 agent id (0 is valid).
    pub agent_id: u64,
    /// The registration's name.
    pub name: String,
    /// Its `web` endpoints (offer URLs).
    pub endpoints: Vec<String>,
    /// Its OASF skills.
    pub skills: Vec<String>,
    /// Its OASF domains.
    pub domains: Vec<String>,
}

/// The agents that match every skill filter (exact or `prefix/*`) and accept x402,
/// with at least one `web` endpoint.
pub fn candidates(agents: &[AgentRecord], skills: &[String]) -> Vec<Candidate> {
    agents
        .iter()
        .filter(|a| a.x402_supported && a.active)
        .filter(|a| {
            skills.iter().all(|f| {
                a.oasf_skills
                    .iter()
                    .chain(&a.oasf_domains)
                    .any(|n| erc8004::matches_filter(f, n))
            })
        })
        .filter_map(|a| {
            let endpoints: Vec<String> = a
                .services
                .iter()
                .filter(|s| {
                    s.name
                        .eq_ignore_ascii_case(erc8004::registration::WEB_SERVICE)
                })
                .map(|s| s.endpoint.trim_end_matches('/').to_string())
                .collect();
            (!endpoints.is_empty()).then(|| Candidate {
                chain_id: a.chain_id,
                agent_id: a.agent_id,
                name: a.name.clone(),
                endpoints,
                skills: a.oasf_skills.clone(),
                domains: a.oasf_domains.clone(),
            })
        })
        .collect()
}

/// A worker's `/status`, as far as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// Running an experiment now.
    pub busy: bool,
    /// The worker's time budget per run, seconds.
    pub budget_seconds: Option<u64>,
    /// The GPU it reports, if any.
    pub gpu: Option<String>,
}

impl WorkerStatus {
    /// Reads a worker's `/status` body; `None` when it is not a worker's.
    pub fn read(body: &Value) -> Option<Self> {
        let busy = match body.get("status")?.as_str()? {
            "busy" => true,
            "idle" => false,
            _ => return None,
        };
        let budget_seconds = ["budgetSeconds", "timeBudget", "timeoutSeconds"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_u64));
        let gpu = body.get("gpu").and_then(Value::as_str).map(str::to_string);
        Some(Self {
            busy,
            budget_seconds,
            gpu,
        })
    }
}

/// What one run costs at a worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    /// The endpoint asked.
    pub endpoint: String,
    /// The per-run price, e.g. `0.041667 USDC on base-sepolia`.
    pub per_run: String,
    /// The per-run amount in atomic units.
    pub amount_atomic: String,
    /// The same price per hour of the worker's budget, when the budget is known.
    pub per_hour: Option<String>,
    /// The x402 version the 402 spoke (1 or 2).
    pub x402_version: u8,
    /// The network, CAIP-2.
    pub network: String,
    /// Who is paid.
    pub pay_to: String,
    /// The worker's budget per run, seconds.
    pub budget_seconds: Option<u64>,
    /// Free: the worker answered the probe without asking payment.
    pub free: bool,
}

impl Quote {
    /// The per-run amount.
    pub fn amount(&self) -> U256 {
        self.amount_atomic.parse().unwrap_or(U256::MAX)
    }
}

/// Why a worker could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Not reachable.
    #[error("{url} is unreachable ({message}); is the worker's gateway running?")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What failed.
        message: String,
    },
    /// Answered, but not as a worker does.
    #[error("{url} answered HTTP {status}, not an autoresearch worker's {expected}: {body}")]
    NotAWorker {
        /// The URL asked.
        url: String,
        /// Its status.
        status: u16,
        /// What a worker sends.
        expected: &'static str,
        /// The start of its body.
        body: String,
    },
    /// A 402 that x402 cannot read.
    #[error("{url} answered 402 without readable x402 terms ({0}); it cannot be paid", .source)]
    Unpayable {
        /// The URL asked.
        url: String,
        /// What was wrong.
        source: x402::client::ChallengeError,
    },
}

fn short(body: &str) -> String {
    body.chars().take(160).collect()
}

/// A worker's `/status` (free behind the gate).
pub async fn status(http: &reqwest::Client, endpoint: &str) -> Result<WorkerStatus, AskError> {
    let url = format!("{}/status", endpoint.trim_end_matches('/'));
    let unreachable = |e: reqwest::Error| AskError::Unreachable {
        url: url.clone(),
        message: e.without_url().to_string(),
    };
    let response = http
        .get(&url)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(unreachable)?;
    let code = response.status().as_u16();
    let text = response.text().await.map_err(unreachable)?;
    serde_json::from_str::<Value>(&text)
        .ok()
        .filter(|_| code == 200)
        .and_then(|v| WorkerStatus::read(&v))
        .ok_or_else(|| AskError::NotAWorker {
            url,
            status: code,
            expected: "/status JSON with status idle or busy",
            body: short(&text),
        })
}

/// Asks the price of one run: `POST /experiment {probe:true}`. `budget_seconds`
/// (from `/status`) turns the per-run price into a per-hour one.
pub async fn probe(
    http: &reqwest::Client,
    endpoint: &str,
    budget_seconds: Option<u64>,
) -> Result<Quote, AskError> {
    let url = format!("{}/experiment", endpoint.trim_end_matches('/'));
    let unreachable = |e: reqwest::Error| AskError::Unreachable {
        url: url.clone(),
        message: e.without_url().to_string(),
    };
    let response = http
        .post(&url)
        .json(&json!({"probe": true}))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(unreachable)?;
    let code = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(unreachable)?;
    if (200..300).contains(&code) {
        return Ok(Quote {
            endpoint: endpoint.to_string(),
            per_run: "free".into(),
            amount_atomic: "0".into(),
            per_hour: None,
            x402_version: 0,
            network: String::new(),
            pay_to: String::new(),
            budget_seconds,
            free: true,
        });
    }
    if code != 402 {
        return Err(AskError::NotAWorker {
            url,
            status: code,
            expected: "402 (or 200 when free) to {probe:true}",
            body: short(&String::from_utf8_lossy(&body)),
        });
    }
    let challenge = Challenge::read(&headers, &body).map_err(|source| AskError::Unpayable {
        url: url.clone(),
        source,
    })?;
    quote(endpoint, &challenge, budget_seconds).ok_or_else(|| AskError::NotAWorker {
        url,
        status: code,
        expected: "an exact-scheme USDC offer",
        body: short(&String::from_utf8_lossy(&body)),
    })
}

/// The cheapest offer of a 402 that the client can pay in known USDC, as a quote.
pub fn quote(endpoint: &str, challenge: &Challenge, budget_seconds: Option<u64>) -> Option<Quote> {
    let choice = choose(challenge, &Policy::new(U256::MAX), None).ok()?;
    let r = &choice.offer.requirement;
    let per_hour = budget_seconds
        .and_then(|b| x402::Price::per_hour_from_per_run(choice.price.money, b))
        .map(|m| format!("{m} {}/hour", choice.price.symbol));
    Some(Quote {
        endpoint: endpoint.to_string(),
        per_run: choice.price.to_string(),
        amount_atomic: r.amount.to_string(),
        per_hour,
        x402_version: challenge.version.number(),
        network: r.network.caip2(),
        pay_to: r.pay_to.to_checksum(None),
        budget_seconds,
        free: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One exact USDC offer on Base Sepolia for 41 667 atomic units, `network` and
    /// the amount's key as each x402 version writes them.
    fn offer(network: &str, amount_key: &str) -> Value {
        json!({
            "scheme": "exact",
            "network": network,
            amount_key: "41667",
            "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "maxTimeoutSeconds": 540,
            "resource": "http://w/experiment",
            "extra": {"name": "USDC", "version": "2"}
        })
    }

    #[test]
    fn v1_and_v2_402s_quote_the_same_price_per_run_and_per_hour() {
        let v1 = json!({"x402Version": 1, "accepts": [offer("base-sepolia", "maxAmountRequired")]});
        let v2 = json!({"x402Version": 2, "accepts": [offer("eip155:84532", "amount")],
            "resource": {"url": "http://w/experiment"}});
        for (body, version) in [(v1, 1), (v2, 2)] {
            let challenge = Challenge::from_json(&body).expect("a readable 402");
            let q = quote("http://w", &challenge, Some(300)).expect("payable");
            assert_eq!(q.x402_version, version);
            assert_eq!(q.amount(), U256::from(41_667));
            assert_eq!(q.per_run, "0.041667 USDC on base-sepolia");
            assert_eq!(q.per_hour.as_deref(), Some("0.500004 USDC/hour"));
            assert_eq!(q.network, "eip155:84532");
        }
        let challenge = Challenge::from_json(&json!({"x402Version": 2,
            "accepts": [offer("eip155:84532", "amount")]}))
        .expect("a readable 402");
        assert_eq!(
            quote("http://w", &challenge, None)
                .expect("payable")
                .per_hour,
            None,
            "no budget, no hourly rate"
        );
    }

    #[test]
    fn a_status_is_a_workers_only_with_idle_or_busy() {
        let idle = WorkerStatus::read(
            &json!({"status": "idle", "budgetSeconds": 300, "timeoutSeconds": 420, "gpu": "H100"}),
        )
        .expect("a worker");
        assert_eq!(
            idle,
            WorkerStatus {
                busy: false,
                budget_seconds: Some(300),
                gpu: Some("H100".into())
            }
        );
        let reference = WorkerStatus::read(&json!({"status": "busy", "timeoutSeconds": 300}))
            .expect("the reference worker names only its timeout");
        assert!(reference.busy);
        assert_eq!(reference.budget_seconds, Some(300));
        assert!(WorkerStatus::read(&json!({"status": "ok"})).is_none());
        assert!(WorkerStatus::read(&json!([1, 2])).is_none());
    }

    #[test]
    fn candidates_need_the_skill_x402_and_a_web_endpoint() {
        let agent = |id: u64, x402: bool, skills: &[&str], services: Value| -> AgentRecord {
            serde_json::from_value(json!({
                "id": format!("84532:0x00:{id}"), "chain_id": 84532, "agent_id": id,
                "agent_registry": "eip155:84532:0x0000000000000000000000000000000000000000",
                "owner_address": "0x0000000000000000000000000000000000000001", "uri": "",
                "name": format!("a{id}"), "description": "", "image_url": null, "active": true,
                "x402_supported": x402, "service_type": "http", "supported_protocols": [],
                "oasf_skills": skills, "oasf_domains": [WORKER_DOMAIN], "services": services,
                "metadata": {}, "registration": null, "fetch_status": "ok", "fetch_error": null,
                "fetched_at": null, "registered_block": 1,
                "registered_tx": format!("0x{}", "00".repeat(32)), "updated_block": 1
            }))
            .expect("an agent record")
        };
        let web = json!([{"name": "web", "endpoint": "http://g/services/w/"}, {"name": "OASF", "endpoint": "https://github.com/agntcy/oasf/"}]);
        let agents = [
            agent(0, true, &[WORKER_SKILL], web.clone()),
            agent(1, false, &[WORKER_SKILL], web.clone()),
            agent(
                2,
                true,
                &["natural_language_processing/natural_language_generation/text_completion"],
                web.clone(),
            ),
            agent(3, true, &[WORKER_SKILL], json!([])),
        ];
        let found = candidates(&agents, &[WORKER_SKILL.to_string()]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].agent_id, 0, "agent 0 is a valid id");
        assert_eq!(found[0].endpoints, ["http://g/services/w"]);
        let by_prefix = candidates(&agents, &["devops_mlops/*".to_string()]);
        assert_eq!(by_prefix.len(), 1);
        let by_domain = candidates(&agents, &[WORKER_DOMAIN.to_string()]);
        assert_eq!(
            by_domain.len(),
            2,
            "x402 agents with the domain and an endpoint"
        );
    }
}
