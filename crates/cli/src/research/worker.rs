//! `agora research worker`: serves the autoresearch worker API on this machine until
//! Ctrl-C, for a buyer to call directly or for `agora sell` to put behind the x402 gate.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::home;
use crate::output::outln;

/// `agora research worker` flags.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The repository holding train.py; each experiment runs in a fresh copy of it
    /// (without .git, .venv, caches and results).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// The command run in the copy (split like a shell line, no shell).
    #[arg(long, value_name = "COMMAND", default_value = "python3 train.py")]
    pub train_command: String,
    /// Seconds of training the script may spend (passed as TIME_BUDGET).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub budget: u64,
    /// Extra seconds for startup and evaluation; at budget + grace the whole process
    /// group is killed and the run is saved as a timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub grace: u64,
    /// Address to serve on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where results, best.json and results.jsonl go [default: $AGORA_HOME/research].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the startup line as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Serves the worker until Ctrl-C or SIGTERM.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let command = research::worker::run::split_command(&args.train_command)
        .map_err(|e| anyhow::anyhow!("--train-command: {e}"))?;
    if args.budget == 0 {
        anyhow::bail!("--budget must be at least 1 second (upstream uses 300)");
    }
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            let home = home::agora_home()?;
            home::create_private_dir(&home)?;
            home.join("research")
        }
    };
    let repo = std::fs::canonicalize(&args.repo).with_context(|| {
        format!(
            "--repo {}: no such directory; point it at the checkout holding train.py",
            args.repo.display()
        )
    })?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create --data-dir {}", data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&data_dir)?;
    let gpu = research::worker::detect_gpu();
    let worker = research::worker::Worker::open(research::worker::Config {
        repo: repo.clone(),
        data_dir: data_dir.clone(),
        command,
        limits: research::worker::Limits {
            budget_secs: args.budget,
            grace_secs: args.grace,
        },
        gpu: gpu.clone(),
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? pass --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let bound = listener.local_addr()?;
    let shutdown = crate::signals::shutdown_signal()?;
    if args.json {
        let line = json!({
            "url": format!("http://{bound}"),
            "repo": repo,
            "dataDir": data_dir,
            "budgetSeconds": args.budget,
            "graceSeconds": args.grace,
            "gpu": gpu,
        });
        outln!("{line}")?;
    } else {
        outln!(
            "agora research worker on http://{bound}: repo {}, budget {}s + {}s grace, gpu {}, results in {}",
            repo.display(),
            args.budget,
            args.grace,
            gpu.as_deref().unwrap_or("none"),
            data_dir.display()
        )?;
    }
    let router = worker.router();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // A run in progress would hold the shutdown (and the GPU) until its end.
            worker.shut_down();
        })
        .await
        .context("serving the worker API")
}
