//! The coordinator's `leaderboard`: the workers' published claims beside the runs
//! verified here, as a table or JSON. Its own file because it only reads: no
//! worker is asked anything and nothing is paid.

use indexer::AgentRecord;
use research::coordinator::board::{self, Entry};
use research::coordinator::workers;

use super::{Coordinator, open_store};
use crate::output::{Items, outln};

impl Coordinator {
    pub(super) async fn leaderboard(&self, skills: &[String]) -> anyhow::Result<()> {
        let agents = match self.agents(skills).await {
            Ok(agents) => agents,
            Err(e) => {
                eprintln!(
                    "warning: no registry to read claims from ({e:#}); showing the runs verified here only"
                );
                Vec::new()
            }
        };
        let candidates = workers::candidates(&agents, skills);
        let workers: Vec<AgentRecord> = agents
            .into_iter()
            .filter(|a| {
                candidates
                    .iter()
                    .any(|c| c.chain_id == a.chain_id && c.agent_id == a.agent_id)
            })
            .collect();
        let entries = board::build(&workers, &open_store()?.all()?);
        if self.json {
            return outln!("{}", serde_json::to_string(&Items { items: &entries })?);
        }
        show_board(&entries)
    }
}

fn show_board(entries: &[Entry]) -> anyhow::Result<()> {
    if entries.is_empty() {
        return outln!(
            "No workers and no runs yet; buy one with: agora research coordinator submit ENDPOINT train.py --max 0.05"
        );
    }
    outln!(
        "{:<4} {:<14} {:<22} {:<10} {:<10} {:<6} {:<9} {:<10} GPU",
        "RANK",
        "AGENT",
        "NAME",
        "CLAIMED",
        "VERIFIED",
        "RUNS",
        "VERIFIED?",
        "EXPERIMENTS"
    )?;
    let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
    for (i, e) in entries.iter().enumerate() {
        let name: String = e.name.chars().take(22).collect();
        outln!(
            "{:<4} {:<14} {:<22} {:<10} {:<10} {:<6} {:<9} {:<10} {}",
            i + 1,
            match (e.chain_id, &e.agent_id) {
                (Some(c), Some(a)) => format!("{c}:{a}"),
                _ => "-".to_string(),
            },
            name,
            value(e.claimed_best),
            value(e.verified_best),
            e.runs_here,
            if e.verified { "yes" } else { "no" },
            e.claimed_experiments
                .map_or("-".to_string(), |n| n.to_string()),
            e.metadata.get("gpu").map_or("-", String::as_str)
        )?;
    }
    Ok(())
}
