//! `agora doctor`: is this machine ready to sell? One pass over everything a sale needs
//! (the daemon and its gateway, a public URL, a facilitator that settles the network,
//! a funded wallet, the registry key, a model server, offers that are Ready), each
//! failure printed with the command that fixes it. The agent skills run it first, and
//! [`diagnose`] returns the same report as data for callers inside the binary (the MCP
//! server's `doctor` tool).

use std::net::IpAddr;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use anyhow::bail;
use clap::Args;
use offers::{STAGES, ServiceOffer, Stage};
use reqwest::Url;
use serde::Serialize;
use serde_json::{Value, json};
use x402::{Facilitator, HttpFacilitator, Network};

use crate::admin_client::AdminClient;
use crate::daemon::socket_path;
use crate::output::outln;
use crate::serve_cmd::DEFAULT_FACILITATOR;
use crate::wallet::budget::usdc_text;
use crate::wallet::chain::{self, Chain};
use crate::{config, detect, home, wallet};

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
    /// settlement_gas, registry, models, offers.
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
    info: Value,
    settings: Value,
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
    let settings = daemon.as_ref().map(|d| d.settings.clone());
    let setting = |key: &str| {
        settings
            .as_ref()
            .and_then(|s| s[key].as_str().map(str::to_string))
    };
    let facilitator_label = match &daemon {
        Some(d) => d.info["facilitator"].as_str().map(str::to_string),
        None => None,
    };
    let embedded = facilitator_label.as_deref().and_then(Embedded::parse);

    let (chain, network) = connect_chain(args, setting("network"), embedded.as_ref()).await;
    checks.extend(gateway_checks(daemon.as_ref()).await);
    checks.push(facilitator_check(&network, facilitator_label.as_deref(), embedded.as_ref()).await);
    checks.push(recipient_check(setting("payTo")));
    checks.push(wallet_check(&network, &chain).await);
    checks.push(gas_check(&network, &chain, embedded.as_ref()).await);
    checks.push(registry_check(daemon.as_ref()).await);
    checks.push(models_check().await);
    checks.push(offers_check(daemon.as_ref()).await);
    Report {
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        network: network.caip2(),
        checks,
    }
}

