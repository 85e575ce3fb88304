//! `agora discover`: find sellers on the ERC-8004 registry by skill, domain and x402
//! support, through an indexer, or by scanning the registry over RPC when no indexer
//! answers; `--probe` asks each endpoint for its live 402 price. The lookup is
//! `market`'s; this module holds the flags, the order of the sources, the paid query
//! and the printing.

use std::time::Duration;

use alloy::primitives::Address;
use anyhow::{Context, bail};
use buyer::RequestSpec;
use clap::Args;
use market::{Agent, AgentRecord, Answer, Asked, IndexerClient, MarketError, Page, Search};
use serde::Serialize;

use crate::cmd::index::DEFAULT_INDEXER;
use crate::env;
use crate::output::{Items, outln};

/// Options of `agora discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Indexer to ask [default: a local `agora index` on 127.0.0.1:3400].
    #[arg(long, env = env::INDEXER, value_name = "URL")]
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
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

impl DiscoverArgs {
    /// The registry search these flags ask for.
    fn query(&self) -> DiscoverQuery {
        DiscoverQuery {
            indexer: self.indexer.clone(),
            rpc: self.rpc.clone(),
            registry: self.registry,
            search: Search {
                skills: self.skills.clone(),
                domains: self.domains.clone(),
                x402: self.x402,
                text: self.search.clone(),
                owner: self.owner,
                limit: self.limit,
            },
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
    /// What to look for.
    pub(crate) search: Search,
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
            search: Search::x402(limit),
            max: None,
            quiet: false,
        }
    }
}

/// One agent as `discover` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    #[serde(flatten)]
    agent: Agent,
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

/// The client for sellers' public endpoints (`--probe`, the pricing survey): the
/// environment's proxy applies, as when `agora pay` calls them (they used to ask with
/// no proxy, review §2 row 8).
pub(crate) fn http() -> anyhow::Result<reqwest::Client> {
    with_timeout(x402::http::public())
}

/// The client for the indexer's free answers: no proxy, as always, since the default
/// indexer is this machine's (`agora index`).
fn indexer_http() -> anyhow::Result<reqwest::Client> {
    with_timeout(x402::http::direct())
}

fn with_timeout(builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::Client> {
    builder
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")
}

/// Runs one discovery.
pub async fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    let client = http()?;
    let query = args.query();
    let records = agents(&query).await?;
    let mut found: Vec<Found> = market::agents(&records, &query.search)
        .into_iter()
        .map(|agent| Found {
            agent,
            prices: Vec::new(),
        })
        .collect();
    if args.probe {
        for found in &mut found {
            for endpoint in &found.agent.endpoints {
                found.prices.push(probe(&client, endpoint).await);
            }
        }
    }
    print(&found, &args)
}

/// The indexer's records of the agents `query` asks for (the indexer applies the
/// first skill and domain filter, [`Search::matches`] the rest): from the indexer,
/// bought through `agora pay` when it sells its answers, or from a scan over `--rpc`
/// when none answers. Records the indexer sends that do not read are warned about.
pub(crate) async fn agents(query: &DiscoverQuery) -> anyhow::Result<Vec<AgentRecord>> {
    query.search.check().map_err(explain)?;
    let base = match &query.indexer {
        Some(url) => url.clone(),
        None => DEFAULT_INDEXER.parse().context("the default indexer URL")?,
    };
    let indexer = IndexerClient::new(&base, indexer_http()?);
    if !indexer.answers().await {
        let Some(rpc) = query.rpc.as_ref().map(env::url_text) else {
            bail!(
                "no indexer answers at {}; start one with `agora index --rpc URL`, pass --indexer URL, or pass --rpc URL to scan the registry directly",
                indexer.base()
            );
        };
        if !query.quiet {
            eprintln!(
                "no indexer at {}; scanning the registry over {rpc} ...",
                indexer.base()
            );
        }
        return market::scan(&rpc, query.registry, &query.search)
            .await
            .map_err(explain);
    }
    let page = match indexer.agents(&query.search).await.map_err(explain)? {
        Answer::Page(page) => page,
        Answer::PaymentRequired(url) => paid_query(&url, query.max.as_deref()).await?,
    };
    for skipped in &page.unreadable {
        eprintln!(
            "warning: skipped the indexer's record of agent {}: {}",
            skipped.agent, skipped.error
        );
    }
    Ok(page.agents)
}

/// A lookup error with the flag that changes it, where there is one.
fn explain(error: MarketError) -> anyhow::Error {
    match error {
        MarketError::Filter { kind, source } => anyhow::anyhow!("--{kind}: {source}"),
        MarketError::Url { base, message } => {
            anyhow::anyhow!("--indexer {base} is not a URL: {message}")
        }
        MarketError::NoItems { url } => anyhow::anyhow!(
            "{url} answered without an `items` list; is --indexer an agora index (or a gateway route selling one)?"
        ),
        other => other.into(),
    }
}

/// An indexer sold through x402 (selling indexing): the query is bought as `agora pay`
/// buys ([`crate::cmd::pay::buy`]), so `--max`, the wallet's budgets, the ledger and the
/// refusals (exit 2, nothing signed) are exactly `agora pay`'s.
async fn paid_query(url: &reqwest::Url, max: Option<&str>) -> anyhow::Result<Page> {
    let paid = crate::cmd::pay::buy(&RequestSpec::get(url.clone()), max)
        .await
        .with_context(|| format!("the indexer at {url} asks payment"))?;
    IndexerClient::read_paid(url, &paid.body).map_err(explain)
}

/// The endpoint's live 402 terms, as `--probe` shows them.
async fn probe(client: &reqwest::Client, endpoint: &str) -> Price {
    let asked = market::asked(client, endpoint).await;
    let mut price = Price {
        endpoint: endpoint.to_string(),
        status: asked.status(),
        price: None,
        amount: None,
        network: None,
        pay_to: None,
        error: None,
    };
    match asked {
        Asked::Terms(first) => {
            price.price = Some(gateway::challenge::describe_price(&first));
            price.amount = Some(first.amount.to_string());
            price.network = Some(first.network.caip2());
            price.pay_to = Some(first.pay_to.to_string());
        }
        Asked::Unreadable => price.error = Some("402 without readable x402 requirements".into()),
        Asked::NotGated(status) => price.error = Some(format!("HTTP {status}: not payment-gated")),
        Asked::Unreachable(e) => price.error = Some(format!("unreachable: {e}")),
    }
    price
}

fn print(found: &[Found], args: &DiscoverArgs) -> anyhow::Result<()> {
    if args.json {
        outln!("{}", serde_json::to_string(&Items { items: found })?)?;
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
    for Found { agent: a, prices } in found {
        let owner: String = format!("{:#x}", a.owner).chars().take(10).collect();
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
        for p in prices {
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
