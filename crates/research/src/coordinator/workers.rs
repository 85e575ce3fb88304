//! Finding and sizing up workers: which registered agents sell experiments (by OASF
//! skill and x402 support, not "the first agent seen"), whether a worker is idle
//! (`GET /status`, served free), and what one run costs (`POST /experiment` with
//! `{probe:true}`, answered 402 by the gate, read as x402 v1 or v2 by
//! `x402::client`).

use std::time::Duration;

use alloy::primitives::U256;
use indexer::AgentRecord;
use serde::Serialize;
use serde_json::{Value, json};
use x402::client::{Challenge, Policy, choose};

use super::price;

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
        .and_then(|b| price::per_hour(choice.price.money, b))
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