/// Whether a daemon answers on the admin socket, with its status and settings.
async fn daemon_check() -> Result<(Check, Option<DaemonView>), Box<Check>> {
    let home = home::agora_home().map_err(|e| {
        Box::new(Check::fail(
            "daemon",
            format!("{e:#}"),
            "export AGORA_HOME=DIR",
        ))
    })?;
    let socket = socket_path(&home);
    let client = AdminClient::new(&socket);
    let info = match client.request("GET", "/v1/status", None).await {
        Ok(answer) => answer.ok(),
        Err(e) => Err(e),
    };
    let info = match info {
        Ok(info) => info,
        Err(e) => {
            return Ok((Check::fail("daemon", format!("{e:#}"), "agora serve"), None));
        }
    };
    let settings = match client.request("GET", "/v1/settings", None).await {
        Ok(answer) => answer.ok().unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let check = Check::ok(
        "daemon",
        format!(
            "running (version {}, admin socket {})",
            info["version"].as_str().unwrap_or("?"),
            socket.display()
        ),
    );
    Ok((
        check,
        Some(DaemonView {
            client,
            info,
            settings,
        }),
    ))
}

/// The embedded facilitator as the daemon's label names it:
/// `embedded (eip155:84532, signer 0x…)`.
struct Embedded {
    networks: Vec<Network>,
    signer: Option<Address>,
}

impl Embedded {
    fn parse(label: &str) -> Option<Self> {
        let inner = label.strip_prefix("embedded (")?.strip_suffix(')')?;
        let mut networks = Vec::new();
        let mut signer = None;
        for part in inner.split(", ") {
            if let Some(address) = part.strip_prefix("signer ") {
                signer = address.parse().ok();
            } else if let Ok(network) = Network::parse(part) {
                networks.push(network);
            }
        }
        Some(Self { networks, signer })
    }
}

/// The network the checks are for, and a connection to it for balances (or why none).
async fn connect_chain(
    args: &DoctorArgs,
    configured: Option<String>,
    embedded: Option<&Embedded>,
) -> (Result<Chain, String>, Network) {
    let named = args.network.clone().or(configured);
    let fallback = embedded
        .and_then(|e| e.networks.first().cloned())
        .unwrap_or(Network::BASE_SEPOLIA);
    let wanted = match named.as_deref().map(Network::parse) {
        Some(Ok(network)) => Some(network),
        Some(Err(e)) => return (Err(format!("{e}")), fallback),
        None => None,
    };
    // Without a named network, an --rpc decides; without either, the fallback.
    let network_arg = match (&wanted, &args.rpc) {
        (Some(n), _) => Some(n.caip2()),
        (None, Some(_)) => None,
        (None, None) => Some(fallback.caip2()),
    };
    let connected = tokio::time::timeout(
        CHECK_TIMEOUT,
        chain::connect(network_arg.as_deref(), args.rpc.as_ref()),
    )
    .await;
    match connected {
        Ok(Ok(chain)) => {
            let network = chain.network.clone();
            (Ok(chain), network)
        }
        Ok(Err(e)) => (Err(format!("{e:#}")), wanted.unwrap_or(fallback)),
        Err(_) => (
            Err("the RPC did not answer within 5 s".into()),
            wanted.unwrap_or(fallback),
        ),
    }
}

fn needs_daemon(name: &'static str) -> Check {
    Check::skip(name, "not checked: the daemon is not running")
}

/// The gateway answers on its address, and the public URL buyers are given.
async fn gateway_checks(daemon: Option<&DaemonView>) -> Vec<Check> {
    let Some(daemon) = daemon else {
        return vec![needs_daemon("gateway"), needs_daemon("public_url")];
    };
    let gateway = daemon.info["gatewayUrl"].as_str().unwrap_or_default();
    let public = daemon.info["publicUrl"].as_str().unwrap_or_default();
    let log = home::agora_home()
        .map(|h| h.join("logs/serve.log").display().to_string())
        .unwrap_or_else(|_| "the daemon's log".into());
    let gateway_check = match healthz(gateway).await {
        Ok(()) => Check::ok("gateway", format!("answers on {gateway}")),
        Err(e) => Check::fail(
            "gateway",
            format!("{gateway} does not answer /healthz: {e}"),
            format!("read {log}, then restart the daemon: agora serve --stop && agora serve"),
        ),
    };
    let public_check = public_url_check(public, gateway, &daemon.info["tunnel"]).await;
    vec![gateway_check, public_check]
}

/// The URL buyers are given: a tunnel's while one is up, else `--public-url`, else the
/// gateway's own address (reachable from this machine only).
async fn public_url_check(public: &str, gateway: &str, tunnel: &Value) -> Check {
    let provider = tunnel["provider"].as_str().unwrap_or("tunnel");
    let last_error = tunnel["lastError"].as_str().unwrap_or("no error recorded");
    match tunnel["state"].as_str() {
        Some("down") => {
            return Check::fail(
                "public_url",
                format!(
                    "the {provider} tunnel is down ({last_error}); buyers cannot reach {public}"
                ),
                "agora tunnel logs (to see why), then: agora tunnel start",
            );
        }
        Some("starting") => {
            return Check::warn(
                "public_url",
                format!(
                    "the {provider} tunnel is starting; buyers reach the gateway once it is up"
                ),
                "agora tunnel status",
            );
        }
        Some("off") if is_local(public) => {
            return Check::warn(
                "public_url",
                format!(
                    "the {provider} tunnel is off until an offer is Ready; {public} is reachable from this machine only"
                ),
                "agora tunnel start",
            );
        }
        _ => {}
    }
    if public.is_empty() || public == gateway || is_local(public) {
        return Check::warn(
            "public_url",
            format!("{public} is reachable from this machine only; buyers elsewhere cannot pay"),
            "restart the daemon with a tunnel (agora serve --stop && agora serve --tunnel auto) or behind your own proxy (agora serve --stop && agora serve --public-url https://YOUR-HOST)",
        );
    }
    match healthz(public).await {
        Ok(()) => Check::ok("public_url", format!("{public} reaches the gateway")),
        Err(e) => Check::fail(
            "public_url",
            format!("{public} does not reach the gateway: {e}"),
            format!(
                "start the tunnel or proxy that forwards {public} to {gateway} (agora tunnel status), or restart the daemon with: agora serve --stop && agora serve --public-url https://YOUR-HOST"
            ),
        ),
    }
}

fn is_local(url: &str) -> bool {
    let Some(host) = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

async fn healthz(base: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(CHECK_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status().as_u16()))
    }
}

