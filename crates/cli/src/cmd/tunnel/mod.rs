//! `agora tunnel status|start|stop|logs|relay` and the `agora serve --tunnel` flags.
//!
//! The tunnel itself lives in the daemon (`seller::tunnel_follower`); these commands read its state
//! (from the daemon, or from `tunnel.json` when the daemon is down), hold it up or
//! down, print its log, and run a bore-compatible relay for a public machine.

mod flags;
mod relay;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use seller::admin::{Control, TunnelView, state_name};
use seller::tunnel_follower::{log_path, state_path};
use seller::{AdminClient, AdminError, socket_path};
use serde_json::json;
use tunnel::TunnelLog;
use wallet::home;

use crate::output::outln;
pub use flags::{SECRET_FLAGS, TunnelFlags};
use relay::RelayArgs;

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
        #[arg(long, help = crate::output::JSON_HELP)]
        json: bool,
    },
    /// Hold the tunnel up even with nothing Ready (until `agora tunnel stop` or a
    /// daemon restart).
    Start {
        #[arg(long, help = crate::output::JSON_HELP)]
        json: bool,
    },
    /// Take the tunnel down and keep it down (until `agora tunnel start` or a daemon
    /// restart); buyers then reach only the gateway's own address.
    Stop {
        #[arg(long, help = crate::output::JSON_HELP)]
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

/// Runs `agora tunnel ...`.
pub async fn run(args: TunnelArgs) -> anyhow::Result<()> {
    match args.command {
        TunnelCommand::Status { json } => status(json).await,
        TunnelCommand::Start { json } => steer("start", json).await,
        TunnelCommand::Stop { json } => steer("stop", json).await,
        TunnelCommand::Logs { lines } => logs(lines),
        TunnelCommand::Relay(relay_args) => relay::run(relay_args).await,
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
