//! `agora sell pricing --research`: what comparable sellers on the ERC-8004 registry
//! charge, so a seller (or the agent acting for one) can pick a price with evidence.
//!
//! The agents come from `agora discover`'s own lookup (an indexer, or a scan over
//! RPC); each `web` endpoint is asked for its live 402 and read with
//! `x402::client::Challenge`, so a price here is what a buyer would really be asked.
//! Prices are normalized with the rules agora applies when selling (`x402::money`: a
//! per-MTok price is charged as 1000 tokens per request, a per-hour price as 5
//! minutes per request), bucketed by model size for inference, and summarized as min,
//! median and max with a recommendation and its reasoning. Nothing is ever applied:
//! the seller confirms and types the printed command.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::U256;
use clap::Args;
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;
use x402::client::{Challenge, MAX_CHALLENGE_BODY_BYTES};
use x402::money::{APPROX_MINUTES_PER_REQUEST, Money, Price};
use x402::network::USDC_DECIMALS;

use crate::config;
use crate::discover::{self, DiscoverQuery};
use crate::output::outln;

/// The research flags of `agora sell pricing`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ResearchArgs {
    /// Research what comparable offers on the ERC-8004 registry charge and recommend
    /// a price; nothing is applied.
    #[arg(long, conflicts_with_all = ["pay_to", "network"])]
    pub(crate) research: bool,
    /// With --research: only agents with this OASF skill (exact or `prefix/*`).
    #[arg(long, value_name = "SKILL", requires = "research")]
    pub(crate) skill: Option<String>,
    /// With --research: the model you would sell (e.g. llama3.1:8b); offers of its
    /// size are compared.
    #[arg(long, value_name = "MODEL", requires = "research")]
    pub(crate) model: Option<String>,
    /// With --research: the indexer to ask [default: a local `agora index`].
    #[arg(long, env = config::INDEXER, value_name = "URL")]
    pub(crate) indexer: Option<Url>,
    /// With --research: scan the registry over this RPC when no indexer answers.
    #[arg(long, value_name = "URL")]
    pub(crate) rpc: Option<Url>,
    /// With --research: most agents to compare.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
}

/// One comparable offer and its price in the three units agora sells in.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Comparable {
    agent: String,
    name: String,
    endpoint: String,
    kind: String,
    model: Option<String>,
    /// Billions of parameters, when the name or description says.
    params_b: Option<f64>,
    bucket: String,
    network: String,
    #[serde(flatten)]
    price: Normalized,
}

/// A per-request amount with its per-MTok and per-hour equivalents.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Normalized {
    per_request: String,
    per_request_atomic: String,
    per_mtok: String,
    per_hour: String,
}

/// An endpoint that could not be compared, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Skipped {
    endpoint: String,
    reason: String,
}

/// The summary of one bucket.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Bucket {
    bucket: String,
    count: usize,
    min: Normalized,
    median: Normalized,
    max: Normalized,
    recommendation: Recommendation,
}

/// The price suggested for a bucket, the flag that would set it, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Recommendation {
    #[serde(flatten)]
    price: Normalized,
    flag: String,
    reasoning: String,
}

/// What `--research` found; `applied` is always false.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    skill: Option<String>,
    model: Option<String>,
    /// The bucket `--model` falls in, when given.
    target_bucket: Option<String>,
    asset: &'static str,
    buckets: Vec<Bucket>,
    /// Why there is no recommendation, when no bucket has a comparable offer.
    note: Option<String>,
    offers: Vec<Comparable>,
    skipped: Vec<Skipped>,
    applied: bool,
}

/// Runs `agora sell pricing --research`.
pub(crate) async fn run(args: ResearchArgs, json_out: bool) -> anyhow::Result<()> {
    let report = research(&args).await?;
    if json_out {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        print(&report)?;
    }
    Ok(())
}

