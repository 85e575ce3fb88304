//! `agora doctor`: is this machine ready to sell? One pass over everything a sale needs
//! (the daemon and its gateway, a public URL, a facilitator that settles the network,
//! a funded wallet, the registry key, a model server, offers that are Ready), each
//! failure printed with the command that fixes it. The agent skills run it first, and
//! [`diagnose`] returns the same report as data for callers inside the binary (the MCP
//! server's `doctor` tool).

mod daemon;
mod money;
mod sandbox;

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use reqwest::Url;
use seller::{AdminClient, Info, Settings};
use serde::Serialize;
use serde_json::Value;

use crate::output::outln;
use daemon::{daemon_check, gateway_checks, models_check, offers_check, registry_check};
use money::{Embedded, connect_chain, facilitator_check, gas_check, recipient_check, wallet_check};

/// How long one remote check may take: doctor is run by hand and by agents, so a dead
/// endpoint must fail fast.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `agora doctor`.
#[derive(Debug, Clone, Default, Args)]
pub struct DoctorArgs {
    /// JSON-RPC the wallet's balances are read from [default: the network's public RPC].
    #[arg(long, value_name = "URL")]
    pub rpc: Option<Url>,
    /// Network the seller is paid on [default: `agora sell pricing`, else the --rpc
    /// chain, else base-sepolia].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Machine-readable output (one JSON object).
    #[arg(long)]
    pub json: bool,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Holds.
    Ok,
    /// Selling works, but not everywhere (e.g. a loopback-only public URL).
    Warn,
    /// Selling is blocked or broken; `fix` says what to type.
    Fail,
    /// Not checked, because an earlier check failed or it does not apply.
    Skip,
}

/// One check of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable id: daemon, gateway, public_url, facilitator, recipient, wallet,
    /// settlement_gas, registry, models, sandbox, offers.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub summary: String,
    /// The command (or step) that fixes a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Structured findings (models found, offers not Ready, balances).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl Check {
    fn new(name: &'static str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            name,
            status,
            summary: summary.into(),
            fix: None,
            details: Value::Null,
        }
    }

    fn ok(name: &'static str, summary: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, summary)
    }

    fn fail(name: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, summary).fix(fix)
    }

    fn warn(name: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, summary).fix(fix)
    }

    fn skip(name: &'static str, summary: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, summary)
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed (warnings allowed).
    pub ok: bool,
    /// The network the checks were made for (CAIP-2).
    pub network: String,
    /// The checks, in the order a seller fixes them.
    pub checks: Vec<Check>,
}

impl Report {
    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

/// Runs `agora doctor`: prints the report and fails (exit 1) when a check failed.
pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = diagnose(&args).await;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        print(&report)?;
    }
    let failed: Vec<&str> = report.failed().map(|c| c.name).collect();
    if !failed.is_empty() {
        bail!(
            "{} check(s) failed: {}; run the fix printed for each, then agora doctor again",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn print(report: &Report) -> anyhow::Result<()> {
    for check in &report.checks {
        let icon = match check.status {
            Status::Ok => "✓",
            Status::Warn => "⚠",
            Status::Fail => "✗",
            Status::Skip => "-",
        };
        outln!("{icon} {:<15} {}", check.name, check.summary)?;
        if let Some(fix) = &check.fix {
            outln!("  {:<15} fix: {fix}", "")?;
        }
    }
    let failed = report.failed().count();
    if failed == 0 {
        outln!("Ready to sell on {}.", report.network)
    } else {
        outln!("{failed} check(s) failed.")
    }
}

/// What the running daemon said about itself and its selling defaults.
struct DaemonView {
    client: AdminClient,
    info: Info,
    /// Empty when the daemon did not answer them.
    settings: Settings,
}

/// Runs every check; never fails as a whole, since a broken setup is what it reports.
pub async fn diagnose(args: &DoctorArgs) -> Report {
    let mut checks = Vec::new();
    let daemon = match daemon_check().await {
        Ok((check, view)) => {
            checks.push(check);
            view
        }
        Err(check) => {
            checks.push(*check);
            None
        }
    };
    let settings = daemon
        .as_ref()
        .map(|d| d.settings.clone())
        .unwrap_or_default();
    let facilitator_label = daemon.as_ref().map(|d| d.info.facilitator.clone());
    let embedded = daemon
        .as_ref()
        .and_then(|d| d.info.facilitator_detail.as_ref())
        .and_then(Embedded::of);

    let (chain, network) = connect_chain(args, settings.network, embedded.as_ref()).await;
    checks.extend(gateway_checks(daemon.as_ref()).await);
    checks.push(facilitator_check(&network, facilitator_label.as_deref(), embedded.as_ref()).await);
    checks.push(recipient_check(settings.pay_to));
    checks.push(wallet_check(&network, &chain).await);
    checks.push(gas_check(&network, &chain, embedded.as_ref()).await);
    checks.push(registry_check(daemon.as_ref()).await);
    checks.push(models_check().await);
    checks.push(sandbox::sandbox_check());
    checks.push(offers_check(daemon.as_ref()).await);
    Report {
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        network: network.caip2(),
        checks,
    }
}
