//! The pricing survey: what comparable sellers on the ERC-8004 registry charge, so a
//! seller (or the agent acting for one) can pick a price with evidence.
//!
//! Each `web` endpoint of the agents found is asked for its live 402 and read with
//! `x402::client::Challenge`, so a price here is what a buyer would really be asked.
//! Prices are normalized with the rules agora applies when selling (`x402::money`: a
//! per-MTok price is charged as 1000 tokens per request, a per-hour price as 5 minutes
//! per request), bucketed by model size for inference, and summarized as min, median
//! and max with a recommendation and its reasoning, phrased as the `agora sell`
//! command that would apply it. Nothing is ever applied: the seller confirms and types
//! that command.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::U256;
use erc8004::AgentRecord;
use serde::Serialize;
use x402::client::{Challenge, MAX_CHALLENGE_BODY_BYTES};
use x402::money::{APPROX_MINUTES_PER_REQUEST, Money, Price};
use x402::network::USDC_DECIMALS;

use crate::agent::web_endpoints;

/// What to compare against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The OASF skill the agents were looked up by, echoed in the report.
    pub skill: Option<String>,
    /// The model the seller would sell (e.g. `llama3.1:8b`): only offers of its size
    /// are summarized.
    pub model: Option<String>,
}

/// One comparable offer and its price in the three units agora sells in.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparable {
    /// `<chainId>:<agentId>`.
    pub agent: String,
    /// The agent's name.
    pub name: String,
    /// The endpoint probed.
    pub endpoint: String,
    /// `inference`, `http`, or the agent's own service type.
    pub kind: String,
    /// The sized model its texts name, if any.
    pub model: Option<String>,
    /// Billions of parameters, when the name or description says.
    pub params_b: Option<f64>,
    /// The bucket it is compared in.
    pub bucket: String,
    /// The network of the price, v1 name.
    pub network: String,
    /// The price.
    #[serde(flatten)]
    pub price: Normalized,
    /// The per-request price in USDC's atomic units, for the summary.
    #[serde(skip)]
    atomic: U256,
}

/// A per-request amount with its per-MTok and per-hour equivalents.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Normalized {
    /// USDC per request.
    pub per_request: String,
    /// The same in atomic units.
    pub per_request_atomic: String,
    /// USDC per million tokens, at 1000 tokens per request.
    pub per_mtok: String,
    /// USDC per hour, at 5 minutes per request.
    pub per_hour: String,
}

/// An endpoint that could not be compared, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The endpoint.
    pub endpoint: String,
    /// Why it was left out.
    pub reason: String,
}

/// The summary of one bucket.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Its name (`inference 4B-10B`, `http`, ...).
    pub bucket: String,
    /// Offers in it.
    pub count: usize,
    /// The cheapest.
    pub min: Normalized,
    /// The median.
    pub median: Normalized,
    /// The dearest.
    pub max: Normalized,
    /// What to charge.
    pub recommendation: Recommendation,
}

/// The price suggested for a bucket, the flag that would set it, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// The price.
    #[serde(flatten)]
    pub price: Normalized,
    /// The `agora sell` price flag that sets it.
    pub flag: String,
    /// Why, and the command that would apply it.
    pub reasoning: String,
}

/// What the survey found; `applied` is always false.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The skill surveyed.
    pub skill: Option<String>,
    /// The model compared.
    pub model: Option<String>,
    /// The bucket the model falls in, when given.
    pub target_bucket: Option<String>,
    /// The asset of every price.
    pub asset: &'static str,
    /// One summary per bucket.
    pub buckets: Vec<Bucket>,
    /// Why there is no recommendation, when no bucket has a comparable offer.
    pub note: Option<String>,
    /// Every offer compared.
    pub offers: Vec<Comparable>,
    /// Every endpoint left out.
    pub skipped: Vec<Skipped>,
    /// Always false: the survey changes nothing.
    pub applied: bool,
}

/// Probes every `web` endpoint of `agents` through `http`, normalizes the prices
/// found and summarizes them per bucket.
pub async fn survey(http: &reqwest::Client, agents: &[AgentRecord], scope: &Scope) -> Report {
    let mut offers = Vec::new();
    let mut skipped = Vec::new();
    for agent in agents {
        for endpoint in web_endpoints(agent) {
            match compare(http, agent, &endpoint).await {
                Ok(c) => offers.push(c),
                Err(reason) => skipped.push(Skipped { endpoint, reason }),
            }
        }
    }
    let target_bucket = scope
        .model
        .as_deref()
        .map(|m| bucket_of("inference", params_b(m)));
    let mut by_bucket: BTreeMap<String, Vec<U256>> = BTreeMap::new();
    for offer in &offers {
        if target_bucket.as_ref().is_none_or(|t| *t == offer.bucket) {
            by_bucket
                .entry(offer.bucket.clone())
                .or_default()
                .push(offer.atomic);
        }
    }
    let buckets: Vec<Bucket> = by_bucket
        .into_iter()
        .map(|(bucket, prices)| summarize(bucket, prices, scope.model.as_deref()))
        .collect();
    let note = buckets.is_empty().then(|| match &target_bucket {
        Some(t) => format!(
            "no comparable offer in the {t} bucket among {} probed; choose a price yourself (agora sell inference --per-mtok USDC) or widen the search (drop --model or --skill)",
            offers.len()
        ),
        None => "no comparable offer answered with a 402 in USDC; choose a price yourself (agora sell http --per-request USDC), or point --indexer/--rpc at a registry with sellers".to_string(),
    });
    Report {
        skill: scope.skill.clone(),
        model: scope.model.clone(),
        target_bucket,
        asset: "USDC",
        buckets,
        note,
        offers,
        skipped,
        applied: false,
    }
}

/// Probes one endpoint's 402 and normalizes its USDC price.
async fn compare(
    client: &reqwest::Client,
    agent: &AgentRecord,
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
    let texts = [description, &agent.name, &agent.description];
    let (model, params) = texts
        .iter()
        .find_map(|t| model_in(t))
        .map_or((None, None), |(m, p)| (Some(m), Some(p)));
    let kind = match &agent.service_type {
        Some(kind) => kind.clone(),
        None if params.is_some() => "inference".to_string(),
        None => "http".to_string(),
    };
    let atomic = offer.requirement.amount;
    Ok(Comparable {
        agent: format!("{}:{}", agent.chain_id, agent.agent_id),
        name: agent.name.clone(),
        endpoint: endpoint.to_string(),
        bucket: bucket_of(&kind, params),
        kind,
        model,
        params_b: params,
        network: offer.requirement.network.v1_name(),
        price: normalize(atomic),
        atomic,
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
