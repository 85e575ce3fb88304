//! Doctor's report as agora prints it: each [`Fix`] worded as the agora command that
//! does it, the findings as JSON, and the human lines (`✓ name summary`, `fix: …`).
//! The checks themselves are [`seller::doctor`]'s; only the words are agora's here.

use seller::doctor::{Check, Details, Fix, OfferFix, OfferStep, Report, Status};
use serde::Serialize;
use serde_json::{Value, json};
use wallet::home;

use crate::cmd::serve::DEFAULT_FACILITATOR;
use crate::output::outln;

/// The report as printed: `--json` writes exactly this object.
#[derive(Debug, Serialize)]
pub(super) struct Shown {
    /// No check failed (warnings allowed).
    ok: bool,
    /// The network the checks were made for (CAIP-2).
    network: String,
    /// The checks, in the order a seller fixes them.
    checks: Vec<ShownCheck>,
}

/// One check as printed.
#[derive(Debug, Serialize)]
struct ShownCheck {
    name: &'static str,
    status: Status,
    summary: String,
    /// The agora command (or step) that fixes a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    details: Value,
}

impl Shown {
    /// `report` in agora's words.
    pub(super) fn of(report: &Report) -> Self {
        Self {
            ok: report.ok,
            network: report.network.caip2(),
            checks: report.checks.iter().map(ShownCheck::of).collect(),
        }
    }

    /// The human report: one line per check, its fix under it, then the verdict.
    pub(super) fn print(&self) -> anyhow::Result<()> {
        for check in &self.checks {
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
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        if failed == 0 {
            outln!("Ready to sell on {}.", self.network)
        } else {
            outln!("{failed} check(s) failed.")
        }
    }
}

impl ShownCheck {
    fn of(check: &Check) -> Self {
        let (summary, fix) = match &check.fix {
            // The one summary that names where the missing setting is made.
            Some(fix @ Fix::AddRecipient) => (
                "no recipient: no agora sell pricing --pay-to and no wallet".to_string(),
                Some(command(fix)),
            ),
            // On a passing check the fix is a pointer, shown beside what was found.
            Some(fix) if check.status == Status::Ok => {
                (format!("{} ({})", check.summary, command(fix)), None)
            }
            fix => (check.summary.clone(), fix.as_ref().map(command)),
        };
        Self {
            name: check.name,
            status: check.status,
            summary,
            fix,
            details: details(&check.details),
        }
    }
}

/// The findings as JSON, each fix of a stuck offer worded as its command.
fn details(details: &Details) -> Value {
    match details {
        Details::None => Value::Null,
        Details::Registration(record) => serde_json::to_value(record).unwrap_or_default(),
        Details::ModelServer(found) => json!([{
            "runtime": found.runtime,
            "url": found.url,
            "models": found.models,
        }]),
        Details::Wallet { address, usdc } => json!({ "address": address, "usdc": usdc }),
        Details::Sandbox(host) => serde_json::to_value(host).unwrap_or_default(),
        Details::Offers(stuck) => stuck
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "stage": s.stage,
                    "reason": s.reason,
                    "message": s.message,
                    "fix": offer_command(&s.fix),
                })
            })
            .collect(),
    }
}

