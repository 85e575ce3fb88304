//! `agora tunnel status|start|stop|logs|relay` and the `agora serve --tunnel` flags.
//!
//! The tunnel itself lives in the daemon (`seller::tunnel_follower`); these commands read its state
//! (from the daemon, or from `tunnel.json` when the daemon is down), hold it up or
//! down, print its log, and run a bore-compatible relay for a public machine.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use seller::admin::{Control, TunnelView, state_name};
use seller::tunnel_follower::{log_path, state_path};
use seller::{AdminClient, AdminError, socket_path};
use serde_json::json;
use tunnel::bore::{BoreServer, Limits, Relay, RelayConfig, Secret};
use tunnel::{Provider, TunnelLog, cloudflared};
use wallet::home;

use crate::output::outln;

use crate::env::{BORE_SECRET as BORE_SECRET_ENV, BORE_SERVER as BORE_SERVER_ENV};
use crate::env::{TUNNEL as TUNNEL_ENV, TUNNEL_TOKEN as TUNNEL_TOKEN_ENV};

/// Which tunnel `agora serve` keeps up while something is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TunnelChoice {
    /// No tunnel: buyers reach the gateway at its own address or --public-url.
    None,
    /// bore when --bore-server is set, else cloudflared when installed, else none.
    Auto,
    /// cloudflared: a quick tunnel, or a named one with --tunnel-token.
    Cloudflared,
    /// A bore relay (--bore-server), e.g. one run with `agora tunnel relay`.
    Bore,
}

/// The tunnel flags of `agora serve`.
#[derive(Debug, Clone, Args)]
pub struct TunnelFlags {
    /// Keep a public URL pointing at the gateway while an offer is Ready [default:
    /// none, so nothing is exposed to the internet unless asked]. --public-url wins.
    #[arg(long, env = TUNNEL_ENV, value_enum, default_value = "none")]
    tunnel: TunnelChoice,
    /// The bore relay, HOST[:PORT] (port 7835 by default).
    #[arg(long, env = BORE_SERVER_ENV, value_name = "HOST[:PORT]")]
    bore_server: Option<String>,
    /// The bore relay's secret, at least 16 random characters. Set it in
    /// AGORA_BORE_SECRET rather than with this flag: a command line is visible to
    /// every user of the machine (ps).
    #[arg(long, env = BORE_SECRET_ENV, hide_env_values = true, value_name = "SECRET")]
    bore_secret: Option<String>,
    /// A named cloudflared tunnel's connector token (from the Cloudflare dashboard);
    /// with --tunnel-hostname. Without it cloudflared opens a quick tunnel.
    #[arg(long, env = TUNNEL_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    tunnel_token: Option<String>,
    /// The public hostname routed to the named tunnel, e.g. api.example.com.
    #[arg(long, value_name = "HOST")]
    tunnel_hostname: Option<String>,
}

impl TunnelFlags {
    /// The flags given none: no tunnel, or what the variables that stand for them say,
    /// as clap reads them (`agora sell` starts the daemon with these).
    pub fn from_env() -> anyhow::Result<Self> {
        let tunnel = crate::env::flag_var_with(TUNNEL_ENV, |t| TunnelChoice::from_str(t, false))?;
        Ok(Self {
            tunnel: tunnel.unwrap_or(TunnelChoice::None),
            bore_server: crate::env::flag_var(BORE_SERVER_ENV)?,
            bore_secret: crate::env::flag_var(BORE_SECRET_ENV)?,
            tunnel_token: crate::env::flag_var(TUNNEL_TOKEN_ENV)?,
            tunnel_hostname: None,
        })
    }

