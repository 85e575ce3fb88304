//! `agora serve`: the seller daemon (store, reconciler, gateway, admin socket).
//!
//! Without `--foreground` it starts itself in the background with its log under
//! `$AGORA_HOME/logs/` and returns once the daemon answers; with `--foreground` it runs
//! until Ctrl-C or SIGTERM, as a service manager expects.
//!
//! `/metrics` is never on the buyers' listener: it counts settled calls and sums
//! settled amounts per route, which is the seller's revenue. `--metrics-listen ADDR`
//! (off by default) serves it on a second, operator-only listener, on loopback unless
//! told otherwise.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::Url;
use seller::{
    AdminClient, BuildError, Daemon, DaemonConfig, FacilitatorInfo, Info, StartError, socket_path,
};
use serde::Serialize;
use serde_json::json;
use wallet::home;
use x402::Facilitator;

use crate::cmd::facilitator::{load_signer, served_chains};
use crate::cmd::sell::AgoraWorker;
use crate::cmd::tunnel::SECRET_FLAGS;
use crate::env;
use crate::output::outln;

/// The public x402 facilitator used when none is configured.
pub const DEFAULT_FACILITATOR: &str = "https://x402.org/facilitator";

/// Where the gateway listens when neither `--listen` nor its variable says.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8402);
/// The storefront's seller name when `--title` is not given.
const DEFAULT_TITLE: &str = "agora seller";

/// Options of `agora serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Run in this process until Ctrl-C/SIGTERM (for systemd and other service managers).
    #[arg(long)]
    foreground: bool,
    /// Stop the running daemon (it finishes the paid calls in flight first) and exit.
    #[arg(long, conflicts_with = "foreground")]
    stop: bool,
    /// Gateway address buyers connect to (port 0 picks a free one).
    #[arg(
        long,
        env = env::LISTEN,
        value_name = "ADDR",
        default_value_t = DEFAULT_LISTEN
    )]
    listen: SocketAddr,
    /// Serve /metrics (per-route requests, revenue, latency) on this operator-only
    /// address, e.g. 127.0.0.1:9402 [default: not served]; it has no authentication,
    /// so keep it on loopback or a private network.
    #[arg(long, env = env::METRICS_LISTEN, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Public base URL of the gateway (e.g. a tunnel), used in 402s and the catalog.
    #[arg(long, value_name = "URL")]
    public_url: Option<Url>,
    /// x402 facilitator URL [default: the `agora sell pricing` setting, else https://x402.org/facilitator].
    #[arg(
        long,
        env = env::FACILITATOR_URL,
        value_name = "URL",
        conflicts_with = "rpcs"
    )]
    facilitator: Option<Url>,
    /// File (mode 0600) with the API key the --facilitator requires as
    /// `Authorization: Bearer` (`agora facilitator --api-key-file`).
    #[arg(long, value_name = "PATH", conflicts_with = "rpcs")]
    facilitator_api_key_file: Option<PathBuf>,
    /// Settle payments yourself on this chain's JSON-RPC (repeatable) with the key from
    /// --key-file or AGORA_FACILITATOR_KEY, instead of using a remote facilitator.
    #[arg(long = "rpc", value_name = "URL")]
    rpcs: Vec<Url>,
    /// Settlement key file (mode 0600) for --rpc.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    batch: crate::cmd::facilitator::BatchArgs,
    /// Key file (mode 0600) of the wallet that registers this seller on the ERC-8004
    /// Identity Registry [env: AGORA_REGISTRY_KEY]; without one the registration file is
    /// only published at /.well-known/agent-registration.json.
    #[arg(long, value_name = "PATH")]
    registry_key_file: Option<PathBuf>,
    /// JSON-RPC of the chain to register on [default: the first --rpc].
    #[arg(long, value_name = "URL")]
    registry_rpc: Option<Url>,
    /// Identity Registry address [default: the ERC-8004 deployment of that chain].
    #[arg(long, value_name = "ADDR")]
    registry: Option<Address>,
    /// Register the document itself as a data: URI instead of the gateway's URL.
    #[arg(long)]
    registry_inline: bool,
    /// Let ModelReady ask Ollama to pull a model an offer names but the server lacks.
    #[arg(long)]
    pull_models: bool,
    /// Seller name shown on the storefront.
    #[arg(long, default_value = DEFAULT_TITLE)]
    title: String,
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
    #[command(flatten)]
    tunnel: crate::cmd::tunnel::TunnelFlags,
    /// The words of this `agora serve` (its command line), which a background daemon
    /// is started with so that no flag is lost; none for `agora sell`'s start, whose
    /// daemon runs with the defaults and their variables.
    #[arg(skip)]
    given: Vec<OsString>,
}

