//! `agora research coordinator`: the buyer of experiments, on `research::coordinator`'s
//! `Coordinator` (pick, the paid run, the record). Workers are found through `agora
//! discover`'s own lookup (an indexer, a paid one bought with the wallet, or a registry
//! scan over `--rpc`); a run is paid through the `buyer` library that `agora pay` runs
//! on (the default wallet, `--max`, the budgets, the ledger row written before the
//! payment is sent), never with a second payment path. What comes back goes into
//! `$AGORA_HOME/research.db` with the settling transaction, and the leaderboard puts
//! the workers' published claims beside the runs verified here. Here are the flags,
//! the request body kept for `agora pay --resume`, the tables and JSON, and the errors
//! with their flags and exit codes.
//!
//! A worker is asked `/status` (served free by the gate) before anything is signed,
//! and a busy one is not paid.

mod find;
mod leaderboard;
mod submit;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use research::coordinator::store::{self, Store};
use research::coordinator::workers::WORKER_SKILL;
use research::coordinator::{Note, Worker};
use wallet::home;

use crate::env;

/// `agora research coordinator ...`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    #[command(subcommand)]
    command: CoordinatorCommand,
    /// Indexer to find workers with [default: a local `agora index` on 127.0.0.1:3400].
    #[arg(long, global = true, env = env::INDEXER, value_name = "URL")]
    indexer: Option<reqwest::Url>,
    /// Scan the registry over this RPC when no indexer answers.
    #[arg(long, global = true, value_name = "URL")]
    rpc: Option<reqwest::Url>,
    #[arg(long, global = true, help = crate::output::JSON_HELP)]
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

/// Runs one coordinator subcommand.
pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let http = research::coordinator::http_client().context("cannot build an HTTP client")?;
    let mut lib = research::coordinator::Coordinator::new(http);
    if !args.json {
        lib = lib.on_note(show_note);
    }
    if matches!(
        args.command,
        CoordinatorCommand::Submit(_) | CoordinatorCommand::Loop(_)
    ) {
        lib = lib.record_in(home::agora_home()?.join(store::FILE));
    }
    let coordinator = Coordinator {
        indexer: args.indexer,
        rpc: args.rpc,
        json: args.json,
        lib,
    };
    match args.command {
        CoordinatorCommand::Discover(f) => coordinator.discover(&f.skills).await,
        CoordinatorCommand::Probe(f) => coordinator.probe(&f.endpoint).await,
        CoordinatorCommand::Submit(f) => {
            let candidates = coordinator.lookup(&[WORKER_SKILL.to_string()]).await;
            let worker = Worker::at(&f.endpoint, &candidates);
            let done = coordinator.submit(worker, &f.train_py, &f.run).await?;
            coordinator.show_run(&done)
        }
        CoordinatorCommand::Leaderboard(f) => coordinator.leaderboard(&f.skills).await,
        CoordinatorCommand::Loop(f) => coordinator.run_loop(&f).await,
    }
}

/// The flags every subcommand shares, and the library coordinator they configure.
struct Coordinator {
    indexer: Option<reqwest::Url>,
    rpc: Option<reqwest::Url>,
    json: bool,
    lib: research::coordinator::Coordinator,
}

/// A coordinator note on stderr (not under `--json`).
fn show_note(note: &Note<'_>) {
    match note {
        Note::Skipped { endpoint, error } => {
            eprintln!("skipping {endpoint}: {}", with_causes(*error))
        }
        Note::Unreadable(skipped) => eprintln!(
            "warning: skipped the indexer's record of agent {}: {}",
            skipped.agent, skipped.error
        ),
    }
}

/// `error` and its causes, `: `-joined, as `main` prints an error.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// The results database, `$AGORA_HOME/research.db` (agora's home created private when
/// it is missing), for the leaderboard to read.
fn open_store() -> anyhow::Result<Store> {
    let home = home::agora_home()?;
    home::create_private_dir(&home)?;
    Ok(Store::open(&home.join(store::FILE))?)
}