    /// The provider to supervise, or none; `--public-url` wins over any tunnel.
    pub fn provider(&self, public_url_given: bool) -> anyhow::Result<Option<Provider>> {
        if self.tunnel == TunnelChoice::None {
            return Ok(None);
        }
        if public_url_given {
            eprintln!("note: --public-url is set, so no tunnel is started (--tunnel ignored)");
            return Ok(None);
        }
        let secret = self
            .bore_secret
            .as_deref()
            .map(|s| Secret::parse(s, BORE_SECRET_ENV))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let bore = |server: &str| -> anyhow::Result<Provider> {
            let server: BoreServer = server.parse().map_err(anyhow::Error::msg)?;
            Ok(Provider::Bore {
                server,
                secret: secret.clone(),
            })
        };
        match (self.tunnel, &self.bore_server) {
            (TunnelChoice::Bore | TunnelChoice::Auto, Some(server)) => bore(server).map(Some),
            (TunnelChoice::Bore, None) => bail!(
                "--tunnel bore needs a relay: pass --bore-server HOST[:PORT] (run one on a public machine with agora tunnel relay)"
            ),
            (TunnelChoice::Cloudflared, _) => {
                let binary = cloudflared::locate().map_err(anyhow::Error::msg)?;
                Ok(Some(Provider::Cloudflared {
                    binary,
                    mode: self.cloudflared_mode()?,
                }))
            }
            (TunnelChoice::Auto, None) => match cloudflared::locate() {
                Ok(binary) => Ok(Some(Provider::Cloudflared {
                    binary,
                    mode: self.cloudflared_mode()?,
                })),
                Err(why) => {
                    eprintln!(
                        "note: --tunnel auto found no tunnel to run, serving without one: {why}"
                    );
                    Ok(None)
                }
            },
            (TunnelChoice::None, _) => Ok(None),
        }
    }

    fn cloudflared_mode(&self) -> anyhow::Result<cloudflared::Mode> {
        match (&self.tunnel_token, &self.tunnel_hostname) {
            (None, None) => Ok(cloudflared::Mode::Quick),
            (Some(token), Some(hostname)) => Ok(cloudflared::Mode::Named {
                token: token.clone(),
                hostname: hostname
                    .trim_end_matches('/')
                    .trim_start_matches("https://")
                    .to_string(),
            }),
            (Some(_), None) => bail!(
                "a named tunnel (--tunnel-token or TUNNEL_TOKEN) needs its public hostname: pass --tunnel-hostname api.example.com"
            ),
            (None, Some(_)) => bail!(
                "--tunnel-hostname is for a named tunnel: also pass its token with TUNNEL_TOKEN (or drop --tunnel-hostname for a quick tunnel)"
            ),
        }
    }

    /// Passes these flags to a background `agora serve --foreground`; secrets go in
    /// its environment, never on its command line.
    pub fn pass_to(&self, command: &mut Command) {
        if let Some(choice) = self.tunnel.to_possible_value() {
            command.args(["--tunnel", choice.get_name()]);
        }
        if let Some(server) = &self.bore_server {
            command.args(["--bore-server", server]);
        }
        if let Some(host) = &self.tunnel_hostname {
            command.args(["--tunnel-hostname", host]);
        }
        if let Some(secret) = &self.bore_secret {
            command.env(BORE_SECRET_ENV, secret);
        }
        if let Some(token) = &self.tunnel_token {
            command.env(TUNNEL_TOKEN_ENV, token);
        }
    }
}

/// `agora tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    #[command(subcommand)]
    command: TunnelCommand,
}