impl ServeArgs {
    /// `agora serve` given no flags: each option at its default, or at the value of the
    /// variable that stands for its flag, as clap sets them. `agora sell` starts the
    /// daemon with these when none runs.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            foreground: false,
            stop: false,
            listen: env::flag_var(env::LISTEN)?.unwrap_or(DEFAULT_LISTEN),
            metrics_listen: env::flag_var(env::METRICS_LISTEN)?,
            public_url: None,
            facilitator: env::flag_var(env::FACILITATOR_URL)?,
            facilitator_api_key_file: None,
            rpcs: Vec::new(),
            key_file: None,
            batch: crate::cmd::facilitator::BatchArgs::default(),
            registry_key_file: None,
            registry_rpc: None,
            registry: None,
            registry_inline: false,
            pull_models: false,
            title: DEFAULT_TITLE.to_string(),
            json: false,
            tunnel: crate::cmd::tunnel::TunnelFlags::from_env()?,
            given: Vec::new(),
        })
    }
}

/// Starts the daemon in the foreground or the background.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.stop {
        stop(&home::agora_home()?, args.json).await
    } else if args.foreground {
        foreground(args).await
    } else {
        let home = home::agora_home()?;
        let args = ServeArgs {
            given: std::env::args_os().skip(1).collect(),
            ..args
        };
        let started = start_background(&home, &args).await?;
        if args.json {
            outln!("{}", serde_json::to_value(&started)?)?;
        } else {
            outln!(
                "agora daemon started in the background: gateway {}{}, log {}",
                started.info.gateway_url,
                started
                    .info
                    .metrics_url
                    .as_deref()
                    .map(|m| format!(", metrics {m}"))
                    .unwrap_or_default(),
                started.log.display()
            )?;
        }
        Ok(())
    }
}

/// `agora serve --stop`: SIGTERM to the pid the daemon reports, the same graceful path
/// as Ctrl-C, then waits until its admin socket stops answering.
async fn stop(home: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let socket = socket_path(home);
    let client = AdminClient::new(&socket);
    let info = match client.status().await {
        Ok(info) => info,
        Err(e) if e.status().is_some() => return Err(e.into()),
        Err(_) => {
            if json {
                outln!("{}", json!({ "stopped": false, "running": false }))?;
            } else {
                outln!("no agora daemon is running (socket {})", socket.display())?;
            }
            return Ok(());
        }
    };
    let pid = info
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
        .context(
            "the daemon did not report its pid; it is older than this agora, stop it with kill",
        )?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).with_context(|| {
        format!(
            "cannot signal the agora daemon (pid {})",
            pid.as_raw_nonzero()
        )
    })?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while client.is_up().await {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the agora daemon (pid {}) is still finishing after 60 s; see $AGORA_HOME/logs/serve.log",
                pid.as_raw_nonzero()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if json {
        outln!(
            "{}",
            json!({ "stopped": true, "pid": pid.as_raw_nonzero() })
        )?;
    } else {
        outln!("agora daemon stopped (pid {})", pid.as_raw_nonzero())?;
    }
    Ok(())
}

async fn foreground(args: ServeArgs) -> anyhow::Result<()> {
    let home = home::agora_home()?;
    home::create_private_dir(&home)?;
    let operator = match &args.metrics_listen {
        Some(addr) => Some(bind_metrics(*addr).await?),
        None => None,
    };
    let (facilitator, facilitator_info) = facilitator_for(&home, &args).await?;
    let label = facilitator_info.label();
    let shutdown = crate::signals::shutdown_signal()?;
    let config = DaemonConfig {
        home: home.clone(),
        listen: args.listen,
        public_url: args.public_url.as_ref().map(env::url_text),
        facilitator,
        facilitator_info,
        title: args.title.clone(),
        pull_models: args.pull_models,
        registry: registry_for(&args).await?,
        tunnel: args.tunnel.provider(args.public_url.is_some())?,
        workers: Some(Arc::new(AgoraWorker)),
    };
    let daemon = Daemon::start_with(config, operator)
        .await
        .map_err(start_error)?;
    let line = json!({
        "gatewayUrl": daemon.gateway_url,
        "publicUrl": daemon.public_url,
        "metricsUrl": daemon.metrics_url,
        "socket": daemon.socket,
        "facilitator": label,
        "pid": std::process::id(),
    });
    if args.json {
        outln!("{line}")?;
    } else {
        outln!(
            "agora daemon: gateway {} (public {}), admin socket {}, facilitator {}{}",
            daemon.gateway_url,
            daemon.public_url,
            daemon.socket.display(),
            label,
            daemon
                .metrics_url
                .as_deref()
                .map(|m| format!(", metrics {m}"))
                .unwrap_or_default()
        )?;
    }
    shutdown.await;
    eprintln!("agora daemon stopping: finishing paid calls in flight");
    daemon.shutdown().await;
    Ok(())
}

