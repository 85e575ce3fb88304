//! The coordinator's paid path: one run bought through the `buyer` library, as
//! `agora pay` buys (`submit`), and `loop`, which picks the cheapest idle worker each
//! round and submits to it. Kept together because both end in the same paid, recorded
//! experiment.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use buyer::{Paid, RequestSpec};
use research::coordinator::store::Experiment;
use research::coordinator::workers::{self, Quote};
use serde_json::{Value, json};
use wallet::home;

use super::{Coordinator, LoopFlags, RunFlags, Worker, now, open_store};
use crate::output::outln;
use crate::pay::{self, Exit};

impl Coordinator {
    /// One paid run: `/status` (busy: stop, nothing signed), then the purchase,
    /// then the record. The result is stored even when the run failed: it was paid.
    pub(super) async fn submit(
        &self,
        worker: &Worker,
        train_py: &Path,
        flags: &RunFlags,
    ) -> anyhow::Result<Experiment> {
        let source = std::fs::read(train_py).with_context(|| {
            format!(
                "cannot read {}; give the path of a train.py",
                train_py.display()
            )
        })?;
        let text = String::from_utf8(source.clone()).map_err(|_| {
            anyhow::anyhow!(
                "{} is not UTF-8 text; the worker API carries train.py as a JSON string",
                train_py.display()
            )
        })?;
        let config = match &flags.config {
            Some(c) => {
                let value: Value = serde_json::from_str(c).with_context(|| {
                    format!("--config {c:?} is not JSON; write e.g. --config '{{\"lr\": 0.01}}'")
                })?;
                if !value.is_object() {
                    bail!("--config must be a JSON object, e.g. --config '{{\"lr\": 0.01}}'");
                }
                value
            }
            None => json!({}),
        };
        let status = workers::status(&self.http, &worker.endpoint).await?;
        if status.busy {
            return Err(Exit::refused(format!(
                "the worker at {} is busy with another experiment; nothing was signed or paid. Try again later, or pick another: agora research coordinator discover",
                worker.endpoint
            ))
            .into());
        }
        let experiment_id = research::coordinator::experiment_id(now());
        let train_hash = research::train_hash(&source);
        let body = json!({
            "train_py": text,
            "config": config,
            "experiment_id": experiment_id,
        });
        // Kept, not temporary: when the answer is lost (exit 3), `agora pay --resume`
        // sends the same authorization with this same body.
        let home = home::agora_home()?;
        let dir = home.join("research-requests");
        home::create_private_dir(&dir)?;
        let body_file = dir.join(format!("{experiment_id}.json"));
        std::fs::write(&body_file, serde_json::to_vec(&body)?)
            .with_context(|| format!("cannot write the request body to {}", body_file.display()))?;
        let answer_file = dir.join(format!("{experiment_id}.answer.json"));
        let url = format!("{}/experiment", worker.endpoint);
        if !self.json {
            eprintln!(
                "submitting {experiment_id} ({train_hash}) to {}",
                worker.endpoint
            );
        }
        let paid = match buy(&url, &body, flags.max.as_deref()).await {
            Ok(paid) => paid,
            Err(e) => {
                let what = format!("experiment {experiment_id} at {}", worker.endpoint);
                if pay::exit_code(&e) == 3 {
                    return Err(e.context(format!(
                        "{what}; to get its answer: agora pay --resume {url} -X POST -d @{} -H 'Content-Type: application/json' -o {}",
                        body_file.display(),
                        answer_file.display()
                    )));
                }
                let _ = std::fs::remove_file(&body_file);
                return Err(e.context(what));
            }
        };
        let (amount, tx) = paid.payment.as_ref().map_or(("0".to_string(), None), |p| {
            (
                p.price.money.atomic.to_string(),
                p.tx.map(|tx| tx.to_string()),
            )
        });
        let result: Value = serde_json::from_slice(&paid.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&paid.body).into_owned()));
        if result.get("experiment_id").is_none() {
            bail!(
                "the worker at {} answered without a result: {}{}",
                worker.endpoint,
                result,
                if tx.is_some() {
                    " (it was charged: see agora wallet spent)"
                } else {
                    " (no charge was recorded)"
                }
            );
        }
        let experiment = Experiment {
            experiment_id: result["experiment_id"]
                .as_str()
                .unwrap_or(&experiment_id)
                .to_string(),
            endpoint: worker.endpoint.clone(),
            chain_id: worker.agent.map(|a| a.0),
            agent_id: worker.agent.map(|a| a.1.to_string()),
            train_hash,
            worker_train_hash: result["train_hash"].as_str().map(str::to_string),
            status: result["status"].as_str().unwrap_or("unknown").to_string(),
            val_bpb: result["val_bpb"].as_f64(),
            amount_atomic: amount,
            tx,
            result,
            created_at: now(),
        };
        open_store()?.record(&experiment)?;
        Ok(experiment)
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
        let prefer = flags.prefer.as_deref().map(|p| p.trim_end_matches('/'));
        for round in 1..=flags.rounds {
            let (worker, quote) = self.pick(&flags.skills, prefer, flags.wait).await?;
            if !self.json {
                eprintln!(
                    "round {round}/{}: {} at {}",
                    flags.rounds, quote.per_run, worker.endpoint
                );
            }
            let done = self.submit(&worker, &flags.train_py, &flags.run).await?;
            self.show_run(&done)?;
        }
        Ok(())
    }

    /// The worker for the next round: `--prefer`'s when it is idle, else the idle one
    /// with the lowest price per run, waiting up to `wait` seconds for one to be idle.
    async fn pick(
        &self,
        skills: &[String],
        prefer: Option<&str>,
        wait: u64,
    ) -> anyhow::Result<(Worker, Quote)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            let candidates = workers::candidates(&self.agents(skills).await?, skills);
            let mut idle = Vec::new();
            let mut endpoints: Vec<String> = candidates
                .iter()
                .flat_map(|c| c.endpoints.clone())
                .collect();
            if let Some(p) = prefer
                && !endpoints.iter().any(|e| e == p)
            {
                endpoints.push(p.to_string());
            }
            for endpoint in &endpoints {
                match self.size_up(endpoint).await {
                    Ok((status, quote)) if !status.busy => idle.push(quote),
                    Ok(_) => {}
                    Err(e) if !self.json => eprintln!("skipping {endpoint}: {e:#}"),
                    Err(_) => {}
                }
            }
            let chosen = idle
                .iter()
                .find(|q| Some(q.endpoint.as_str()) == prefer)
                .or_else(|| idle.iter().min_by_key(|q| (q.amount(), q.endpoint.clone())));
            if let Some(quote) = chosen {
                return Ok((Worker::at(&quote.endpoint, &candidates), quote.clone()));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "no idle worker among {} found within {wait} s; raise --wait, or list them with: agora research coordinator discover",
                    endpoints.len()
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// `POST url` with the JSON `body`, bought as `agora pay` buys (see [`pay::buy`]).
async fn buy(url: &str, body: &Value, max: Option<&str>) -> anyhow::Result<Paid> {
    let target = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL; give the worker's offer URL"))?;
    pay::buy(&RequestSpec::post(target).json(body)?, max).await
}
