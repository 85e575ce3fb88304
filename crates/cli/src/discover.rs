//! `agora discover`: find sellers on the ERC-8004 registry by skill, domain and x402
//! support, through an indexer, or by scanning the registry over RPC when no indexer
//! answers; `--probe` asks each endpoint for its live 402 price.

use std::time::Duration;

use alloy::primitives::Address;
use anyhow::{Context, bail};
use clap::Args;
use erc8004::oasf::{Kind, Taxonomy};
use serde::Serialize;
use serde_json::Value;

use crate::config;
use crate::index_cmd::{self, DEFAULT_INDEXER};
use crate::output::outln;

/// Options of `agora discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Indexer to ask [default: a local `agora index` on 127.0.0.1:3400].
    #[arg(long, env = config::INDEXER, value_name = "URL")]
    indexer: Option<reqwest::Url>,
    /// Scan the registry over this RPC when no indexer answers.
    #[arg(long, value_name = "URL")]
    rpc: Option<reqwest::Url>,
    /// Identity Registry address for --rpc [default: the chain's ERC-8004 deployment].
    #[arg(long, value_name = "ADDR")]
    registry: Option<Address>,
    /// OASF skill, exact or `prefix/*` (repeatable; all must match).
    #[arg(long = "skill", value_name = "SKILL")]
    skills: Vec<String>,
    /// OASF domain, exact or `prefix/*` (repeatable; all must match).
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Only agents that accept x402 payments.
    #[arg(long)]
    x402: bool,
    /// Text in the name or description.
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// Only agents owned by this address.
    #[arg(long, value_name = "ADDR")]
    owner: Option<Address>,
    /// Most agents to list.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Ask each agent's web endpoint for its 402 and show the price.
    #[arg(long)]
    probe: bool,
    /// Most USDC to pay the indexer for this query when it answers 402, e.g. 0.001
    /// (paid like `agora pay`: the default wallet, its budgets and its ledger).
    #[arg(long, value_name = "USDC")]
    max: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

impl DiscoverArgs {
    /// The registry search these flags ask for.
    fn query(&self) -> DiscoverQuery {
        DiscoverQuery {
            indexer: self.indexer.clone(),
            rpc: self.rpc.clone(),
            registry: self.registry,
            skills: self.skills.clone(),
            domains: self.domains.clone(),
            x402: self.x402,
            search: self.search.clone(),
            owner: self.owner,
            limit: self.limit,
            max: self.max.clone(),
            quiet: self.json,
        }
    }
}

/// A registry search as `agora discover` makes it, built directly by the commands that
/// search as it does (`research coordinator`, `sell pricing --research`) rather than
/// parsed from a command line, so each field keeps one meaning everywhere.
#[derive(Debug, Clone)]
pub(crate) struct DiscoverQuery {
    /// Indexer to ask [default: a local `agora index`].
    pub(crate) indexer: Option<reqwest::Url>,
    /// Scan the registry over this RPC when no indexer answers.
    pub(crate) rpc: Option<reqwest::Url>,
    /// Identity Registry address for the scan [default: the chain's deployment].
    pub(crate) registry: Option<Address>,
    /// OASF skills, exact or `prefix/*`; all must match.
    pub(crate) skills: Vec<String>,
    /// OASF domains, exact or `prefix/*`; all must match.
    pub(crate) domains: Vec<String>,
    /// Only agents that accept x402 payments.
    pub(crate) x402: bool,
    /// Text in the name or description.
    pub(crate) search: Option<String>,
    /// Only agents owned by this address.
    pub(crate) owner: Option<Address>,
    /// Most agents to list (the indexer answers 1 to 100).
    pub(crate) limit: u32,
    /// Most USDC to pay an indexer that answers 402.
    pub(crate) max: Option<String>,
    /// No progress note on stderr, for machine-readable output.
    pub(crate) quiet: bool,
}

impl DiscoverQuery {
    /// At most `limit` agents that accept x402, from `indexer` or a scan over `rpc`:
    /// the search of `research` and `sell pricing --research`, which add their skills.
    pub(crate) fn x402(
        limit: u32,
        indexer: Option<reqwest::Url>,
        rpc: Option<reqwest::Url>,
    ) -> Self {
        Self {
            indexer,
            rpc,
            registry: None,
            skills: Vec::new(),
            domains: Vec::new(),
            x402: true,
            search: None,
            owner: None,
            limit,
            max: None,
            quiet: false,
        }
    }
}

/// One agent as `discover` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    chain_id: u64,
    agent_id: u64,
    name: String,
    owner: String,
    x402: bool,
    skills: Vec<String>,
    domains: Vec<String>,
    endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    prices: Vec<Price>,
}