/// Binds the operator's metrics listener before anything else starts, so a taken port
/// fails at once; warns when the address is reachable from other machines.
async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for --metrics-listen (in use? pass --metrics-listen 127.0.0.1:0 for a free port)"
        )
    })?;
    if let Ok(bound) = listener.local_addr()
        && !bound.ip().is_loopback()
    {
        eprintln!(
            "warning: --metrics-listen {bound} is reachable from other machines and /metrics has no authentication; it shows revenue per route (use 127.0.0.1:9402 unless a firewall guards it)"
        );
    }
    Ok(listener)
}

/// The daemon's start failure, with the flag that frees a taken port.
fn start_error(e: StartError) -> anyhow::Error {
    match e {
        StartError::Listen { addr, source } => anyhow::Error::new(source).context(format!(
            "cannot listen on {addr} (in use? pass --listen 127.0.0.1:0 for a free port)"
        )),
        other => other.into(),
    }
}

/// The facilitator the daemon uses: embedded with `--rpc`, else remote.
async fn facilitator_for(
    home: &std::path::Path,
    args: &ServeArgs,
) -> anyhow::Result<(Arc<dyn Facilitator>, FacilitatorInfo)> {
    if !args.rpcs.is_empty() {
        let signer = load_signer(args.key_file.as_deref())?;
        let chains = served_chains(&args.rpcs, &[]).await?;
        return Ok(seller::embedded_facilitator(home, chains, signer, args.batch.config()).await?);
    }
    let stored = seller::stored_settings(home).and_then(|s| s.facilitator);
    let url = args
        .facilitator
        .as_ref()
        .map(env::url_text)
        .or(stored)
        .unwrap_or_else(|| DEFAULT_FACILITATOR.to_string());
    let remote = crate::cmd::facilitator::remote(&url, args.facilitator_api_key_file.as_deref())?;
    Ok((Arc::new(remote), FacilitatorInfo::Remote { url }))
}

/// The on-chain registrar, when a registry key is configured.
async fn registry_for(args: &ServeArgs) -> anyhow::Result<Option<offers::RegistryConfig>> {
    let from_env = env::var(env::REGISTRY_KEY).is_some();
    if args.registry_key_file.is_none() && !from_env {
        return Ok(None);
    }
    let signer = wallet::keyfile::load_key(args.registry_key_file.as_deref(), env::REGISTRY_KEY)?;
    let rpc = args
        .registry_rpc
        .as_ref()
        .or_else(|| args.rpcs.first())
        .context("registration needs a chain: pass --registry-rpc URL (or --rpc URL)")?;
    Ok(Some(
        registry_config(
            &env::url_text(rpc),
            signer,
            args.registry,
            args.registry_inline,
        )
        .await?,
    ))
}

/// Connects a registrar for `signer` to the Identity Registry on `rpc`'s chain
/// ([`seller::registry_config`]), naming the flag that gives a registry address.
pub async fn registry_config(
    rpc: &str,
    signer: alloy::signers::local::PrivateKeySigner,
    registry: Option<Address>,
    inline: bool,
) -> anyhow::Result<offers::RegistryConfig> {
    seller::registry_config(rpc, signer, registry, inline)
        .await
        .map_err(|e| match e {
            BuildError::UnknownRegistry { .. } => anyhow!("{e}; pass --registry ADDR"),
            other => other.into(),
        })
}

/// What `agora serve` prints when the daemon it started in the background answers:
/// the daemon's status, its log, and the pid of the process started.
#[derive(Debug, Serialize)]
pub struct Background {
    /// The daemon's `/v1/status`.
    #[serde(flatten)]
    pub info: Info,
    /// Its log file.
    pub log: PathBuf,
}

