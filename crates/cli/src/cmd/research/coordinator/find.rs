//! How the coordinator finds and sizes up workers: the registry lookup (`agora
//! discover`'s, typed records from `market`, handed to the library coordinator as its
//! `Registry`), and the `discover` and `probe` subcommands that show each worker's
//! free `/status` and probed price. Apart from paying, which lives in `submit.rs`,
//! because nothing here signs anything.

use market::{AgentRecord, Page, Search};
use research::coordinator::workers::{self, Candidate, Quote, WorkerStatus};
use research::coordinator::{Registry, board};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Coordinator, with_causes};
use crate::cmd::discover;
use crate::output::{Items, outln};

/// One worker endpoint as `discover` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    chain_id: u64,
    agent_id: u64,
    name: String,
    endpoint: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    quote: Option<Quote>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    best_val_bpb: Option<String>,
}

/// The registry as `agora discover` asks it: the indexer (bought through `agora pay`'s
/// wallet when it sells its answers) or a scan over `--rpc`. Unreadable records are
/// warned about there.
impl Registry for Coordinator {
    type Error = anyhow::Error;

    async fn agents(&self, search: &Search) -> anyhow::Result<Page> {
        let mut query =
            discover::DiscoverQuery::x402(search.limit, self.indexer.clone(), self.rpc.clone());
        query.search = search.clone();
        query.quiet = self.json;
        Ok(Page {
            agents: discover::agents(&query).await?,
            unreadable: Vec::new(),
        })
    }
}

impl Coordinator {
    /// The registered agents matching `skills` that accept x402, as indexer records.
    pub(super) async fn agents(&self, skills: &[String]) -> anyhow::Result<Vec<AgentRecord>> {
        self.lib.agents(self, skills).await
    }

    /// The candidates, or none (with a warning) when no registry can be asked: a
    /// `submit` to a known URL does not need one.
    pub(super) async fn lookup(&self, skills: &[String]) -> Vec<Candidate> {
        match self.lib.candidates(self, skills).await {
            Ok(candidates) => candidates,
            Err(e) => {
                eprintln!(
                    "warning: the worker's registration cannot be looked up ({e:#}); its results are recorded without an agent id"
                );
                Vec::new()
            }
        }
    }

    pub(super) async fn discover(&self, skills: &[String]) -> anyhow::Result<()> {
        let agents = self.agents(skills).await?;
        let mut found = Vec::new();
        for candidate in workers::candidates(&agents, skills) {
            let best = agents
                .iter()
                .find(|a| a.chain_id == candidate.chain_id && a.agent_id == candidate.agent_id)
                .and_then(|a| board::published(a).remove("best_val_bpb"));
            for endpoint in &candidate.endpoints {
                let (state, quote, error) = match self.lib.size_up(endpoint).await {
                    Ok((status, quote)) => (state_of(&status), Some(quote), None),
                    Err(e) => ("unreachable".to_string(), None, Some(with_causes(&e))),
                };
                found.push(Found {
                    chain_id: candidate.chain_id,
                    agent_id: candidate.agent_id,
                    name: candidate.name.clone(),
                    endpoint: endpoint.clone(),
                    state,
                    quote,
                    error,
                    best_val_bpb: best.clone(),
                });
            }
        }
        if self.json {
            return outln!("{}", serde_json::to_string(&Items { items: &found })?);
        }
        if found.is_empty() {
            return outln!(
                "No workers found with skill {} and x402; sellers list one with: agora sell research NAME --repo DIR --per-hour 0.50",
                skills.join(", ")
            );
        }
        outln!(
            "{:<12} {:<20} {:<6} {:<30} {:<20} {:<10} ENDPOINT",
            "AGENT",
            "NAME",
            "STATE",
            "PER RUN",
            "PER HOUR",
            "BEST"
        )?;
        for f in &found {
            let name: String = f.name.chars().take(20).collect();
            let per_run = f.quote.as_ref().map_or("-".into(), |q| q.per_run.clone());
            let per_hour = f
                .quote
                .as_ref()
                .and_then(|q| q.per_hour.clone())
                .unwrap_or_else(|| "-".into());
            outln!(
                "{:<12} {:<20} {:<6} {:<30} {:<20} {:<10} {}",
                format!("{}:{}", f.chain_id, f.agent_id),
                name,
                f.state,
                per_run,
                per_hour,
                f.best_val_bpb.as_deref().unwrap_or("-"),
                f.endpoint
            )?;
            if let Some(e) = &f.error {
                outln!("    {e}")?;
            }
        }
        Ok(())
    }

    pub(super) async fn probe(&self, endpoint: &str) -> anyhow::Result<()> {
        let (status, quote) = self.lib.size_up(endpoint.trim_end_matches('/')).await?;
        if self.json {
            let mut out = serde_json::to_value(&quote)?;
            out["state"] = Value::String(state_of(&status));
            out["gpu"] = json!(status.gpu);
            return outln!("{out}");
        }
        outln!("worker:   {}", quote.endpoint)?;
        outln!("state:    {}", state_of(&status))?;
        if quote.free {
            return outln!("price:    free (the worker answered the probe without a 402)");
        }
        outln!(
            "per run:  {} ({} atomic units, x402 v{})",
            quote.per_run,
            quote.amount_atomic,
            quote.x402_version
        )?;
        match (&quote.per_hour, quote.budget_seconds) {
            (Some(hourly), Some(budget)) => {
                outln!("per hour: {hourly} (a run is a {budget} s budget)")?
            }
            _ => outln!("per hour: unknown (the worker's /status names no time budget)")?,
        }
        outln!("pay to:   {}", quote.pay_to)?;
        if let Some(gpu) = &status.gpu {
            outln!("gpu:      {gpu}")?;
        }
        Ok(())
    }
}

fn state_of(status: &WorkerStatus) -> String {
    if status.busy { "busy" } else { "idle" }.to_string()
}
