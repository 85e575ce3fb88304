//! `agora research coordinator`: the buyer of experiments. Workers are found through
//! `agora discover`'s own lookup (an indexer, or a registry scan over `--rpc`),
//! filtered by OASF skill and x402 support; a run is paid through `agora pay`'s own
//! flow (the default wallet, `--max`, the budgets, the ledger row written before the
//! payment is sent), never with a second payment path. What comes back goes into
//! `$AGORA_HOME/research.db` with the settling transaction, and the leaderboard puts
//! the workers' published claims beside the runs verified here.
//!
//! A worker is asked `/status` (served free by the gate) before anything is signed,
//! and a busy one is not paid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use erc8004::oasf::{Kind, Taxonomy};
use indexer::AgentRecord;
use research::coordinator::board::{self, Entry};
use research::coordinator::store::{Experiment, Store};
use research::coordinator::workers::{self, Candidate, Quote, WORKER_SKILL, WorkerStatus};
use serde::Serialize;
use serde_json::{Value, json};
use x402::UnixTimestamp;

use crate::config;
use crate::discover;
use crate::output::outln;
use crate::pay::{self, Exit, PayArgs};
use crate::{home, wallet};

/// `agora research coordinator ...`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    #[command(subcommand)]
    command: CoordinatorCommand,
    /// Indexer to find workers with [default: a local `agora index` on 127.0.0.1:3400].
    #[arg(long, global = true, env = config::INDEXER, value_name = "URL")]
    indexer: Option<reqwest::Url>,
    /// Scan the registry over this RPC when no indexer answers.
    #[arg(long, global = true, value_name = "URL")]
    rpc: Option<reqwest::Url>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum CoordinatorCommand {
    /// List registered workers (OASF skill, x402) with their state and price per run.
    Discover(DiscoverFlags),
    /// Ask one worker its price: POST {probe:true} to ENDPOINT/experiment, read the 402.
    Probe(ProbeFlags),
    /// Run train.py on one worker, paid from the wallet within --max; a busy worker is
    /// not paid.
    Submit(SubmitFlags),
    /// Workers ranked by val_bpb: their published claims and the runs verified here.
    Leaderboard(DiscoverFlags),
    /// Submit train.py for --rounds rounds, each to the cheapest idle worker (or
    /// --prefer's while it is idle); train.py is read again every round.
    Loop(LoopFlags),
}

#[derive(Debug, Args)]
struct DiscoverFlags {
    /// OASF skill or domain a worker must list, exact or `prefix/*` (repeatable).
    #[arg(long = "skill", value_name = "SKILL", default_value = WORKER_SKILL)]
    skills: Vec<String>,
}

#[derive(Debug, Args)]
struct ProbeFlags {
    /// The worker's offer URL, e.g. http://host:8402/services/worker.
    endpoint: String,
}

#[derive(Debug, Args)]
struct RunFlags {
    /// Config object passed to train.py (AUTORESEARCH_CONFIG), e.g. '{"lr":0.01}'.
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// Most USDC one run may cost, e.g. 0.05 (the lower of this and the wallet's
    /// per-call budget applies, as for `agora pay`).
    #[arg(long, value_name = "USDC")]
    max: Option<String>,
}

#[derive(Debug, Args)]
struct SubmitFlags {
    /// The worker's offer URL.
    endpoint: String,
    /// The train.py to run (sent byte for byte; its sha256 is the train hash).
    train_py: PathBuf,
    #[command(flatten)]
    run: RunFlags,
}

#[derive(Debug, Args)]
struct LoopFlags {
    /// The train.py to run each round.
    train_py: PathBuf,
    /// How many experiments to buy.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Use this worker's URL whenever it is idle.
    #[arg(long, value_name = "URL")]
    prefer: Option<String>,
    /// How long a round waits for some worker to be idle, seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    wait: u64,
    /// OASF skill or domain a worker must list, exact or `prefix/*` (repeatable).
    #[arg(long = "skill", value_name = "SKILL", default_value = WORKER_SKILL)]
    skills: Vec<String>,
    #[command(flatten)]
    run: RunFlags,
}

/// How long a worker's `/status` and probe may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs one coordinator subcommand.
pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let coordinator = Coordinator {
        indexer: args.indexer,
        rpc: args.rpc,
        json: args.json,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(ASK_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?,
    };
    match args.command {
        CoordinatorCommand::Discover(f) => coordinator.discover(&f.skills).await,
        CoordinatorCommand::Probe(f) => coordinator.probe(&f.endpoint).await,
        CoordinatorCommand::Submit(f) => {
            let candidates = coordinator.lookup(&[WORKER_SKILL.to_string()]).await;
            let worker = Worker::at(&f.endpoint, &candidates);
            let done = coordinator.submit(&worker, &f.train_py, &f.run).await?;
            coordinator.show_run(&done)
        }
        CoordinatorCommand::Leaderboard(f) => coordinator.leaderboard(&f.skills).await,
        CoordinatorCommand::Loop(f) => coordinator.run_loop(&f).await,
    }
}

struct Coordinator {
    indexer: Option<reqwest::Url>,
    rpc: Option<reqwest::Url>,
    json: bool,
    http: reqwest::Client,
}

/// A worker to pay: its endpoint and, when it is registered, its agent.
#[derive(Debug, Clone)]
struct Worker {
    endpoint: String,
    agent: Option<(u64, u64)>,
}

