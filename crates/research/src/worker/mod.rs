//! The autoresearch worker: an HTTP server that runs one `train.py` experiment at a
//! time under a time budget. Its API matches the reference worker (obol-stack's
//! `worker_api.py`) path for path, field for field, with the same status codes and
//! error texts, so the reference coordinator and agora's can both buy from it; it adds
//! fields (`gpu`, `val_bpb_source`, budget and leaderboard stats) but removes none.
//!
//! Layout under `--data-dir`, also the reference's: `autoresearch-worker/best.json`,
//! `results.jsonl`, and `results/<id>/{work/, train.py, config.json, run.log,
//! result.json}`.

pub mod extract;
mod http;
pub mod run;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use x402::time::now_rfc3339;

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

    /// Runs one experiment to its end and returns its result (also saved), or
    /// [`RunError::Busy`] at once when another one is running.
    pub async fn run_experiment(
        self: &Arc<Self>,
        train_py: String,
        config: Map<String, Value>,
        experiment_id: Option<String>,
    ) -> Result<Value, RunError> {
        let id = experiment_id.unwrap_or_else(generate_id);
        let exp_dir = self.results_dir.join(&id);
        let slot = self.claim(&id, &exp_dir)?;
        // Its own task: a buyer that hangs up must not cancel the run half-way.
        let worker = self.clone();
        let run = tokio::spawn(async move {
            let result = worker.execute(&id, &exp_dir, &train_py, config).await;
            if let Ok(result) = &result {
                worker.record(&exp_dir, result)?;
            }
            drop(slot);
            result
        });
        run.await
            .map_err(|e| RunError::Internal(format!("the run stopped: {e}")))?
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn timeout_secs(&self) -> u64 {
        let l = &self.config.limits;
        l.budget_secs.saturating_add(l.grace_secs)
    }

    /// Marks the worker busy with `id` (single flight) until the slot is dropped.
    fn claim(self: &Arc<Self>, id: &str, exp_dir: &Path) -> Result<Slot, RunError> {
        let mut stats = self.stats();
        if stats.current.is_some() {
            return Err(RunError::Busy);
        }
        if *self.stopping.borrow() {
            return Err(RunError::Internal("the worker is shutting down".into()));
        }
        if exp_dir.exists() {
            return Err(RunError::Invalid(format!(
                "experiment {id} already exists: send a new experiment_id (or none, and one is made up)"
            )));
        }
        stats.current = Some(json!({"experiment_id": id, "startedAt": now_rfc3339()}));
        Ok(Slot(self.clone()))
    }

    async fn execute(
        &self,
        id: &str,
        exp_dir: &Path,
        train_py: &str,
        config: Map<String, Value>,
    ) -> Result<Value, RunError> {
        let started = Instant::now();
        let started_at = now_rfc3339();
        let workdir = exp_dir.join("work");
        let config_path = exp_dir.join("config.json");
        let config = Value::Object(config);
        let prepare = {
            let (repo, workdir, exp_dir, config_path) = (
                self.config.repo.clone(),
                workdir.clone(),
                exp_dir.to_path_buf(),
                config_path.clone(),
            );
            let exclude = self.config.data_dir.clone();
            let (train_py, config) = (train_py.to_owned(), config.clone());
            move || -> std::io::Result<()> {
                std::fs::create_dir_all(&exp_dir)?;
                run::copy_repo(&repo, &workdir, &exclude)?;
                std::fs::write(workdir.join("train.py"), &train_py)?;
                std::fs::write(exp_dir.join("train.py"), &train_py)?;
                std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)
            }
        };
        tokio::task::spawn_blocking(prepare)
            .await
            .map_err(|e| RunError::Internal(e.to_string()))?
            .map_err(|e| RunError::Internal(format!("preparing {}: {e}", exp_dir.display())))?;

        let log_path = exp_dir.join("run.log");
        let stderr_path = exp_dir.join("stderr.log");
        let limits = &self.config.limits;
        let env = vec![
            ("AUTORESEARCH_EXPERIMENT_ID".to_owned(), id.to_owned()),
            (
                "AUTORESEARCH_EXPERIMENT_DIR".to_owned(),
                exp_dir.display().to_string(),
            ),
            (
                "AUTORESEARCH_EXPERIMENT_CONFIG".to_owned(),
                config_path.display().to_string(),
            ),
            ("TIME_BUDGET".to_owned(), limits.budget_secs.to_string()),
        ];
        let wrapped = self.sandbox.wrap(
            &self.config.command,
            &sandbox::RunPaths {
                workdir: &workdir,
                read_only: &[&config_path],
            },
            env,
        );
        let header = self.sandbox.header();
        let setup = {
            let (workdir, log_path, header, owner) = (
                workdir.clone(),
                log_path.clone(),
                header.clone(),
                wrapped.owner,
            );
            move || -> std::io::Result<()> {
                use std::io::Write;
                run::create_fresh(&log_path)?.write_all(header.as_bytes())?;
                match owner {
                    Some((uid, gid)) => run::chown_tree(&workdir, uid, gid),
                    None => Ok(()),
                }
            }
        };
        tokio::task::spawn_blocking(setup)
            .await
            .map_err(|e| RunError::Internal(e.to_string()))?
            .map_err(|e| RunError::Internal(format!("preparing {}: {e}", workdir.display())))?;
        let outcome = run::run(
            wrapped,
            self.sandbox.confined(),
            (&workdir, self.sandbox.disk()),
            limits,
            (&log_path, &stderr_path),
            self.stopping.subscribe(),
        )
        .await;
        let read_output = |path: &Path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            bytes
                .strip_prefix(header.as_bytes())
                .map(<[u8]>::to_vec)
                .unwrap_or(bytes)
        };
        let stdout = read_output(&log_path);
        run::join_logs(&log_path, &stderr_path)
            .map_err(|e| RunError::Internal(format!("writing {}: {e}", log_path.display())))?;
        let log = read_output(&log_path);
        let found = extract::val_bpb(
            &String::from_utf8_lossy(&stdout),
            &String::from_utf8_lossy(&log),
            &workdir,
        );

        let (status, return_code, note) = match &outcome {
            run::Outcome::TimedOut => (
                "timeout",
                -1,
                Some(format!(
                    "experiment exceeded timeout of {}s ({}s budget + {}s grace); every process of the run was killed",
                    self.timeout_secs(),
                    limits.budget_secs,
                    limits.grace_secs
                )),
            ),
            run::Outcome::Stopped => (
                "failed",
                -1,
                Some("the worker shut down during the run; every process of the run was killed".to_owned()),
            ),
            run::Outcome::OverDisk(used) => (
                "failed",
                -1,
                Some(format!(
                    "the run wrote {used} bytes, over this worker's disk limit of {}; every process of the run was killed",
                    self.sandbox.disk()
                )),
            ),
            run::Outcome::SpawnFailed(e) => (
                "failed",
                -1,
                Some(format!(
                    "failed to execute command: {e}; check the worker's training command {:?}",
                    self.config.command.join(" ")
                )),
            ),
            run::Outcome::Exited(s) => match s.code() {
                Some(0) if found.is_none() => (
                    "failed",
                    0,
                    Some("the run printed no val_bpb: print a line `val_bpb: <number>` at the end (or a JSON object with val_bpb, or write results.tsv)".to_owned()),
                ),
                Some(0) => ("completed", 0, None),
                Some(code) => (
                    "failed",
                    code,
                    Some(format!("command exited with status {code}; see run.log")),
                ),
                None => (
                    "failed",
                    -1,
                    Some(format!("command was killed by a signal ({s}); see run.log")),
                ),
            },
        };
        let mut result = json!({
            "experiment_id": id,
            "status": status,
            "return_code": return_code,
            "val_bpb": found.map(|(v, _)| v),
            "val_bpb_source": found.map(|(_, s)| s.as_str()),
            "train_hash": crate::train_hash(train_py.as_bytes()),
            "artifact_path": run::newest_checkpoint(&workdir).map(|p| p.display().to_string()),
            "log_path": log_path.display().to_string(),
            "startedAt": started_at,
            "finishedAt": now_rfc3339(),
            "durationSeconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "config": config,
            "gpu": self.config.gpu,
            "budgetSeconds": limits.budget_secs,
        });
        if let (Some(note), Some(map)) = (note, result.as_object_mut()) {
            map.insert("note".into(), note.into());
        }
        Ok(result)
    }

    /// Saves `result.json`, appends to `results.jsonl`, and replaces `best.json` when
    /// a completed run beat it.
    fn record(&self, exp_dir: &Path, result: &Value) -> Result<(), RunError> {
        use std::io::Write;
        let io = |what: &Path, e: std::io::Error| {
            RunError::Internal(format!("writing {}: {e}", what.display()))
        };
        let pretty = serde_json::to_vec_pretty(result).unwrap_or_default();
        let path = exp_dir.join("result.json");
        run::create_fresh(&path)
            .and_then(|mut f| f.write_all(&pretty))
            .map_err(|e| io(&path, e))?;
        let history = self.base_dir.join("results.jsonl");
        let mut line = serde_json::to_vec(result).unwrap_or_default();
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&history)
            .and_then(|mut f| f.write_all(&line))
            .map_err(|e| io(&history, e))?;
        let mut stats = self.stats();
        stats.count(result);
        stats.last = Some(result.clone());
        let value = |r: &Value| r.get("val_bpb").and_then(Value::as_f64);
        let better = result.get("status").and_then(Value::as_str) == Some("completed")
            && value(result)
                .is_some_and(|v| stats.best.as_ref().and_then(value).is_none_or(|b| v < b));
        if better {
            let path = self.base_dir.join("best.json");
            std::fs::write(&path, &pretty).map_err(|e| io(&path, e))?;
            stats.best = Some(result.clone());
        }
        Ok(())
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

/// The worker's busy mark; dropping it (also when a run panics) frees the worker.
struct Slot(Arc<Worker>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats().current = None;
    }
}

/// Whether `id` is a valid experiment id: `^[A-Za-z0-9_-]+$`, so it can never name a
/// path outside the results directory.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The GPU's name from `nvidia-smi`, or `None` where there is none.
pub fn detect_gpu() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.lines().next()?.trim();
    (out.status.success() && !name.is_empty()).then(|| name.to_owned())
}

/// `exp-YYYYMMDD-<8 hex>`, the reference's form.
fn generate_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{}",
        now.as_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let hash = crate::train_hash(seed.as_bytes());
    let date: String = x402::time::format_rfc3339(now.as_secs())
        .chars()
        .take(10)
        .filter(|c| *c != '-')
        .collect();
    format!("exp-{date}-{}", &hash["sha256:".len()..][..8])
}