/// Finds, probes, normalizes and summarizes the comparable offers.
pub(crate) async fn research(args: &ResearchArgs) -> anyhow::Result<Report> {
    let agents = discover::agents(&discover_query(args)).await?;
    let client = discover::http()?;
    let mut offers = Vec::new();
    let mut skipped = Vec::new();
    for agent in &agents {
        for endpoint in discover::web_endpoints(agent) {
            match compare(&client, agent, &endpoint).await {
                Ok(c) => offers.push(c),
                Err(reason) => skipped.push(Skipped { endpoint, reason }),
            }
        }
    }
    let target_bucket = args
        .model
        .as_deref()
        .map(|m| bucket_of("inference", params_b(m)));
    let mut by_bucket: BTreeMap<String, Vec<U256>> = BTreeMap::new();
    for offer in &offers {
        if target_bucket.as_ref().is_none_or(|t| *t == offer.bucket) {
            let atomic = U256::from_str_radix(&offer.price.per_request_atomic, 10)?;
            by_bucket
                .entry(offer.bucket.clone())
                .or_default()
                .push(atomic);
        }
    }
    let buckets: Vec<Bucket> = by_bucket
        .into_iter()
        .map(|(bucket, prices)| summarize(bucket, prices, args.model.as_deref()))
        .collect();
    let note = buckets.is_empty().then(|| match &target_bucket {
        Some(t) => format!(
            "no comparable offer in the {t} bucket among {} probed; choose a price yourself (agora sell inference --per-mtok USDC) or widen the search (drop --model or --skill)",
            offers.len()
        ),
        None => "no comparable offer answered with a 402 in USDC; choose a price yourself (agora sell http --per-request USDC), or point --indexer/--rpc at a registry with sellers".to_string(),
    });
    Ok(Report {
        skill: args.skill.clone(),
        model: args.model.clone(),
        target_bucket,
        asset: "USDC",
        buckets,
        note,
        offers,
        skipped,
        applied: false,
    })
}

/// `agora discover`'s search for the research: x402 agents, the skill, the source.
fn discover_query(args: &ResearchArgs) -> DiscoverQuery {
    let mut query = DiscoverQuery::x402(args.limit, args.indexer.clone(), args.rpc.clone());
    query.skills.extend(args.skill.clone());
    query
}

/// Probes one endpoint's 402 and normalizes its USDC price.
async fn compare(
    client: &reqwest::Client,
    agent: &Value,
    endpoint: &str,
) -> Result<Comparable, String> {
    let response = client
        .get(endpoint)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    if status != 402 {
        return Err(format!("HTTP {status}: not payment-gated"));
    }
    let body = &body[..body.len().min(MAX_CHALLENGE_BODY_BYTES)];
    let challenge = Challenge::read(&headers, body).map_err(|e| format!("unreadable 402: {e}"))?;
    let offer = challenge
        .offers
        .iter()
        .find(|o| {
            o.requirement
                .network
                .known()
                .is_some_and(|k| k.usdc.address == o.requirement.asset)
        })
        .ok_or("no payment in a known chain's USDC to compare")?;
    let description = challenge
        .resource
        .as_ref()
        .and_then(|r| r["description"].as_str())
        .or(offer.requirement.description.as_deref())
        .unwrap_or_default();
    let name = agent["name"].as_str().unwrap_or_default();
    let texts = [
        description,
        name,
        agent["description"].as_str().unwrap_or_default(),
    ];
    let (model, params) = texts
        .iter()
        .find_map(|t| model_in(t))
        .map_or((None, None), |(m, p)| (Some(m), Some(p)));
    let kind = match agent["service_type"].as_str() {
        Some(kind) => kind.to_string(),
        None if params.is_some() => "inference".to_string(),
        None => "http".to_string(),
    };
    Ok(Comparable {
        agent: format!(
            "{}:{}",
            agent["chain_id"].as_u64().unwrap_or_default(),
            agent["agent_id"].as_u64().unwrap_or_default()
        ),
        name: name.to_string(),
        endpoint: endpoint.to_string(),
        bucket: bucket_of(&kind, params),
        kind,
        model,
        params_b: params,
        network: offer.requirement.network.v1_name(),
        price: normalize(offer.requirement.amount),
    })
}