#[derive(Debug, Subcommand)]
enum TunnelCommand {
    /// Show the tunnel: provider, state (off, starting, up, down), public URL, restarts.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hold the tunnel up even with nothing Ready (until `agora tunnel stop` or a
    /// daemon restart).
    Start {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take the tunnel down and keep it down (until `agora tunnel start` or a daemon
    /// restart); buyers then reach only the gateway's own address.
    Stop {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the tunnel's log (cloudflared's output, connects, crashes, restarts).
    Logs {
        /// How many of the last lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Run a bore-compatible relay on a public machine until Ctrl-C; sellers point
    /// `agora serve --tunnel bore --bore-server THIS_HOST` at it.
    Relay(RelayArgs),
}

/// `agora tunnel relay`.
#[derive(Debug, Args)]
struct RelayArgs {
    /// Control address sellers connect to.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7835")]
    listen: SocketAddr,
    /// Address the public ports are opened on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    bind_tunnels: IpAddr,
    /// Lowest public port handed out.
    #[arg(long, default_value_t = 1024)]
    min_port: u16,
    /// Highest public port handed out.
    #[arg(long, default_value_t = 65535)]
    max_port: u16,
    /// Secrets sellers must prove, comma-separated, each at least 16 random
    /// characters; give each seller its own, since a released public port stays
    /// reserved for the secret that held it. Required unless --listen is a loopback
    /// address. Set it in AGORA_BORE_SECRET rather than with this flag: a command line
    /// is visible to every user of the machine (ps).
    #[arg(long, env = BORE_SECRET_ENV, hide_env_values = true, value_name = "SECRETS")]
    secret: Option<String>,
    /// Print the startup line as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `agora tunnel ...`.
pub async fn run(args: TunnelArgs) -> anyhow::Result<()> {
    match args.command {
        TunnelCommand::Status { json } => status(json).await,
        TunnelCommand::Start { json } => steer("start", json).await,
        TunnelCommand::Stop { json } => steer("stop", json).await,
        TunnelCommand::Logs { lines } => logs(lines),
        TunnelCommand::Relay(relay_args) => relay(relay_args).await,
    }
}

fn print_status(
    status: &tunnel::Status,
    control: Option<Control>,
    note: Option<&str>,
) -> anyhow::Result<()> {
    outln!("Provider: {}", status.provider)?;
    outln!("State:    {}", state_name(status.state))?;
    outln!("URL:      {}", status.url.as_deref().unwrap_or("-"))?;
    if let Some(control) = control {
        outln!("Control:  {}", control.text())?;
    }
    outln!("Restarts: {}", status.restarts)?;
    if let Some(error) = &status.last_error {
        outln!("Last error: {error}")?;
    }
    if let Some(note) = note {
        outln!("{note}")?;
    }
    Ok(())
}

/// How to restart the daemon with a tunnel, said when it runs without one.
const RESTART_WITH_TUNNEL: &str =
    "agora serve --tunnel bore --bore-server HOST (or --tunnel cloudflared)";

async fn status(json_out: bool) -> anyhow::Result<()> {
    let home = home::agora_home()?;
    let client = AdminClient::new(&socket_path(&home));
    if client.is_up().await {
        let view = client.tunnel().await?;
        if json_out {
            outln!("{}", serde_json::to_value(&view)?)?;
            return Ok(());
        }
        return match view {
            TunnelView::Kept(kept) => print_status(&kept.status, Some(kept.control), None),
            TunnelView::None(_) => {
                outln!("No tunnel: the agora daemon runs with --tunnel none.")?;
                outln!("Restart it with: {RESTART_WITH_TUNNEL}")?;
                Ok(())
            }
        };
    }
    let saved = tunnel::state::load(&state_path(&home))
        .with_context(|| format!("cannot read {}", state_path(&home).display()))?;
    let Some(saved) = saved else {
        bail!(
            "no tunnel has run here and the agora daemon is not running; start one with: {RESTART_WITH_TUNNEL}"
        );
    };
    if json_out {
        let mut value = serde_json::to_value(&saved)?;
        value["daemon"] = json!(false);
        outln!("{value}")?;
        return Ok(());
    }
    print_status(
        &saved,
        None,
        Some(
            "The agora daemon is not running: this is the last saved state. Start it with: agora serve --tunnel auto",
        ),
    )
}

/// The daemon's refusal to steer a tunnel it does not keep, with how to restart it.
fn no_tunnel(e: AdminError) -> anyhow::Error {
    if e.status() == Some(409) {
        anyhow::anyhow!(
            "this daemon runs with --tunnel none; restart it with {RESTART_WITH_TUNNEL}"
        )
    } else {
        e.into()
    }
}

async fn steer(action: &str, json_out: bool) -> anyhow::Result<()> {
    let home = home::agora_home()?;
    let client = AdminClient::new(&socket_path(&home));
    if !client.is_up().await {
        bail!("the agora daemon is not running; start it with: agora serve --tunnel auto");
    }
    let up = action == "start";
    let mut status = client.hold_tunnel(up).await.map_err(no_tunnel)?;
    // Show where it ended up: up (or down, with why) after start, off after stop.
    let settled: &[tunnel::State] = if up {
        &[tunnel::State::Up, tunnel::State::Down]
    } else {
        &[tunnel::State::Off]
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !settled.contains(&status.status.state) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = match client.tunnel().await? {
            TunnelView::Kept(kept) => kept,
            TunnelView::None(_) => bail!("the agora daemon no longer keeps a tunnel"),
        };
    }
    if json_out {
        outln!("{}", serde_json::to_value(&status)?)?;
    } else {
        print_status(&status.status, Some(status.control), None)?;
    }
    Ok(())
}

fn logs(lines: usize) -> anyhow::Result<()> {
    let home = home::agora_home()?;
    let log = TunnelLog::new(log_path(&home));
    let tail = log
        .tail(lines)
        .with_context(|| format!("cannot read {}", log.path().display()))?;
    if tail.is_empty() {
        outln!("The tunnel log is empty ({}).", log.path().display())?;
    }
    for line in tail {
        outln!("{line}")?;
    }
    Ok(())
}

/// The relay's secrets from `--secret`/`AGORA_BORE_SECRET` (comma-separated), each
/// strong enough; none is accepted only on a loopback control address, since an open
/// relay on the internet lets anyone answer at a seller's public URL.
fn relay_secrets(text: Option<&str>, listen: SocketAddr) -> anyhow::Result<Vec<Secret>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        if listen.ip().is_loopback() {
            return Ok(Vec::new());
        }
        bail!(
            "agora tunnel relay on {listen} needs a secret: without one anyone can open ports on it and take a seller's port. Set {BORE_SECRET_ENV} to at least 16 random characters (e.g. export {BORE_SECRET_ENV}=$(openssl rand -hex 16)), one per seller separated by commas, and give each seller theirs; or listen on loopback only (--listen 127.0.0.1:7835)"
        );
    };
    text.split(',')
        .map(|one| Secret::parse(one.trim(), BORE_SECRET_ENV).map_err(anyhow::Error::msg))
        .collect()
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    if args.min_port > args.max_port || args.min_port == 0 {
        bail!(
            "--min-port {} --max-port {} is not a range of ports; pass e.g. --min-port 20000 --max-port 29999",
            args.min_port,
            args.max_port
        );
    }
    let secrets = relay_secrets(args.secret.as_deref(), args.listen)?;
    let secret_required = !secrets.is_empty();
    let shutdown = crate::signals::shutdown_signal()?;
    let relay = Relay::bind(RelayConfig {
        control: args.listen,
        tunnels: args.bind_tunnels,
        ports: args.min_port..=args.max_port,
        secrets,
        limits: Limits::default(),
    })
    .await
    .with_context(|| {
        format!(
            "cannot listen on {} (in use? pass --listen 0.0.0.0:PORT for another port)",
            args.listen
        )
    })?;
    let control = relay.control_addr()?;
    let line = json!({
        "control": control.to_string(),
        "tunnels": args.bind_tunnels.to_string(),
        "ports": format!("{}-{}", args.min_port, args.max_port),
        "secret": secret_required,
        "pid": std::process::id(),
    });
    if args.json {
        outln!("{line}")?;
    } else {
        outln!(
            "bore relay on {control} (public ports {}-{} on {}{}); sellers run: agora serve --tunnel bore --bore-server HOST:{}",
            args.min_port,
            args.max_port,
            args.bind_tunnels,
            if secret_required {
                ", secret required"
            } else {
                ", no secret: anyone who can reach this loopback address can open a port"
            },
            control.port()
        )?;
    }
    tokio::select! {
        served = relay.run() => served.context("the relay stopped")?,
        () = shutdown => {}
    }
    Ok(())
}
