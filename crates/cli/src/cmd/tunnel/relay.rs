//! `agora tunnel relay`: the relay's flags, their set-up as a [`tunnel::relay::Config`]
//! (its refusals worded with the flags that fix them), and the startup line.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use tunnel::relay::{self, Config, ConfigError};

use crate::env::BORE_SECRET as BORE_SECRET_ENV;
use crate::output::outln;

/// `agora tunnel relay`.
#[derive(Debug, Args)]
pub(super) struct RelayArgs {
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
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

/// The relay's set-up from the flags, or why not with the flag or variable that fixes
/// it: a secret (`--secret`/`AGORA_BORE_SECRET`, comma-separated) is required unless
/// the control address is loopback.
fn config(args: &RelayArgs) -> anyhow::Result<Config> {
    let ports = (args.min_port, args.max_port);
    let listen = args.listen;
    match Config::new(
        listen,
        args.bind_tunnels,
        ports,
        args.secret.as_deref(),
        BORE_SECRET_ENV,
    ) {
        Ok(config) => Ok(config),
        Err(ConfigError::NoPorts { min, max }) => bail!(
            "--min-port {min} --max-port {max} is not a range of ports; pass e.g. --min-port 20000 --max-port 29999"
        ),
        Err(ConfigError::OpenRelay { .. }) => bail!(
            "agora tunnel relay on {listen} needs a secret: without one anyone can open ports on it and take a seller's port. Set {BORE_SECRET_ENV} to at least 16 random characters (e.g. export {BORE_SECRET_ENV}=$(openssl rand -hex 16)), one per seller separated by commas, and give each seller theirs; or listen on loopback only (--listen 127.0.0.1:7835)"
        ),
        Err(ConfigError::WeakSecret(why)) => bail!(why),
    }
}

/// Runs the relay until Ctrl-C or SIGTERM.
pub(super) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let secret_required = config.secret_required();
    let shutdown = crate::signals::shutdown_signal()?;
    let relay = config.bind().await.with_context(|| {
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
    relay::serve(relay, shutdown)
        .await
        .context("the relay stopped")
}