/// The facilitator settles the network: the embedded one by its chains, a remote one by
/// its `/supported`.
async fn facilitator_check(
    network: &Network,
    label: Option<&str>,
    embedded: Option<&Embedded>,
) -> Check {
    let caip2 = network.caip2();
    if let Some(embedded) = embedded {
        let served: Vec<String> = embedded.networks.iter().map(Network::caip2).collect();
        return if embedded.networks.contains(network) {
            Check::ok(
                "facilitator",
                format!("the daemon settles {caip2} itself ({})", served.join(", ")),
            )
        } else {
            Check::fail(
                "facilitator",
                format!(
                    "the daemon settles {} itself, not {caip2}",
                    served.join(", ")
                ),
                format!(
                    "restart the daemon with the RPC of {caip2}: agora serve --stop && agora serve --rpc URL"
                ),
            )
        };
    }
    let url = match label {
        Some(url) => url.to_string(),
        None => facilitator_to_be_used(),
    };
    let fix_url = format!(
        "agora sell pricing --facilitator-url {DEFAULT_FACILITATOR} (or a facilitator that settles {caip2}), then restart the daemon: agora serve --stop && agora serve"
    );
    let remote = match HttpFacilitator::new(&url) {
        Ok(remote) => remote.with_timeout(CHECK_TIMEOUT),
        Err(e) => return Check::fail("facilitator", format!("{url}: {e}"), fix_url),
    };
    match remote.supported().await {
        Ok(supported) if supported.supports("exact", network) => {
            Check::ok("facilitator", format!("{url} settles {caip2} (/supported)"))
        }
        Ok(supported) => {
            let listed: Vec<String> = supported
                .kinds
                .iter()
                .map(|k| format!("{} {}", k.scheme, k.network.caip2()))
                .collect();
            Check::fail(
                "facilitator",
                format!(
                    "{url} does not settle exact payments on {caip2}; its /supported lists: {}",
                    listed.join(", ")
                ),
                format!(
                    "sell on a network it settles (agora sell pricing --network NAME), or {fix_url}"
                ),
            )
        }
        Err(e) => Check::fail(
            "facilitator",
            format!("{url}/supported did not answer: {e}"),
            fix_url,
        ),
    }
}

/// The facilitator a daemon started now would use: the flag's variable, else the
/// `agora sell pricing` setting, else the public default.
fn facilitator_to_be_used() -> String {
    if let Some(url) = config::var(config::FACILITATOR_URL) {
        return url;
    }
    let stored = home::agora_home().ok().and_then(|home| {
        let db = home.join("agora.db");
        // Reading must not create the database in a home that has none.
        db.exists()
            .then(|| offers::Store::open(&db).ok()?.setting("facilitator").ok()?)
            .flatten()
    });
    stored.unwrap_or_else(|| DEFAULT_FACILITATOR.to_string())
}

/// Who gets paid: `agora sell pricing --pay-to`, else the default wallet.
fn recipient_check(pay_to: Option<String>) -> Check {
    if let Some(address) = pay_to {
        return Check::ok(
            "recipient",
            format!("payments go to {address} (agora sell pricing)"),
        );
    }
    match wallet::default_wallet() {
        Ok(Some((name, address))) => Check::ok(
            "recipient",
            format!("payments go to the default wallet {name} ({address})"),
        ),
        Ok(None) => Check::fail(
            "recipient",
            "no recipient: no agora sell pricing --pay-to and no wallet",
            "agora wallet new (or: agora sell pricing --pay-to 0xYOUR_ADDRESS)",
        ),
        Err(e) => Check::fail("recipient", format!("{e:#}"), "agora wallet list"),
    }
}

