//! `agora research worker`: serves the autoresearch worker API on this machine until
//! Ctrl-C, for a buyer to call directly or for `agora sell` to put behind the x402 gate.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use wallet::home;

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
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[arg(long, help = crate::output::JSON_HELP)]
    pub json: bool,
}

/// How buyers' code is confined (`research::worker::sandbox`); shared by `agora
/// research worker` and `agora sell research`, which keeps them in the offer.
#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SandboxArgs {
    /// Run buyers' code WITHOUT the sandbox (no bubblewrap): only a cleared
    /// environment and rlimits. The code can then read this user's files, keys
    /// included, and reach the network; for a machine that holds nothing else.
    #[arg(long)]
    pub insecure_sandbox: bool,
    /// Give runs this machine's network (internet and the seller's loopback services).
    #[arg(long)]
    pub allow_network: bool,
    /// Pass this environment variable to runs (repeatable); all others are cleared.
    #[arg(long, value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// The user runs become when agora runs as root [default: agora-run if it
    /// exists (scripts/setup creates it), else nobody].
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
    /// Address space per process of a run, e.g. 16G [default: 3/4 of the RAM; no
    /// limit where a GPU is present, since CUDA reserves more address space than RAM].
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Processes and threads a run may have.
    #[arg(long, value_name = "N", default_value_t = research::worker::sandbox::DEFAULT_PIDS)]
    #[serde(default = "default_pids")]
    pub pids: u64,
    /// The largest file, the /tmp size and the work directory's total of a run.
    #[arg(long, value_name = "SIZE", default_value = research::worker::sandbox::DEFAULT_DISK_TEXT)]
    #[serde(default = "default_disk")]
    pub disk: String,
    /// A directory runs see read-only, e.g. a dataset or a virtualenv (repeatable).
    #[arg(long, value_name = "DIR")]
    pub ro_path: Vec<PathBuf>,
}

impl Default for SandboxArgs {
    /// The full sandbox with the default limits, as the flags' defaults.
    fn default() -> Self {
        Self {
            insecure_sandbox: false,
            allow_network: false,
            pass_env: Vec::new(),
            run_as: None,
            memory: None,
            pids: default_pids(),
            disk: default_disk(),
            ro_path: Vec::new(),
        }
    }
}

fn default_pids() -> u64 {
    research::worker::sandbox::DEFAULT_PIDS
}

fn default_disk() -> String {
    research::worker::sandbox::DEFAULT_DISK_TEXT.into()
}

impl SandboxArgs {
    /// The worker's sandbox configuration; the engine is `$AGORA_BWRAP` when set
    /// (bubblewrap installed outside PATH), else `bwrap` on PATH.
    pub fn sandbox(&self) -> anyhow::Result<research::worker::Sandbox> {
        use research::worker::sandbox::parse_size;
        let memory = match &self.memory {
            Some(m) => Some(parse_size(m).map_err(|e| anyhow::anyhow!("--memory {e}"))?),
            None => None,
        };
        let disk = parse_size(&self.disk).map_err(|e| anyhow::anyhow!("--disk {e}"))?;
        let mut ro_paths = Vec::new();
        for path in &self.ro_path {
            ro_paths.push(
                std::fs::canonicalize(path)
                    .with_context(|| format!("--ro-path {}: no such directory", path.display()))?,
            );
        }
        Ok(research::worker::Sandbox {
            insecure: self.insecure_sandbox,
            engine: std::env::var_os("AGORA_BWRAP")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("bwrap")),
            allow_network: self.allow_network,
            pass_env: self.pass_env.clone(),
            run_as: self.run_as.clone(),
            memory,
            pids: self.pids,
            disk,
            ro_paths,
        })
    }

    /// The same settings as `agora research worker` flags, for the daemon's child.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.insecure_sandbox {
            flags.push("--insecure-sandbox".into());
        }
        if self.allow_network {
            flags.push("--allow-network".into());
        }
        for name in &self.pass_env {
            flags.extend(["--pass-env".into(), name.clone()]);
        }
        if let Some(user) = &self.run_as {
            flags.extend(["--run-as".into(), user.clone()]);
        }
        if let Some(memory) = &self.memory {
            flags.extend(["--memory".into(), memory.clone()]);
        }
        flags.extend(["--pids".into(), self.pids.to_string()]);
        flags.extend(["--disk".into(), self.disk.clone()]);
        for path in &self.ro_path {
            flags.extend(["--ro-path".into(), path.display().to_string()]);
        }
        flags
    }

    /// Warnings for the seller about what its flags open up, printed at start.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.insecure_sandbox {
            out.push("warning: --insecure-sandbox: buyers' train.py runs as this user with its files and network; a buyer can read $AGORA_HOME (keys, the admin socket) and every other experiment. Use it only on a machine that holds nothing else.");
        }
        if self.allow_network {
            out.push("warning: --allow-network: buyers' train.py can reach the internet (send out anything it computes) and this machine's network services, loopback included.");
        }
        out
    }
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
        sandbox: args.sandbox.sandbox()?,
    })?;
    for warning in args.sandbox.warnings() {
        eprintln!("{warning}");
    }
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
            "sandbox": !args.sandbox.insecure_sandbox,
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
