//! The coordinator's own record of experiments it paid for ($AGORA_HOME/research.db):
//! which worker ran which `train.py` (by hash), what it reported, and the transaction
//! that paid for it. The leaderboard marks a worker "verified here" from these rows.

use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    experiment_id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    chain_id INTEGER,
    agent_id TEXT,
    train_hash TEXT NOT NULL,
    worker_train_hash TEXT,
    status TEXT NOT NULL,
    val_bpb REAL,
    amount_atomic TEXT NOT NULL,
    tx TEXT,
    result TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_agent ON experiments (chain_id, agent_id);
";

/// The results database's file name in agora's home (`$AGORA_HOME/research.db`).
pub const FILE: &str = "research.db";

/// Why the results database failed.
#[derive(Debug, thiserror::Error)]
#[error("the research results database: {0}; check that $AGORA_HOME is writable")]
pub struct StoreError(#[from] rusqlite::Error);

/// One paid experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    /// The id this coordinator chose and sent to the worker.
    pub experiment_id: String,
    /// The worker's endpoint (the offer URL).
    pub endpoint: String,
    /// The worker's chain, when it was found on the registry.
    pub chain_id: Option<u64>,
    /// The worker's ERC-8004 agent id (a decimal string; 0 is valid).
    pub agent_id: Option<String>,
    /// `sha256:<hex>` of the exact bytes sent.
    pub train_hash: String,
    /// The hash the worker reported for what it ran.
    pub worker_train_hash: Option<String>,
    /// `completed`, `failed` or `timeout`, as the worker reported.
    pub status: String,
    /// The metric, when the run produced one.
    pub val_bpb: Option<f64>,
    /// What was paid, in atomic units.
    pub amount_atomic: String,
    /// The settlement transaction.
    pub tx: Option<String>,
    /// The worker's whole answer, verbatim.
    pub result: serde_json::Value,
    /// Unix seconds.
    pub created_at: u64,
}

impl Experiment {
    /// Whether the worker ran exactly the bytes sent: its reported hash matches.
    pub fn hash_matches(&self) -> bool {
        self.worker_train_hash.as_deref() == Some(self.train_hash.as_str())
    }
}

/// The results database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: localdb::open(path, SCHEMA)?,
        })
    }

    /// Records one experiment (its id is unique: a second record of it is refused).
    pub fn record(&self, e: &Experiment) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO experiments (experiment_id, endpoint, chain_id, agent_id, train_hash,
                worker_train_hash, status, val_bpb, amount_atomic, tx, result, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                e.experiment_id,
                e.endpoint,
                e.chain_id.and_then(|c| i64::try_from(c).ok()),
                e.agent_id,
                e.train_hash,
                e.worker_train_hash,
                e.status,
                e.val_bpb,
                e.amount_atomic,
                e.tx,
                e.result.to_string(),
                i64::try_from(e.created_at).unwrap_or(i64::MAX),
            ],
        )?;
        Ok(())
    }

    /// Every experiment, oldest first.
    pub fn all(&self) -> Result<Vec<Experiment>, StoreError> {
        self.select("", [])
    }

    /// One experiment by its id.
    pub fn get(&self, experiment_id: &str) -> Result<Option<Experiment>, StoreError> {
        Ok(self
            .select("WHERE experiment_id = ?1", [experiment_id])?
            .pop())
    }

    fn select<P: rusqlite::Params>(
        &self,
        filter: &str,
        args: P,
    ) -> Result<Vec<Experiment>, StoreError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT experiment_id, endpoint, chain_id, agent_id, train_hash, worker_train_hash,
                status, val_bpb, amount_atomic, tx, result, created_at
             FROM experiments {filter} ORDER BY id"
        ))?;
        let rows = statement.query_map(args, |row| {
            let result: String = row.get(10)?;
            Ok(Experiment {
                experiment_id: row.get(0)?,
                endpoint: row.get(1)?,
                chain_id: row
                    .get::<_, Option<i64>>(2)?
                    .and_then(|c| u64::try_from(c).ok()),
                agent_id: row.get(3)?,
                train_hash: row.get(4)?,
                worker_train_hash: row.get(5)?,
                status: row.get(6)?,
                val_bpb: row.get(7)?,
                amount_atomic: row.get(8)?,
                tx: row.get(9)?,
                result: serde_json::from_str(&result).unwrap_or(serde_json::Value::Null),
                created_at: u64::try_from(row.get::<_, i64>(11)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(id: &str, val_bpb: Option<f64>) -> Experiment {
        Experiment {
            experiment_id: id.into(),
            endpoint: "http://127.0.0.1:1/services/w".into(),
            chain_id: Some(84532),
            agent_id: Some("0".into()),
            train_hash: "sha256:ab".into(),
            worker_train_hash: Some("sha256:ab".into()),
            status: "completed".into(),
            val_bpb,
            amount_atomic: "41667".into(),
            tx: Some("0x01".into()),
            result: serde_json::json!({"val_bpb": val_bpb}),
            created_at: 7,
        }
    }

    #[test]
    fn experiments_round_trip_and_ids_are_unique() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("research.db")).expect("open");
        store
            .record(&experiment("exp-1", Some(0.99)))
            .expect("first");
        store.record(&experiment("exp-2", None)).expect("second");
        assert!(store.record(&experiment("exp-1", Some(0.5))).is_err());
        let all = store.all().expect("all");
        assert_eq!(
            all,
            vec![experiment("exp-1", Some(0.99)), experiment("exp-2", None)]
        );
        assert!(all[0].hash_matches());
        assert_eq!(
            store.get("exp-2").expect("get"),
            Some(experiment("exp-2", None))
        );
        assert_eq!(store.get("exp-3").expect("get"), None);
    }
}