/// The default wallet exists and holds USDC on the network (it pays for
/// `agora sell probe --paid` and any buying).
async fn wallet_check(network: &Network, chain: &Result<Chain, String>) -> Check {
    let caip2 = network.caip2();
    let (name, address) = match wallet::default_wallet() {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Check::fail("wallet", "no agora wallet", "agora wallet new");
        }
        Err(e) => return Check::fail("wallet", format!("{e:#}"), "agora wallet list"),
    };
    let chain = match chain {
        Ok(chain) => chain,
        Err(e) => {
            return Check::fail(
                "wallet",
                format!("cannot read {name}'s balance on {caip2}: {e}"),
                format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
            );
        }
    };
    match chain.balances(address).await {
        Ok(b) if b.usdc.is_zero() => Check::fail(
            "wallet",
            format!("wallet {name} ({address}) holds no USDC on {caip2}"),
            format!(
                "send USDC on {caip2} to {address} (test USDC: https://faucet.circle.com), then check: agora wallet balance"
            ),
        )
        .details(json!({ "address": address, "usdc": "0" })),
        Ok(b) => Check::ok(
            "wallet",
            format!(
                "wallet {name} ({address}) holds {} USDC on {caip2}",
                usdc_text(b.usdc)
            ),
        )
        .details(json!({ "address": address, "usdc": usdc_text(b.usdc) })),
        Err(e) => Check::fail(
            "wallet",
            format!("cannot read {name}'s balance: {e:#}"),
            format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
        ),
    }
}

/// When the daemon settles itself, its settlement key pays the gas of every settlement.
async fn gas_check(
    network: &Network,
    chain: &Result<Chain, String>,
    embedded: Option<&Embedded>,
) -> Check {
    let Some(signer) = embedded.and_then(|e| e.signer) else {
        return Check::skip(
            "settlement_gas",
            "not settling itself: the facilitator pays the gas",
        );
    };
    let symbol = chain::gas_symbol(network);
    let caip2 = network.caip2();
    let chain = match chain {
        Ok(chain) => chain,
        Err(e) => {
            return Check::fail(
                "settlement_gas",
                format!("cannot read the settlement key's {symbol}: {e}"),
                format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
            );
        }
    };
    match chain.balances(signer).await {
        Ok(b) if b.gas == U256::ZERO => Check::fail(
            "settlement_gas",
            format!(
                "the settlement key {signer} holds no {symbol} on {caip2}, so no payment can settle"
            ),
            format!("send {symbol} on {caip2} to {signer}"),
        ),
        Ok(b) => Check::ok(
            "settlement_gas",
            format!(
                "the settlement key {signer} holds {} wei of {symbol}",
                b.gas
            ),
        ),
        Err(e) => Check::fail(
            "settlement_gas",
            format!("cannot read the settlement key's {symbol}: {e:#}"),
            format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
        ),
    }
}

/// Whether the daemon has a registry key and the seller's agent is listed.
async fn registry_check(daemon: Option<&DaemonView>) -> Check {
    let Some(daemon) = daemon else {
        return needs_daemon("registry");
    };
    let fix = "restart the daemon with a funded key: agora serve --stop && agora serve --registry-key-file PATH --registry-rpc URL";
    if !daemon.info["registry"].as_bool().unwrap_or(false) {
        return Check::warn(
            "registry",
            "no registry key: the registration is only served at /.well-known/agent-registration.json, not listed on ERC-8004",
            fix,
        );
    }
    let record = match daemon.client.request("GET", "/v1/registration", None).await {
        Ok(answer) => answer.ok(),
        Err(e) => Err(e),
    };
    match record {
        Ok(record) => match record["agentId"].as_str() {
            Some(id) => Check::ok(
                "registry",
                format!(
                    "agent #{id} on chain {}",
                    record["agentChainId"].as_str().unwrap_or("?")
                ),
            )
            .details(record),
            None => Check::warn(
                "registry",
                "registry key set, but the agent is not registered yet (the registry key needs gas)",
                "agora sell register",
            ),
        },
        Err(e) => Check::fail("registry", format!("{e:#}"), "agora sell register"),
    }
}

/// A model server on the usual ports, and its models.
async fn models_check() -> Check {
    match detect::detect().await {
        Ok(found) if found.models.is_empty() => Check::warn(
            "models",
            format!("{} at {} serves no model", found.runtime, found.url),
            "pull one, e.g.: ollama pull qwen3:8b",
        ),
        Ok(found) => Check::ok(
            "models",
            format!(
                "{} at {}: {}",
                found.runtime,
                found.url,
                found.models.join(", ")
            ),
        )
        .details(json!([{
            "runtime": found.runtime,
            "url": found.url,
            "models": found.models,
        }])),
        Err(e) => Check::warn(
            "models",
            format!("{e:#}"),
            "start a model server (e.g. ollama serve), or sell an HTTP service: agora sell http NAME --upstream URL --per-request PRICE",
        ),
    }
}