/// The per-request amount (every comparable is in a known chain's USDC) in agora's
/// three units, by x402's exact inverses of what `agora sell --per-mtok` /
/// `--per-hour` charge: per MTok is 1000 requests' worth, per hour is 12 (5 minutes
/// each). An amount too large to convert shows as the largest there is.
fn normalize(per_request: U256) -> Normalized {
    let money = Money::from_atomic(per_request, USDC_DECIMALS);
    let text = |m: Option<Money>| {
        m.unwrap_or(Money::from_atomic(U256::MAX, USDC_DECIMALS))
            .to_string()
    };
    let per_hour = Price::per_hour_from_per_run(money, APPROX_MINUTES_PER_REQUEST * 60);
    Normalized {
        per_request: money.to_string(),
        per_request_atomic: per_request.to_string(),
        per_mtok: text(Price::per_mtok_from_per_request(money)),
        per_hour: text(per_hour),
    }
}

/// Min, median (the lower of the two middles' mean, in atomic units) and max of one
/// bucket, and the median as the recommendation.
fn summarize(bucket: String, mut prices: Vec<U256>, model: Option<&str>) -> Bucket {
    prices.sort();
    let count = prices.len();
    let mid = count / 2;
    let median = if count % 2 == 1 {
        prices[mid]
    } else {
        (prices[mid - 1] + prices[mid]) / U256::from(2)
    };
    let (min, max) = (prices[0], prices[count - 1]);
    let price = normalize(median);
    let inference = bucket.starts_with("inference");
    let flag = if inference {
        format!("--per-mtok {}", price.per_mtok)
    } else {
        format!("--per-request {}", price.per_request)
    };
    let command = match (inference, model) {
        (true, Some(m)) => format!("agora sell inference --model {m} {flag}"),
        (true, None) => format!("agora sell inference {flag}"),
        (false, _) => format!("agora sell http <name> --upstream <url> {flag}"),
    };
    let spread = format!(
        "{} to {} USDC/request",
        Money::from_atomic(min, USDC_DECIMALS),
        Money::from_atomic(max, USDC_DECIMALS)
    );
    let why = if count == 1 {
        format!(
            "only one comparable offer ({spread}); matching it is the one reference the market gives"
        )
    } else {
        format!(
            "the median of {count} comparable offers ({spread}): neither the cheapest nor the dearest, so buyers comparing prices still find you"
        )
    };
    Bucket {
        count,
        min: normalize(min),
        median: normalize(median),
        max: normalize(max),
        recommendation: Recommendation {
            reasoning: format!(
                "{why}; {} USDC/request charged per call. Nothing was applied: after the user confirms, run `{command}`",
                price.per_request
            ),
            price,
            flag,
        },
        bucket,
    }
}

/// The bucket of an offer: its model size for inference, else its service type.
fn bucket_of(kind: &str, params_b: Option<f64>) -> String {
    if kind != "inference" {
        return kind.to_string();
    }
    let Some(b) = params_b else {
        return "inference, size unknown".to_string();
    };
    let range = [
        (4.0, "up to 4B"),
        (10.0, "4B-10B"),
        (20.0, "10B-20B"),
        (40.0, "20B-40B"),
        (100.0, "40B-100B"),
    ]
    .iter()
    .find(|(upper, _)| b <= *upper)
    .map_or("over 100B", |(_, name)| name);
    format!("inference {range}")
}

/// The parameter count a model's name states: `8b`, `0.5B`, `135m`, `8x7b` (all
/// experts), as the token following a `:`, `-`, `_`, space or the start.
fn params_b(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter_map(size_token)
        .next()
}

/// `7b` → 7, `0.5b` → 0.5, `135m` → 0.135, `8x7b` → 56; anything else none.
fn size_token(token: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = token.strip_suffix('b') {
        (n, 1.0)
    } else if let Some(n) = token.strip_suffix('m') {
        (n, 0.001)
    } else {
        return None;
    };
    let (experts, each) = number.split_once('x').unwrap_or(("1", number));
    let experts: f64 = experts.parse().ok()?;
    let each: f64 = each.parse().ok().filter(|v: &f64| *v > 0.0)?;
    Some(experts * each * scale)
}

