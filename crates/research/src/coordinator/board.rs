//! The leaderboard: what workers claim in their registration (the on-chain
//! `metadata.best_val_bpb` keys, else the registration file's `metadata`), beside what
//! this coordinator saw itself in runs it paid for. A worker's row is "verified here"
//! when a paid run of ours returned a `val_bpb` and ran exactly the bytes we sent.

use std::collections::BTreeMap;

use erc8004::AgentRecord;
use serde::Serialize;

use super::store::Experiment;

/// The registration metadata keys of a worker's leaderboard entry.
pub const METADATA_KEYS: [&str; 7] = [
    "best_val_bpb",
    "total_experiments",
    "updated",
    "gpu",
    "framework",
    "best_experiment_hash",
    "avg_experiment_time",
];

/// The prefix obol gives registration metadata written on chain (`metadata.<key>`).
pub const ONCHAIN_PREFIX: &str = "metadata.";

/// One worker on the leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// EIP-155 chain id, when the worker is registered.
    pub chain_id: Option<u64>,
    /// ERC-8004 agent id, when registered.
    pub agent_id: Option<String>,
    /// The registration's name (or the endpoint for an unregistered worker).
    pub name: String,
    /// The worker's claim: its `best_val_bpb`.
    pub claimed_best: Option<f64>,
    /// Its claimed experiment count.
    pub claimed_experiments: Option<u64>,
    /// The leaderboard fields as published (on-chain values win).
    pub metadata: BTreeMap<String, String>,
    /// The best `val_bpb` of our own paid runs there.
    pub verified_best: Option<f64>,
    /// How many runs we paid there.
    pub runs_here: usize,
    /// A paid run here returned a value for exactly the bytes we sent.
    pub verified: bool,
    /// The experiment of our best run there.
    pub best_experiment: Option<String>,
}

impl Entry {
    /// What the row is ranked by: our own best when we have one, else the claim.
    pub fn rank_value(&self) -> Option<f64> {
        self.verified_best.or(self.claimed_best)
    }
}

/// A worker's published leaderboard fields: the registration file's `metadata`,
/// overridden by the on-chain `metadata.<key>` values (what the owner signed last).
pub fn published(agent: &AgentRecord) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(doc) = agent
        .registration
        .as_ref()
        .and_then(|r| r.get("metadata"))
        .and_then(|m| m.as_object())
    {
        for key in METADATA_KEYS {
            let text = match doc.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let Some(text) = text {
                out.insert(key.to_string(), text);
            }
        }
    }
    for key in METADATA_KEYS {
        if let Some(text) = agent
            .metadata
            .get(&format!("{ONCHAIN_PREFIX}{key}"))
            .and_then(|v| v.text.clone())
        {
            out.insert(key.to_string(), text);
        }
    }
    out
}