/// The agora command (or step) that does `fix`.
fn command(fix: &Fix) -> String {
    const RESTART: &str = "agora serve --stop && agora serve";
    match fix {
        Fix::SetHome => "export AGORA_HOME=DIR".into(),
        Fix::StartDaemon => "agora serve".into(),
        Fix::RestartDaemon => {
            let log = home::agora_home()
                .map(|h| h.join("logs/serve.log").display().to_string())
                .unwrap_or_else(|_| "the daemon's log".into());
            format!("read {log}, then restart the daemon: {RESTART}")
        }
        Fix::RestartTunnel => "agora tunnel logs (to see why), then: agora tunnel start".into(),
        Fix::WatchTunnel => "agora tunnel status".into(),
        Fix::StartTunnel => "agora tunnel start".into(),
        Fix::PublishGateway => format!(
            "restart the daemon with a tunnel ({RESTART} --tunnel auto) or behind your own proxy ({RESTART} --public-url https://YOUR-HOST)"
        ),
        Fix::ForwardPublicUrl { public, gateway } => format!(
            "start the tunnel or proxy that forwards {public} to {gateway} (agora tunnel status), or restart the daemon with: {RESTART} --public-url https://YOUR-HOST"
        ),
        Fix::SettleNetwork { network } => format!(
            "restart the daemon with the RPC of {}: {RESTART} --rpc URL",
            network.caip2()
        ),
        Fix::UseFacilitator { network } => format!(
            "agora sell pricing --facilitator-url {DEFAULT_FACILITATOR} (or a facilitator that settles {}), then restart the daemon: {RESTART}",
            network.caip2()
        ),
        Fix::SellOnSettledNetwork { network } => format!(
            "sell on a network it settles (agora sell pricing --network NAME), or {}",
            command(&Fix::UseFacilitator {
                network: network.clone()
            })
        ),
        Fix::ChangeRecipient => "agora sell pricing".into(),
        Fix::AddRecipient => "agora wallet new (or: agora sell pricing --pay-to 0xYOUR_ADDRESS)".into(),
        Fix::CreateWallet => "agora wallet new".into(),
        Fix::ListWallets => "agora wallet list".into(),
        Fix::PassRpc { network } => {
            format!("pass the RPC of {}: agora doctor --rpc URL", network.caip2())
        }
        Fix::FundWallet { network, address } => format!(
            "send USDC on {} to {address} (test USDC: https://faucet.circle.com), then check: agora wallet balance",
            network.caip2()
        ),
        Fix::FundSettlementKey {
            network,
            symbol,
            signer,
        } => format!("send {symbol} on {} to {signer}", network.caip2()),
        Fix::AddRegistryKey => format!(
            "restart the daemon with a funded key: {RESTART} --registry-key-file PATH --registry-rpc URL"
        ),
        Fix::Register => "agora sell register".into(),
        Fix::PullModel => "pull one, e.g.: ollama pull qwen3:8b".into(),
        Fix::StartModelServer => "start a model server (e.g. ollama serve), or sell an HTTP service: agora sell http NAME --upstream URL --per-request PRICE".into(),
        Fix::InstallSandbox => "apt-get install bubblewrap util-linux (or scripts/setup); else agora research worker / agora sell research refuse to start unless given --insecure-sandbox".into(),
        Fix::ListOffers => "agora sell list".into(),
        Fix::SellOffer => {
            "sell one: agora sell http NAME --upstream URL --per-request PRICE".into()
        }
        Fix::Offers(fixes) => fixes
            .iter()
            .map(offer_command)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The agora command that unsticks one offer.
fn offer_command(fix: &OfferFix) -> String {
    let name = &fix.offer;
    match &fix.step {
        OfferStep::PullModel { model } => format!(
            "put the model on the server (ollama pull {}) or let the daemon pull it: agora serve --pull-models; then agora sell status {name}",
            model.as_deref().unwrap_or("MODEL")
        ),
        OfferStep::StartUpstream { url, health_path } => format!(
            "start the service at {} (health path {}), then: agora sell status {name}",
            url.as_deref().unwrap_or("its upstream"),
            health_path.as_deref().unwrap_or("/health")
        ),
        OfferStep::ChangeNetwork => format!(
            "use a network the facilitator settles (see the facilitator check): agora sell update {name} --network NAME"
        ),
        OfferStep::ChangePath => format!(
            "its path clashes with another offer's or a reserved path: agora sell delete {name}, then sell it again with --path /services/OTHER"
        ),
        OfferStep::Wait => format!("wait, then: agora sell status {name}"),
    }
}