impl Worker {
    /// The worker at `endpoint`, with its agent when a candidate lists that endpoint.
    fn at(endpoint: &str, candidates: &[Candidate]) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let agent = candidates
            .iter()
            .find(|c| c.endpoints.contains(&endpoint))
            .map(|c| (c.chain_id, c.agent_id));
        Self { endpoint, agent }
    }
}

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

fn now() -> u64 {
    UnixTimestamp::now().as_secs()
}

impl Coordinator {
    /// The registered agents matching `skills` that accept x402, as indexer records.
    async fn agents(&self, skills: &[String]) -> anyhow::Result<Vec<AgentRecord>> {
        let mut more = Vec::new();
        if self.json {
            more.push("--json".into());
        }
        // A filter is an OASF skill or a domain (workers list one of each); an unknown
        // name goes to --skill, whose error suggests the nearest ones.
        for name in skills {
            let domain = Taxonomy::filter(Kind::Skill, name).is_err()
                && Taxonomy::filter(Kind::Domain, name).is_ok();
            let flag = if domain { "--domain" } else { "--skill" };
            more.extend([flag.into(), name.clone()]);
        }
        let args = discover::x402_search(100, self.indexer.as_ref(), self.rpc.as_ref(), more)
            .context("--indexer, --rpc and --skill do not make a discovery")?;
        let values = discover::agents(&args).await?;
        Ok(values
            .into_iter()
            .filter_map(|v| serde_json::from_value::<AgentRecord>(v).ok())
            .collect())
    }

    /// The candidates, or none (with a warning) when no registry can be asked: a
    /// `submit` to a known URL does not need one.
    async fn lookup(&self, skills: &[String]) -> Vec<Candidate> {
        match self.agents(skills).await {
            Ok(agents) => workers::candidates(&agents, skills),
            Err(e) => {
                eprintln!(
                    "warning: the worker's registration cannot be looked up ({e:#}); its results are recorded without an agent id"
                );
                Vec::new()
            }
        }
    }

    async fn discover(&self, skills: &[String]) -> anyhow::Result<()> {
        let agents = self.agents(skills).await?;
        let mut found = Vec::new();
        for candidate in workers::candidates(&agents, skills) {
            let best = agents
                .iter()
                .find(|a| a.chain_id == candidate.chain_id && a.agent_id == candidate.agent_id)
                .and_then(|a| board::published(a).remove("best_val_bpb"));
            for endpoint in &candidate.endpoints {
                let (state, quote, error) = match self.size_up(endpoint).await {
                    Ok((status, quote)) => (state_of(&status), Some(quote), None),
                    Err(e) => ("unreachable".to_string(), None, Some(format!("{e:#}"))),
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
            return outln!("{}", serde_json::to_string(&found)?);
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

    /// A worker's state and price: `/status`, then the probe.
    async fn size_up(&self, endpoint: &str) -> anyhow::Result<(WorkerStatus, Quote)> {
        let status = workers::status(&self.http, endpoint).await?;
        let quote = workers::probe(&self.http, endpoint, status.budget_seconds).await?;
        Ok((status, quote))
    }

    async fn probe(&self, endpoint: &str) -> anyhow::Result<()> {
        let (status, quote) = self.size_up(endpoint.trim_end_matches('/')).await?;
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

    /// One paid run: `/status` (busy: stop, nothing signed), then `agora pay`'s flow,
    /// then the record. The result is stored even when the run failed: it was paid.
    async fn submit(
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
        crate::home::create_private_dir(&dir)?;
        let body_file = dir.join(format!("{experiment_id}.json"));
        std::fs::write(&body_file, serde_json::to_vec(&body)?)
            .with_context(|| format!("cannot write the request body to {}", body_file.display()))?;
        let answer_file = dir.join(format!("{experiment_id}.answer.json"));
        let url = format!("{}/experiment", worker.endpoint);
        let started = now();
        if !self.json {
            eprintln!(
                "submitting {experiment_id} ({train_hash}) to {}",
                worker.endpoint
            );
        }
        let paying = pay::run(PayArgs::post_json_to_file(
            &url,
            &body_file,
            flags.max.clone(),
            answer_file.clone(),
        ))
        .await;
        if let Err(e) = paying {
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
        let (amount, tx) = paid(&url, started)?;
        let raw = std::fs::read(&answer_file).unwrap_or_default();
        let result: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
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

    fn show_run(&self, e: &Experiment) -> anyhow::Result<()> {
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

    async fn leaderboard(&self, skills: &[String]) -> anyhow::Result<()> {
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
            return outln!("{}", serde_json::to_string(&entries)?);
        }
        show_board(&entries)
    }

    async fn run_loop(&self, flags: &LoopFlags) -> anyhow::Result<()> {
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

fn state_of(status: &WorkerStatus) -> String {
    if status.busy { "busy" } else { "idle" }.to_string()
}

/// The amount and transaction of the newest payment `agora pay` recorded for `url`
/// since `since`, from the wallet's ledger.
fn paid(url: &str, since: u64) -> anyhow::Result<(String, Option<String>)> {
    let home = home::agora_home()?;
    let ledger = wallet::open_store(&home)?;
    let entry = ledger
        .entries_since(since)?
        .into_iter()
        .rev()
        .find(|e| e.url == url);
    Ok(match entry {
        Some(e) => (e.amount.to_string(), e.tx),
        None => ("0".to_string(), None),
    })
}

fn open_store() -> anyhow::Result<Store> {
    let home = home::agora_home()?;
    crate::home::create_private_dir(&home)?;
    Ok(Store::open(&home.join("research.db"))?)
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