/// The command line of the background daemon: `given` (this `agora serve`'s words)
/// with `--foreground` after `serve`, `--json` for the log's startup line, and no
/// secret, which goes in its environment ([`SECRET_FLAGS`]); `serve --foreground
/// --json` alone when none were given.
fn background_argv(given: &[OsString]) -> Vec<OsString> {
    let serve = given.iter().position(|word| word == "serve");
    let (before, after) = match serve {
        Some(at) => given.split_at(at + 1),
        None => (&[][..], given),
    };
    let mut argv = before.to_vec();
    if serve.is_none() {
        argv.push("serve".into());
    }
    argv.push("--foreground".into());
    if !given.iter().any(|word| word == "--json") {
        argv.push("--json".into());
    }
    let mut words = after.iter();
    while let Some(word) = words.next() {
        let text = word.to_string_lossy();
        if SECRET_FLAGS.contains(&text.as_ref()) {
            words.next(); // its value
        } else if !SECRET_FLAGS
            .iter()
            .any(|flag| text.starts_with(&format!("{flag}=")))
        {
            argv.push(word.clone());
        }
    }
    argv
}

/// Spawns `agora serve --foreground` detached, with the flags it was given (see
/// [`background_argv`]), and waits until it answers.
pub async fn start_background(
    home: &std::path::Path,
    args: &ServeArgs,
) -> anyhow::Result<Background> {
    home::create_private_dir(home)?;
    let socket = socket_path(home);
    let client = AdminClient::new(&socket);
    if client.is_up().await {
        bail!(
            "an agora daemon is already running (socket {}); stop it first with: agora serve --stop",
            socket.display()
        );
    }
    let logs = home.join("logs");
    home::create_private_dir(&logs)?;
    let log_path = logs.join("serve.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let mut command = std::process::Command::new(exe);
    command.args(background_argv(&args.given));
    args.tunnel.pass_secrets_to(&mut command);
    command
        .env(env::HOME, home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("cannot start the agora daemon")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.status().await {
            Ok(mut info) => {
                info.pid = Some(child.id());
                return Ok(Background {
                    info,
                    log: log_path,
                });
            }
            Err(e) if e.status().is_some() => return Err(e.into()),
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the agora daemon exited at startup ({status}); see {}",
                log_path.display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the agora daemon did not answer within 20 s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::Parser;

    use super::{ServeArgs, background_argv};

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// `agora serve`'s options from the words after `serve`.
    fn parse(words: &[OsString]) -> ServeArgs {
        let argv = std::iter::once(OsString::from("agora")).chain(words.iter().cloned());
        Wrapper::try_parse_from(argv).unwrap().serve
    }

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// `agora sell` starts the daemon with what `agora serve` given no flags runs with,
    /// in this environment too.
    #[test]
    fn from_env_is_what_clap_parses_from_no_flags() {
        let parsed = Wrapper::try_parse_from(["agora"]).unwrap().serve;
        let built = ServeArgs::from_env().unwrap();
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
    }

    /// Every flag reaches the background daemon as given (a flag added to `ServeArgs`
    /// needs nothing here), but the secrets, which go in its environment.
    #[test]
    fn a_background_daemon_parses_the_flags_it_was_given_without_the_secrets() {
        let flags = [
            "--listen",
            "127.0.0.1:0",
            "--title",
            "serve",
            "--pull-models",
            "--rpc",
            "http://127.0.0.1:8545/",
            "--key-file",
            "k",
            "--batch-max",
            "3",
            "--registry-inline",
            "--tunnel",
            "bore",
            "--bore-server",
            "relay.example:7835",
        ];
        let secrets = ["--bore-secret", "0123456789abcdef", "--tunnel-token=tok"];
        let given = words(&[&["serve"][..], &secrets, &flags].concat());
        let argv = background_argv(&given);
        let wanted = [&["serve", "--foreground", "--json"][..], &flags].concat();
        assert_eq!(argv, words(&wanted));
        // The daemon runs with what this `agora serve` parsed, in the foreground.
        let mut parent = parse(&words(&flags));
        parent.foreground = true;
        parent.json = true;
        assert_eq!(format!("{:?}", parse(&argv[1..])), format!("{parent:?}"));

        // --json is not given twice.
        let given = words(&["serve", "--json", "--title", "x"]);
        assert_eq!(
            background_argv(&given),
            words(&["serve", "--foreground", "--json", "--title", "x"])
        );
        // `agora sell`'s start: the defaults.
        assert_eq!(
            background_argv(&[]),
            words(&["serve", "--foreground", "--json"])
        );
    }
}