/// Ranks `agents` (the workers found) and `runs` (our paid experiments), lowest
/// `val_bpb` first; workers with no value at all come last. A run whose worker is
/// not among `agents` gets a row of its own, named by its endpoint.
pub fn build(agents: &[AgentRecord], runs: &[Experiment]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = agents
        .iter()
        .map(|agent| {
            let metadata = published(agent);
            let claimed_best = metadata.get("best_val_bpb").and_then(|v| v.parse().ok());
            let claimed_experiments = metadata
                .get("total_experiments")
                .and_then(|v| v.parse().ok());
            let id = agent.agent_id.to_string();
            let mine: Vec<&Experiment> = runs
                .iter()
                .filter(|r| {
                    r.chain_id == Some(agent.chain_id) && r.agent_id.as_deref() == Some(&id)
                })
                .collect();
            let mut entry = Entry {
                chain_id: Some(agent.chain_id),
                agent_id: Some(id),
                name: agent.name.clone(),
                claimed_best,
                claimed_experiments,
                metadata,
                verified_best: None,
                runs_here: 0,
                verified: false,
                best_experiment: None,
            };
            add_runs(&mut entry, &mine);
            entry
        })
        .collect();
    let mut unregistered: BTreeMap<&str, Vec<&Experiment>> = BTreeMap::new();
    for run in runs {
        let known = entries.iter().any(|e| {
            e.chain_id == run.chain_id && e.agent_id.is_some() && e.agent_id == run.agent_id
        });
        if !known {
            unregistered.entry(&run.endpoint).or_default().push(run);
        }
    }
    for (endpoint, mine) in unregistered {
        let mut entry = Entry {
            chain_id: mine[0].chain_id,
            agent_id: mine[0].agent_id.clone(),
            name: endpoint.to_string(),
            claimed_best: None,
            claimed_experiments: None,
            metadata: BTreeMap::new(),
            verified_best: None,
            runs_here: 0,
            verified: false,
            best_experiment: None,
        };
        add_runs(&mut entry, &mine);
        entries.push(entry);
    }
    entries.sort_by(|a, b| match (a.rank_value(), b.rank_value()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
    entries
}

fn add_runs(entry: &mut Entry, runs: &[&Experiment]) {
    entry.runs_here = runs.len();
    let best = runs
        .iter()
        .filter(|r| r.hash_matches())
        .filter_map(|r| r.val_bpb.map(|v| (v, r)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((value, run)) = best {
        entry.verified_best = Some(value);
        entry.verified = true;
        entry.best_experiment = Some(run.experiment_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erc8004::MetadataValue;

    fn agent(id: u64, doc_best: Option<&str>, chain_best: Option<&str>) -> AgentRecord {
        let mut metadata = BTreeMap::new();
        if let Some(v) = chain_best {
            metadata.insert(
                "metadata.best_val_bpb".to_string(),
                MetadataValue::new(v.as_bytes().to_vec().into()),
            );
        }
        let registration = doc_best.map(|v| {
            serde_json::json!({"metadata": {"best_val_bpb": v, "total_experiments": "3", "gpu": "H100"}})
        });
        serde_json::from_value(serde_json::json!({
            "id": format!("84532:0x00:{id}"),
            "chain_id": 84532,
            "agent_id": id,
            "agent_registry": "eip155:84532:0x0000000000000000000000000000000000000000",
            "owner_address": "0x0000000000000000000000000000000000000001",
            "uri": "",
            "name": format!("worker {id}"),
            "description": "",
            "image_url": null,
            "active": true,
            "x402_supported": true,
            "service_type": "http",
            "supported_protocols": [],
            "oasf_skills": [],
            "oasf_domains": [],
            "services": [],
            "metadata": metadata,
            "registration": registration,
            "fetch_status": "ok",
            "fetch_error": null,
            "fetched_at": null,
            "registered_block": 1,
            "registered_tx": format!("0x{}", "00".repeat(32)),
            "updated_block": 1
        }))
        .expect("an agent record")
    }

    fn run(
        agent: Option<&str>,
        endpoint: &str,
        val_bpb: Option<f64>,
        same_bytes: bool,
    ) -> Experiment {
        Experiment {
            experiment_id: format!("exp-{endpoint}-{val_bpb:?}"),
            endpoint: endpoint.into(),
            chain_id: agent.map(|_| 84532),
            agent_id: agent.map(str::to_string),
            train_hash: "sha256:aa".into(),
            worker_train_hash: Some(if same_bytes { "sha256:aa" } else { "sha256:bb" }.into()),
            status: "completed".into(),
            val_bpb,
            amount_atomic: "41667".into(),
            tx: Some("0x01".into()),
            result: serde_json::Value::Null,
            created_at: 1,
        }
    }

    #[test]
    fn on_chain_metadata_overrides_the_file_and_both_are_read() {
        let published = published(&agent(1, Some("0.99"), Some("0.95")));
        assert_eq!(published["best_val_bpb"], "0.95");
        assert_eq!(published["gpu"], "H100");
        assert_eq!(published["total_experiments"], "3");
    }

    #[test]
    fn verified_runs_rank_before_claims_and_a_mismatched_hash_verifies_nothing() {
        let agents = [
            agent(1, Some("0.90"), None),
            agent(2, Some("0.95"), None),
            agent(3, None, None),
        ];
        let runs = [
            run(Some("2"), "http://w2", Some(0.97), true),
            run(Some("2"), "http://w2", Some(0.96), true),
            run(Some("1"), "http://w1", Some(0.10), false),
            run(None, "http://stray", Some(0.99), true),
        ];
        let board = build(&agents, &runs);
        let names: Vec<&str> = board.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["worker 1", "worker 2", "http://stray", "worker 3"]);
        assert!(
            !board[0].verified,
            "the worker ran other bytes than we sent"
        );
        assert_eq!(board[0].runs_here, 1);
        assert_eq!(board[0].rank_value(), Some(0.90));
        assert!(board[1].verified);
        assert_eq!(board[1].verified_best, Some(0.96));
        assert_eq!(board[1].claimed_best, Some(0.95));
        assert_eq!(board[1].runs_here, 2);
        assert!(board[2].verified && board[2].agent_id.is_none());
        assert_eq!(board[3].rank_value(), None);
    }
}
