//! `agora sell pricing --research`: what comparable sellers on the ERC-8004 registry
//! charge, so a seller (or the agent acting for one) can pick a price with evidence.
//! The survey is `market::survey`'s: this module holds its flags, looks the sellers up
//! as `agora discover` does (an indexer, or a scan over RPC) and prints the report.
//! Nothing is ever applied: the seller confirms and types the printed command.

use clap::Args;
use market::survey::{self, Report, Scope};
use reqwest::Url;

use crate::cmd::discover::{self, DiscoverQuery};
use crate::env;
use crate::output::outln;

/// The survey flags of `agora sell pricing` (`--research` is the flag's name users
/// and skills know).
#[derive(Debug, Clone, Args)]
pub(crate) struct SurveyArgs {
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
    #[arg(long, env = env::INDEXER, value_name = "URL")]
    pub(crate) indexer: Option<Url>,
    /// With --research: scan the registry over this RPC when no indexer answers.
    #[arg(long, value_name = "URL")]
    pub(crate) rpc: Option<Url>,
    /// With --research: most agents to compare.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
}

/// Runs `agora sell pricing --research`.
pub(crate) async fn run(args: SurveyArgs, json_out: bool) -> anyhow::Result<()> {
    let mut query = DiscoverQuery::x402(args.limit, args.indexer.clone(), args.rpc.clone());
    query.search.skills.extend(args.skill.clone());
    let agents = discover::agents(&query).await?;
    let scope = Scope {
        skill: args.skill,
        model: args.model,
    };
    let report = survey::survey(&discover::http()?, &agents, &scope).await;
    if json_out {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        print(&report)?;
    }
    Ok(())
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
