//! The autoresearch worker: an HTTP server that runs one `train.py` experiment at a
//! time under a time budget. Its API matches the reference worker (obol-stack's
//! `worker_api.py`) path for path, field for field, with the same status codes and
//! error texts, so the reference coordinator and agora's can both buy from it; it adds
//! fields (`gpu`, `val_bpb_source`, budget and leaderboard stats) but removes none.
//!
//! Layout under `--data-dir`, also the reference's: `autoresearch-worker/best.json`,
//! `results.jsonl`, and `results/<id>/{work/, train.py, config.json, run.log,
//! result.json}`.

mod experiment;
pub mod extract;
mod gpu;
mod http;
mod id;
pub mod run;
pub mod sandbox;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

pub use gpu::detect_gpu;
pub use id::valid_id;
pub use run::Limits;
pub use sandbox::Sandbox;

/// The largest `train_py` accepted (1 MiB); a real one is tens of kilobytes.
pub const MAX_TRAIN_PY: usize = 1 << 20;

/// The largest request body read (4 MiB), so a huge body is refused before parsing.
pub const MAX_BODY: usize = 4 << 20;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The template repository copied for each experiment.
    pub repo: PathBuf,
    /// Where results, `best.json` and `results.jsonl` live.
    pub data_dir: PathBuf,
    /// The training command, already split into words.
    pub command: Vec<String>,
    /// The time budget and grace.
    pub limits: Limits,
    /// The GPU's name for results and status ([`detect_gpu`]), `None` without one.
    pub gpu: Option<String>,
    /// How buyers' code is confined ([`Sandbox::default`]: fully).
    pub sandbox: Sandbox,
}

/// A worker: its configuration and what it has run.
pub struct Worker {
    config: Config,
    sandbox: sandbox::Prepared,
    base_dir: PathBuf,
    results_dir: PathBuf,
    state: Mutex<Stats>,
    stopping: tokio::sync::watch::Sender<bool>,
}

/// What the worker knows about its runs.
#[derive(Default)]
struct Stats {
    current: Option<Value>,
    last: Option<Value>,
    best: Option<Value>,
    total: u64,
    total_seconds: f64,
}

/// Why an experiment did not produce a result.
#[derive(Debug)]
pub enum RunError {
    /// Another experiment is running (HTTP 409).
    Busy,
    /// The request cannot be run as given (HTTP 400).
    Invalid(String),
    /// The worker failed around the run, e.g. copying the repo (HTTP 500).
    Internal(String),
}

/// Why a worker does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// [`Config::repo`] is not a directory.
    #[error("the repository {} is not a directory", .0.display())]
    RepoNotADirectory(PathBuf),
    /// The sandbox cannot give its protections on this host.
    #[error("the worker does not start: {0}")]
    Sandbox(String),
    /// The results directory cannot be created under [`Config::data_dir`].
    #[error("cannot create {}: {error}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
}

impl Worker {
    /// Opens the worker's data directory, reading `best.json` and `results.jsonl` so
    /// a restarted worker keeps its best and its counts.
    pub fn open(config: Config) -> Result<Arc<Worker>, OpenError> {
        if !config.repo.is_dir() {
            return Err(OpenError::RepoNotADirectory(config.repo));
        }
        let sandbox = config
            .sandbox
            .prepare(&config.data_dir)
            .map_err(OpenError::Sandbox)?;
        let base_dir = config.data_dir.join("autoresearch-worker");
        let results_dir = base_dir.join("results");
        std::fs::create_dir_all(&results_dir).map_err(|error| OpenError::DataDir {
            path: results_dir.clone(),
            error,
        })?;
        let mut stats = Stats {
            best: std::fs::read(base_dir.join("best.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
            ..Stats::default()
        };
        if let Ok(history) = std::fs::read_to_string(base_dir.join("results.jsonl")) {
            for result in history.lines().filter_map(|l| serde_json::from_str(l).ok()) {
                stats.count(&result);
                stats.last = Some(result);
            }
        }
        Ok(Arc::new(Worker {
            config,
            sandbox,
            base_dir,
            results_dir,
            state: Mutex::new(stats),
            stopping: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// `GET /status` (free behind the gate): busy or idle and the aggregate
    /// leaderboard (the best `val_bpb` and its train hash, counts, when the last run
    /// ended). No run's id, config, result or artifact path: those go only to the
    /// payer, in the answer to its paid run.
    pub fn status(&self) -> Value {
        let stats = self.stats();
        json!({
            "status": if stats.current.is_some() { "busy" } else { "idle" },
            "best": stats.best.as_ref().map(|b| json!({
                "val_bpb": b.get("val_bpb"),
                "train_hash": b.get("train_hash"),
            })),
            "updated": stats.last.as_ref().and_then(|l| l.get("finishedAt")),
            "repo": self.config.repo.display().to_string(),
            "command": self.config.command,
            "timeoutSeconds": self.timeout_secs(),
            "budgetSeconds": self.config.limits.budget_secs,
            "graceSeconds": self.config.limits.grace_secs,
            "gpu": self.config.gpu,
            "sandbox": if self.sandbox.confined() { "on" } else { "off" },
            "total_experiments": stats.total,
            "avg_experiment_time": (stats.total > 0)
                .then(|| (stats.total_seconds / stats.total as f64 * 1000.0).round() / 1000.0),
        })
    }

    /// The best completed result (lowest `val_bpb`), if any.
    pub fn best(&self) -> Option<Value> {
        self.stats().best.clone()
    }

    /// Shuts the worker down: the running experiment's process group is killed (its
    /// result is saved as failed, with the reason) and no new run starts, so a stopped
    /// worker never leaves training processes holding the GPU.
    pub fn shut_down(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether an experiment is running.
    pub fn busy(&self) -> bool {
        self.stats().current.is_some()
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn timeout_secs(&self) -> u64 {
        let l = &self.config.limits;
        l.budget_secs.saturating_add(l.grace_secs)
    }
}

impl Stats {
    fn count(&mut self, result: &Value) {
        self.total += 1;
        self.total_seconds += result
            .get("durationSeconds")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
    }
}
