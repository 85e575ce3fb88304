//! The coordinator's paid path: `submit`, one run bought through the library
//! coordinator with `agora pay`'s wallet and limits, and `loop`, which has the library
//! pick the cheapest idle worker each round and submits to it. Here are the request
//! body kept for `agora pay --resume`, the run's rendering, and the library's errors
//! with the flags, commands and exit codes `agora` reports them with.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use research::coordinator::store::Experiment;
use research::coordinator::{Order, PickError, SubmitError, Worker};
use serde_json::{Map, Value};
use wallet::home;

use super::{Coordinator, LoopFlags, RunFlags};
use crate::cmd::pay;
use crate::exit::{self, Code, Stop};
use crate::output::outln;

impl Coordinator {
    /// One paid run: `/status` (busy: stop, nothing signed, exit 2), then the body
    /// kept for a resend, then the purchase and the record.
    pub(super) async fn submit(
        &self,
        worker: Worker,
        train_py: &Path,
        flags: &RunFlags,
    ) -> anyhow::Result<Experiment> {
        let source = std::fs::read(train_py).with_context(|| {
            format!(
                "cannot read {}; give the path of a train.py",
                train_py.display()
            )
        })?;
        let order = Order::new(worker, &source).map_err(|_| {
            anyhow::anyhow!(
                "{} is not UTF-8 text; the worker API carries train.py as a JSON string",
                train_py.display()
            )
        })?;
        let order = order.with_config(config(flags.config.as_deref())?);
        self.lib
            .check_idle(&order.worker)
            .await
            .map_err(|e| match e {
                SubmitError::Busy { .. } => Stop::new(
                    Code::Refused,
                    "busy",
                    format!(
                        "{e}. Try again later, or pick another: agora research coordinator discover"
                    ),
                )
                .into(),
                other => anyhow::Error::new(other),
            })?;
        let experiment_id = &order.experiment_id;
        let endpoint = &order.worker.endpoint;
        // Kept, not temporary: when the answer is lost (exit 3), `agora pay --resume`
        // sends the same authorization with this same body.
        let home = home::agora_home()?;
        let dir = home.join("research-requests");
        home::create_private_dir(&dir)?;
        let body_file = dir.join(format!("{experiment_id}.json"));
        std::fs::write(&body_file, order.body())
            .with_context(|| format!("cannot write the request body to {}", body_file.display()))?;
        let answer_file = dir.join(format!("{experiment_id}.answer.json"));
        let url = order.url();
        if !self.json {
            eprintln!(
                "submitting {experiment_id} ({}) to {endpoint}",
                order.train_hash
            );
        }
        // A purchase that stopped: the resend hint when the answer was lost (exit 3),
        // else the body file goes, nothing having been delivered against it.
        let stopped = |e: anyhow::Error| {
            let what = format!("experiment {experiment_id} at {endpoint}");
            if exit::code(&e) == Code::Unknown {
                return e.context(format!(
                    "{what}; to get its answer: agora pay --resume {url} -X POST -d @{} -H 'Content-Type: application/json' -o {}",
                    body_file.display(),
                    answer_file.display()
                ));
            }
            let _ = std::fs::remove_file(&body_file);
            e.context(what)
        };
        let (buyer, limits) = pay::buyer(&url, flags.max.as_deref()).map_err(stopped)?;
        match self.lib.buy(&buyer, &limits, &order).await {
            Ok(experiment) => Ok(experiment),
            // Named as the buyer names it (the parsed URL), as `pay::buy` reports it.
            Err(SubmitError::Pay(e)) => {
                let parsed = reqwest::Url::parse(&url).map_or_else(|_| url.clone(), String::from);
                Err(stopped(pay::failure(e, &parsed)))
            }
            Err(SubmitError::Url { url, reason }) => Err(stopped(
                anyhow::anyhow!(reason)
                    .context(format!("{url:?} is not a URL; give the worker's offer URL")),
            )),
            Err(SubmitError::NoResult {
                endpoint,
                answer,
                charged,
            }) => bail!(
                "the worker at {endpoint} answered without a result: {answer}{}",
                if charged {
                    " (it was charged: see agora wallet spent)"
                } else {
                    " (no charge was recorded)"
                }
            ),
            Err(other) => Err(other.into()),
        }
    }

    pub(super) fn show_run(&self, e: &Experiment) -> anyhow::Result<()> {
        if self.json {
            return outln!("{}", serde_json::to_string(e)?);
        }
        outln!("experiment: {} ({})", e.experiment_id, e.status)?;
        outln!(
            "val_bpb:    {}",
            e.val_bpb.map_or("none".to_string(), |v| format!("{v:.6}"))
        )?;
        outln!(
            "train hash: {}{}",
            e.train_hash,
            if e.hash_matches() {
                " (the worker ran these bytes)"
            } else {
                " (the worker reported another hash!)"
            }
        )?;
        outln!(
            "worker:     {}{}",
            e.endpoint,
            e.agent_id
                .as_ref()
                .map(|a| format!(" (agent {a})"))
                .unwrap_or_default()
        )?;
        outln!(
            "paid:       {} atomic units, tx {}",
            e.amount_atomic,
            e.tx.as_deref().unwrap_or("unknown")
        )?;
        if let Some(note) = e.result["note"].as_str() {
            outln!("note:       {note}")?;
        }
        Ok(())
    }

    pub(super) async fn run_loop(&self, flags: &LoopFlags) -> anyhow::Result<()> {
        if flags.rounds == 0 {
            bail!("--rounds 0 buys nothing; pass --rounds 1 or more");
        }
        let wait = Duration::from_secs(flags.wait);
        for round in 1..=flags.rounds {
            let (worker, quote) = self
                .lib
                .next_worker(self, &flags.skills, flags.prefer.as_deref(), wait)
                .await
                .map_err(|e| match e {
                    PickError::Lookup(e) => e,
                    none @ PickError::NoneIdle { .. } => anyhow::anyhow!(
                        "{none}; raise --wait, or list them with: agora research coordinator discover"
                    ),
                })?;
            if !self.json {
                eprintln!(
                    "round {round}/{}: {} at {}",
                    flags.rounds, quote.per_run, worker.endpoint
                );
            }
            let done = self.submit(worker, &flags.train_py, &flags.run).await?;
            self.show_run(&done)?;
        }
        Ok(())
    }
}

/// `--config`'s JSON object (`{}` without it).
fn config(text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    let Some(c) = text else {
        return Ok(Map::new());
    };
    let value: Value = serde_json::from_str(c).with_context(|| {
        format!("--config {c:?} is not JSON; write e.g. --config '{{\"lr\": 0.01}}'")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => bail!("--config must be a JSON object, e.g. --config '{{\"lr\": 0.01}}'"),
    }
}