/// What an endpoint's 402 asks for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Price {
    endpoint: String,
    status: u16,
    price: Option<String>,
    amount: Option<String>,
    network: Option<String>,
    pay_to: Option<String>,
    error: Option<String>,
}

pub(crate) fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")
}

/// Runs one discovery.
pub async fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    let client = http()?;
    let query = args.query();
    let items = agents(&query).await?;
    let mut found: Vec<Found> = items.iter().filter_map(|a| to_found(a, &query)).collect();
    if args.probe {
        for agent in &mut found {
            for endpoint in agent.endpoints.clone() {
                agent.prices.push(probe(&client, &endpoint).await);
            }
        }
    }
    print(&found, &args)
}

/// The indexer's records of the agents `args` asks for (the indexer applies the
/// first skill and domain filter): from the indexer, or from a scan over `--rpc` when
/// none answers. `agora sell pricing --research` reads its comparables here too.
pub(crate) async fn agents(args: &DiscoverQuery) -> anyhow::Result<Vec<Value>> {
    for skill in &args.skills {
        Taxonomy::filter(Kind::Skill, skill).map_err(|e| anyhow::anyhow!("--skill: {e}"))?;
    }
    for domain in &args.domains {
        Taxonomy::filter(Kind::Domain, domain).map_err(|e| anyhow::anyhow!("--domain: {e}"))?;
    }
    let base = args
        .indexer
        .as_ref()
        .map_or_else(|| DEFAULT_INDEXER.to_string(), config::url_text)
        .trim_end_matches('/')
        .to_string();
    let client = http()?;
    let reachable = client.get(format!("{base}/health")).send().await.is_ok();
    Ok(if reachable {
        query(&client, &base, args).await?
    } else {
        let Some(rpc) = args.rpc.as_ref().map(config::url_text) else {
            bail!(
                "no indexer answers at {base}; start one with `agora index --rpc URL`, pass --indexer URL, or pass --rpc URL to scan the registry directly"
            );
        };
        if !args.quiet {
            eprintln!("no indexer at {base}; scanning the registry over {rpc} ...");
        }
        scan(&rpc, args.registry, args).await?
    })
}

async fn query(
    client: &reqwest::Client,
    base: &str,
    args: &DiscoverQuery,
) -> anyhow::Result<Vec<Value>> {
    let mut params: Vec<(&str, String)> = vec![("limit", args.limit.clamp(1, 100).to_string())];
    if let Some(skill) = args.skills.first() {
        params.push(("skill", skill.clone()));
    }
    if let Some(domain) = args.domains.first() {
        params.push(("domain", domain.clone()));
    }
    if args.x402 {
        params.push(("x402", "true".into()));
    }
    if let Some(search) = &args.search {
        params.push(("search", search.clone()));
    }
    if let Some(owner) = &args.owner {
        params.push(("ownerAddress", owner.to_string()));
    }
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/public/agents"))
        .with_context(|| format!("--indexer {base} is not a URL"))?;
    url.query_pairs_mut().extend_pairs(params);
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("cannot reach the indexer at {url}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::PAYMENT_REQUIRED {
        return paid_query(&url, args.max.clone()).await;
    }
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer JSON"))?;
    items(&url, status, &body)
}

/// The agents of an indexer's answer, or its error with its hint.
fn items(
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    body: &Value,
) -> anyhow::Result<Vec<Value>> {
    if !status.is_success() {
        bail!(
            "the indexer refused the query: {} ({})",
            body["error"].as_str().unwrap_or("unknown error"),
            body["hint"].as_str().unwrap_or("")
        );
    }
    let Some(items) = body["items"].as_array() else {
        bail!(
            "{url} answered without an `items` list; is --indexer an agora index (or a gateway route selling one)?"
        );
    };
    Ok(items.clone())
}

/// An indexer sold through x402 (selling indexing): the query is bought through
/// `agora pay`'s own flow rather than a copy of it, so `--max`, the wallet's budgets,
/// the ledger and the refusals (exit 2, nothing signed) are exactly `agora pay`'s.
/// The answer goes to a temporary file because `agora pay` streams to a sink.
async fn paid_query(url: &reqwest::Url, max: Option<String>) -> anyhow::Result<Vec<Value>> {
    let dir = tempfile::tempdir().context("cannot create a temporary file for the answer")?;
    let file = dir.path().join("answer.json");
    crate::pay::run(crate::pay::PayArgs::get_to_file(
        url.as_str(),
        max,
        file.clone(),
    ))
    .await
    .with_context(|| format!("the indexer at {url} asks payment"))?;
    let text = std::fs::read(&file)
        .with_context(|| format!("cannot read the paid answer in {}", file.display()))?;
    let body: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{url} did not answer JSON after payment"))?;
    let status = match body.get("items") {
        Some(_) => reqwest::StatusCode::OK,
        None => reqwest::StatusCode::BAD_GATEWAY,
    };
    items(url, status, &body)
}