/// Every offer is Ready; one that is not names its failing stage and the fix.
async fn offers_check(daemon: Option<&DaemonView>) -> Check {
    let Some(daemon) = daemon else {
        return needs_daemon("offers");
    };
    // A fresh pass, so a condition fixed a moment ago is not reported.
    let listed = match daemon.client.request("POST", "/v1/reconcile", None).await {
        Ok(_) => daemon.client.request("GET", "/v1/offers", None).await,
        Err(e) => Err(e),
    };
    let offers: Vec<ServiceOffer> = match listed
        .and_then(|a| a.ok())
        .and_then(|v| Ok(serde_json::from_value(v)?))
    {
        Ok(offers) => offers,
        Err(e) => return Check::fail("offers", format!("{e:#}"), "agora sell list"),
    };
    if offers.is_empty() {
        return Check::ok(
            "offers",
            "no offers yet (sell one: agora sell http NAME --upstream URL --per-request PRICE)",
        );
    }
    let stuck: Vec<Value> = offers
        .iter()
        .filter(|o| !o.is_ready())
        .map(|o| {
            let (stage, reason, message) = first_problem(o);
            json!({
                "name": o.metadata.name,
                "stage": stage,
                "reason": reason,
                "message": message,
                "fix": stage_fix(o, &stage),
            })
        })
        .collect();
    if stuck.is_empty() {
        let names: Vec<&str> = offers.iter().map(|o| o.metadata.name.as_str()).collect();
        return Check::ok("offers", format!("all Ready: {}", names.join(", ")));
    }
    let summary: Vec<String> = stuck
        .iter()
        .map(|s| {
            format!(
                "{} not Ready: {} {} ({})",
                s["name"].as_str().unwrap_or_default(),
                s["stage"].as_str().unwrap_or_default(),
                s["reason"].as_str().unwrap_or_default(),
                s["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let fixes: Vec<&str> = stuck.iter().filter_map(|s| s["fix"].as_str()).collect();
    Check::fail("offers", summary.join("; "), fixes.join("; ")).details(json!(stuck))
}

/// The first stage of `offer` that is not True, in stage order.
fn first_problem(offer: &ServiceOffer) -> (String, String, String) {
    for stage in STAGES {
        if stage == Stage::Registered {
            continue; // best-effort: never what keeps an offer from Ready
        }
        match offer.condition(stage) {
            Some(c) if c.status.as_str() == "True" => {}
            Some(c) => return (c.kind.clone(), c.reason.clone(), c.message.clone()),
            None => {
                return (
                    stage.as_str().to_string(),
                    "Pending".into(),
                    "not reconciled yet".into(),
                );
            }
        }
    }
    ("Ready".into(), "Unknown".into(), String::new())
}

/// The command that fixes an offer stuck at `stage`.
fn stage_fix(offer: &ServiceOffer, stage: &str) -> String {
    let name = &offer.metadata.name;
    match stage {
        "ModelReady" => {
            let model = offer
                .spec
                .model
                .as_ref()
                .map_or("MODEL", |m| m.name.as_str());
            format!(
                "put the model on the server (ollama pull {model}) or let the daemon pull it: agora serve --pull-models; then agora sell status {name}"
            )
        }
        "UpstreamHealthy" => format!(
            "start the service at {} (health path {}), then: agora sell status {name}",
            offer.spec.upstream.url.as_deref().unwrap_or("its upstream"),
            offer
                .spec
                .upstream
                .health_path
                .as_deref()
                .unwrap_or("/health")
        ),
        "PaymentGateReady" => format!(
            "use a network the facilitator settles (see the facilitator check): agora sell update {name} --network NAME"
        ),
        "RoutePublished" => format!(
            "its path clashes with another offer's or a reserved path: agora sell delete {name}, then sell it again with --path /services/OTHER"
        ),
        _ => format!("wait, then: agora sell status {name}"),
    }
}