/// The first word of `text` that names a sized model, with its size.
fn model_in(text: &str) -> Option<(String, f64)> {
    text.split_whitespace().find_map(|word| {
        let word = word.trim_matches(|c: char| "()[],;\"'".contains(c));
        params_b(word).map(|p| (word.to_string(), p))
    })
}

fn print(report: &Report) -> anyhow::Result<()> {
    outln!(
        "{} comparable offers probed, {} skipped{}",
        report.offers.len(),
        report.skipped.len(),
        report
            .target_bucket
            .as_ref()
            .map(|t| format!("; comparing the {t} bucket"))
            .unwrap_or_default()
    )?;
    if !report.offers.is_empty() {
        outln!(
            "{:<10} {:<20} {:<24} {:<24} {:>12} {:>12} {:>12}",
            "AGENT",
            "NAME",
            "MODEL",
            "BUCKET",
            "USDC/REQ",
            "USDC/MTOK",
            "USDC/HOUR"
        )?;
    }
    for o in &report.offers {
        outln!(
            "{:<10} {:<20} {:<24} {:<24} {:>12} {:>12} {:>12}",
            o.agent,
            o.name.chars().take(20).collect::<String>(),
            o.model.as_deref().unwrap_or("-"),
            o.bucket,
            o.price.per_request,
            o.price.per_mtok,
            o.price.per_hour
        )?;
    }
    for s in &report.skipped {
        outln!("  skipped {}: {}", s.endpoint, s.reason)?;
    }
    for b in &report.buckets {
        outln!("{} ({} offers):", b.bucket, b.count)?;
        for (label, p) in [("min", &b.min), ("median", &b.median), ("max", &b.max)] {
            outln!(
                "  {label:<7} {} USDC/request = {} USDC/MTok = {} USDC/hour",
                p.per_request,
                p.per_mtok,
                p.per_hour
            )?;
        }
        outln!(
            "  recommend {}: {}",
            b.recommendation.flag,
            b.recommendation.reasoning
        )?;
    }
    if let Some(note) = &report.note {
        outln!("{note}")?;
    }
    outln!("No price was applied.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_sizes_are_read_from_names() {
        assert_eq!(params_b("llama3.1:8b"), Some(8.0));
        assert_eq!(params_b("qwen2.5:0.5B"), Some(0.5));
        assert_eq!(params_b("mixtral:8x7b"), Some(56.0));
        assert_eq!(params_b("smollm:135m"), Some(0.135));
        assert_eq!(params_b("llama3"), None);
        assert_eq!(params_b("web service"), None);
        assert_eq!(bucket_of("inference", Some(8.0)), "inference 4B-10B");
        assert_eq!(bucket_of("inference", Some(405.0)), "inference over 100B");
        assert_eq!(bucket_of("inference", None), "inference, size unknown");
        assert_eq!(bucket_of("http", Some(8.0)), "http");
    }

    #[test]
    fn prices_normalize_with_the_selling_rules_exactly() {
        let n = normalize(U256::from(2_000));
        assert_eq!(n.per_request, "0.002");
        assert_eq!(n.per_mtok, "2");
        assert_eq!(n.per_hour, "0.024");
        // The inverse of what `--per-mtok 2` charges per request.
        let charged = x402::money::Price::PerMTok(Money::parse("2", 6).expect("price"))
            .per_request()
            .expect("per request");
        assert_eq!(charged.atomic, U256::from(2_000));
        // A 402 may ask anything: what is too large to convert shows as the largest.
        let top = normalize(U256::MAX);
        assert_eq!(
            (top.per_mtok, top.per_hour),
            (top.per_request.clone(), top.per_request)
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middles() {
        let prices = [1_000u64, 3_000, 2_000, 4_000].map(U256::from).to_vec();
        let b = summarize("http".into(), prices, None);
        assert_eq!(b.median.per_request, "0.0025");
        assert_eq!(b.min.per_request, "0.001");
        assert_eq!(b.max.per_request, "0.004");
        assert_eq!(b.recommendation.flag, "--per-request 0.0025");
        assert!(
            b.recommendation.reasoning.contains("median of 4"),
            "{}",
            b.recommendation.reasoning
        );
    }
}