/// Indexes the registry into a temporary database and asks it, as `agora index` would.
async fn scan(
    rpc: &str,
    registry: Option<Address>,
    args: &DiscoverQuery,
) -> anyhow::Result<Vec<Value>> {
    let dir = tempfile::tempdir().context("cannot create a temporary database")?;
    let config = index_cmd::config(rpc, registry, dir.path().join("scan.db"), false);
    let indexer = indexer::Indexer::open(config).await?;
    loop {
        let report = indexer.sync().await?;
        if report
            .indexed_block
            .is_some_and(|b| b >= report.target_block)
        {
            break;
        }
    }
    indexer.fetch_pending().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(indexer.serve(listener, async {
        let _ = stopped.await;
    }));
    let items = query(&http()?, &base, args).await;
    let _ = stop.send(());
    let _ = served.await;
    items
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The agent, if it passes every filter (the indexer applies the first of each).
fn to_found(agent: &Value, args: &DiscoverQuery) -> Option<Found> {
    let skills = strings(&agent["oasf_skills"]);
    let domains = strings(&agent["oasf_domains"]);
    let all_match = |filters: &[String], names: &[String]| {
        filters
            .iter()
            .all(|f| names.iter().any(|n| erc8004::matches_filter(f, n)))
    };
    if !all_match(&args.skills, &skills) || !all_match(&args.domains, &domains) {
        return None;
    }
    let endpoints = web_endpoints(agent);
    Some(Found {
        chain_id: agent["chain_id"].as_u64()?,
        agent_id: agent["agent_id"].as_u64()?,
        name: agent["name"].as_str().unwrap_or_default().to_string(),
        owner: agent["owner_address"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        x402: agent["x402_supported"].as_bool().unwrap_or(false),
        skills,
        domains,
        endpoints,
        prices: Vec::new(),
    })
}

/// The endpoints of an indexer record's `web` services, where its offers are sold.
pub(crate) fn web_endpoints(agent: &Value) -> Vec<String> {
    agent["services"]
        .as_array()
        .map(|services| {
            services
                .iter()
                .filter(|s| {
                    s["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("web"))
                })
                .filter_map(|s| s["endpoint"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The endpoint's live 402 terms.
async fn probe(client: &reqwest::Client, endpoint: &str) -> Price {
    let mut price = Price {
        endpoint: endpoint.to_string(),
        status: 0,
        price: None,
        amount: None,
        network: None,
        pay_to: None,
        error: None,
    };
    let answer = match buyer::probe::Unpaid::fetch(client, endpoint).await {
        Ok(a) => a,
        Err(e) => {
            price.error = Some(format!("unreachable: {e}"));
            return price;
        }
    };
    price.status = answer.status;
    match answer.required().and_then(|r| r.accepts.into_iter().next()) {
        Some(first) if price.status == 402 => {
            price.price = Some(gateway::challenge::describe_price(&first));
            price.amount = Some(first.amount.to_string());
            price.network = Some(first.network.caip2());
            price.pay_to = Some(first.pay_to.to_string());
        }
        _ if price.status == 402 => {
            price.error = Some("402 without readable x402 requirements".into())
        }
        _ => price.error = Some(format!("HTTP {}: not payment-gated", price.status)),
    }
    price
}

fn print(found: &[Found], args: &DiscoverArgs) -> anyhow::Result<()> {
    if args.json {
        outln!("{}", serde_json::to_string(found)?)?;
        return Ok(());
    }
    if found.is_empty() {
        outln!("No agents match.")?;
        return Ok(());
    }
    outln!(
        "{:<14} {:<24} {:<12} {:<5} {:<44} ENDPOINT",
        "AGENT",
        "NAME",
        "OWNER",
        "X402",
        "SKILLS"
    )?;
    for a in found {
        let owner: String = a.owner.chars().take(10).collect();
        let skills = a.skills.join(",");
        let skills: String = skills.chars().take(44).collect();
        let name: String = a.name.chars().take(24).collect();
        outln!(
            "{:<14} {:<24} {:<12} {:<5} {:<44} {}",
            format!("{}:{}", a.chain_id, a.agent_id),
            name,
            owner,
            if a.x402 { "yes" } else { "no" },
            skills,
            a.endpoints.first().map_or("-", String::as_str)
        )?;
        for p in &a.prices {
            match (&p.price, &p.error) {
                (Some(price), _) => outln!(
                    "    {} -> {price} (pay to {})",
                    p.endpoint,
                    p.pay_to.as_deref().unwrap_or("?")
                ),
                (None, Some(e)) => outln!("    {} -> {e}", p.endpoint),
                _ => Ok(()),
            }?;
        }
    }
    Ok(())
}
