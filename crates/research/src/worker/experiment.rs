//! One experiment from request to saved result: the single-flight claim, the copied
//! repository and `train.py`, the sandboxed run under its budget, the result the
//! reference returns, and `best.json`/`results.jsonl` kept up to date. The worker's
//! state and its status live in `mod.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use x402::time::now_rfc3339;

use super::id::generate_id;
use super::{RunError, Worker, extract, run, sandbox};

impl Worker {
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

/// The worker's busy mark; dropping it (also when a run panics) frees the worker.
struct Slot(Arc<Worker>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats().current = None;
    }
}
