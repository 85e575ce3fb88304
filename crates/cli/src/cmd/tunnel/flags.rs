//! The tunnel flags of `agora serve` (`--tunnel`, `--bore-server`, the secrets and the
//! named cloudflared tunnel), read into the provider the daemon supervises, and passed
//! on to a background daemon without putting secrets on its command line.

use std::process::Command;

use anyhow::bail;
use clap::{Args, ValueEnum};
use tunnel::bore::{BoreServer, Secret};
use tunnel::{Provider, cloudflared};

use crate::env::{BORE_SECRET as BORE_SECRET_ENV, BORE_SERVER as BORE_SERVER_ENV};
use crate::env::{TUNNEL as TUNNEL_ENV, TUNNEL_TOKEN as TUNNEL_TOKEN_ENV};

/// The flags whose values are secrets: a background daemon gets them in its
/// environment instead, since a command line is visible to every user (ps).
pub const SECRET_FLAGS: [&str; 2] = ["--bore-secret", "--tunnel-token"];

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

    /// Gives a background `agora serve --foreground` the secrets in its environment,
    /// never on its command line ([`SECRET_FLAGS`] are taken off it).
    pub fn pass_secrets_to(&self, command: &mut Command) {
        if let Some(secret) = &self.bore_secret {
            command.env(BORE_SECRET_ENV, secret);
        }
        if let Some(token) = &self.tunnel_token {
            command.env(TUNNEL_TOKEN_ENV, token);
        }
    }
}
