//! Is this machine ready to sell? One pass over everything a sale needs (the daemon and
//! its gateway, a public URL, a facilitator that settles the network, a funded wallet,
//! the registry key, a model server, the research sandbox, offers that are Ready), each
//! problem with a typed [`Fix`]. A broken setup is what it reports, so [`diagnose`]
//! never fails as a whole; the front-end words each fix in its own commands (`agora
//! doctor` prints `agora …` lines), so nothing here names a CLI flag.

mod daemon;
mod money;
mod sandbox;

use std::error::Error;
use std::time::Duration;

use alloy::primitives::Address;
use reqwest::Url;
use serde::Serialize;
use x402::Network;

use crate::admin::Registration;
use crate::model_server::Detected;
use crate::{AdminClient, Info, Settings};
pub use sandbox::SandboxHost;

use daemon::{daemon_check, gateway_checks, models_check, offers_check, registry_check};
use money::{Embedded, connect_chain, facilitator_check, gas_check, recipient_check, wallet_check};

/// How long one remote check may take: doctor is run by hand and by agents, so a dead
/// endpoint must fail fast.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the checks are run against, as the front-end found it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The network the seller is paid on, as the user named it; `None`: the daemon's
    /// selling settings, else the RPC's chain, else the embedded facilitator's first
    /// chain, else Base Sepolia.
    pub network: Option<String>,
    /// The JSON-RPC balances are read from; `None`: the network's public RPC.
    pub rpc: Option<Url>,
    /// The facilitator a daemon started now would use, checked when none is running.
    pub facilitator_url: String,
    /// The model server found on this machine, or why none was.
    pub model_server: Result<Detected, String>,
    /// The sandbox research runs would get here, or why none could be configured.
    pub sandbox: Result<research::worker::Sandbox, String>,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Holds.
    Ok,
    /// Selling works, but not everywhere (e.g. a loopback-only public URL).
    Warn,
    /// Selling is blocked or broken; the check's fix says what to do.
    Fail,
    /// Not checked, because an earlier check failed or it does not apply.
    Skip,
}

/// What to do about a check, for the front-end to word as its own command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Name a usable agora home (`$AGORA_HOME`).
    SetHome,
    /// Start the daemon.
    StartDaemon,
    /// The gateway does not answer: read the daemon's log, then restart the daemon.
    RestartDaemon,
    /// The tunnel is down: read its log, then start it again.
    RestartTunnel,
    /// The tunnel is starting: watch its status.
    WatchTunnel,
    /// The tunnel is off (no offer is Ready yet): start it.
    StartTunnel,
    /// The public URL is this machine's only: restart the daemon with a tunnel or
    /// behind a proxy with a public URL.
    PublishGateway,
    /// The public URL does not reach the gateway: forward it there, or restart the
    /// daemon with another public URL.
    ForwardPublicUrl {
        /// The URL buyers are given.
        public: String,
        /// The gateway's local address.
        gateway: String,
    },
    /// The embedded facilitator does not settle `network`: restart the daemon with
    /// an RPC of it.
    SettleNetwork {
        /// The network payments are asked on.
        network: Network,
    },
    /// The facilitator cannot be used: configure one that settles `network`, then
    /// restart the daemon.
    UseFacilitator {
        /// The network payments are asked on.
        network: Network,
    },
    /// The facilitator answers but does not settle `network`: sell on one it settles,
    /// or configure another facilitator.
    SellOnSettledNetwork {
        /// The network payments are asked on.
        network: Network,
    },
    /// On a passing recipient check: where the recipient is configured.
    ChangeRecipient,
    /// No recipient: create a wallet, or configure an address to be paid.
    AddRecipient,
    /// Create a wallet.
    CreateWallet,
    /// The wallets cannot be read: list them to see why.
    ListWallets,
    /// Balances cannot be read: name an RPC of `network`.
    PassRpc {
        /// The network whose RPC did not answer.
        network: Network,
    },
    /// The wallet holds no USDC: send some to it.
    FundWallet {
        /// The network to send on.
        network: Network,
        /// The wallet's address.
        address: Address,
    },
    /// The settlement key holds no gas: send some to it.
    FundSettlementKey {
        /// The network to send on.
        network: Network,
        /// The gas token's symbol.
        symbol: &'static str,
        /// The settlement key's address.
        signer: Address,
    },
    /// No registry key: restart the daemon with a funded one and an RPC.
    AddRegistryKey,
    /// The agent is not registered, or the registration cannot be read: register it.
    Register,
    /// The model server serves no model: pull one.
    PullModel,
    /// No model server: start one, or sell an HTTP service instead.
    StartModelServer,
    /// Research runs cannot be confined: install the sandbox's tools (or run research
    /// without the sandbox, knowingly).
    InstallSandbox,
    /// The offers cannot be listed: list them to see why.
    ListOffers,
    /// On a passing offers check with no offer: sell the first one.
    SellOffer,
    /// Offers that are not Ready, each with its own fix.
    Offers(Vec<OfferFix>),
}

/// What unsticks one offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferFix {
    /// The offer's name.
    pub offer: String,
    /// What to do, by the stage it is stuck at.
    pub step: OfferStep,
}

/// What to do about an offer, by the first stage that is not True.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferStep {
    /// ModelReady: put the model on the server, or let the daemon pull models.
    PullModel {
        /// The model, when the offer names one.
        model: Option<String>,
    },
    /// UpstreamHealthy: start the service behind the offer.
    StartUpstream {
        /// The upstream's URL, when the offer has one.
        url: Option<String>,
        /// Its health path, when set.
        health_path: Option<String>,
    },
    /// PaymentGateReady: move the offer to a network the facilitator settles.
    ChangeNetwork,
    /// RoutePublished: its path clashes; sell it again on another path.
    ChangePath,
    /// Any other stage: wait, then look at the offer again.
    Wait,
}

/// Structured findings of a check, beside its summary.
#[derive(Debug, Clone)]
pub enum Details {
    /// Nothing more than the summary.
    None,
    /// The seller's agent on the registry.
    Registration(Registration),
    /// The model server found.
    ModelServer(Detected),
    /// A wallet's address and USDC balance (decimal text).
    Wallet {
        /// The wallet's address.
        address: Address,
        /// Its USDC, e.g. `1.5`.
        usdc: String,
    },
    /// What the research sandbox depends on, on this host.
    Sandbox(SandboxHost),
    /// The offers that are not Ready.
    Offers(Vec<Stuck>),
}

/// An offer that is not Ready, at the first stage that is not True.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The offer's name.
    pub name: String,
    /// The stage's condition type, e.g. `UpstreamHealthy`.
    pub stage: String,
    /// The condition's reason.
    pub reason: String,
    /// The condition's message.
    pub message: String,
    /// What unsticks it.
    pub fix: OfferFix,
}

/// One check of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// Stable id: daemon, gateway, public_url, facilitator, recipient, wallet,
    /// settlement_gas, registry, models, sandbox, offers.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub summary: String,
    /// What fixes a warning or failure; on a passing check, a next step or where to
    /// change what was found.
    pub fix: Option<Fix>,
    /// Structured findings (models found, offers not Ready, balances).
    pub details: Details,
}

impl Check {
    fn new(name: &'static str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            name,
            status,
            summary: summary.into(),
            fix: None,
            details: Details::None,
        }
    }

    fn ok(name: &'static str, summary: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, summary)
    }

    fn fail(name: &'static str, summary: impl Into<String>, fix: Fix) -> Self {
        Self::new(name, Status::Fail, summary).fix(fix)
    }

    fn warn(name: &'static str, summary: impl Into<String>, fix: Fix) -> Self {
        Self::new(name, Status::Warn, summary).fix(fix)
    }

    fn skip(name: &'static str, summary: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, summary)
    }

    fn fix(mut self, fix: Fix) -> Self {
        self.fix = Some(fix);
        self
    }

    fn details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }
}

/// Everything doctor found.
#[derive(Debug, Clone)]
pub struct Report {
    /// No check failed (warnings allowed).
    pub ok: bool,
    /// The network the checks were made for.
    pub network: Network,
    /// The checks, in the order a seller fixes them.
    pub checks: Vec<Check>,
}

impl Report {
    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

/// What the running daemon said about itself and its selling defaults.
struct DaemonView {
    client: AdminClient,
    info: Info,
    /// Empty when the daemon did not answer them.
    settings: Settings,
}

/// Runs every check against the daemon of `$AGORA_HOME` and this machine.
pub async fn diagnose(options: &Options) -> Report {
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

    let (chain, network) = connect_chain(options, settings.network, embedded.as_ref()).await;
    checks.extend(gateway_checks(daemon.as_ref()).await);
    let facilitator = facilitator_label.unwrap_or_else(|| options.facilitator_url.clone());
    checks.push(facilitator_check(&network, &facilitator, embedded.as_ref()).await);
    checks.push(recipient_check(settings.pay_to));
    checks.push(wallet_check(&network, &chain).await);
    checks.push(gas_check(&network, &chain, embedded.as_ref()).await);
    checks.push(registry_check(daemon.as_ref()).await);
    checks.push(models_check(&options.model_server));
    checks.push(sandbox::sandbox_check(&options.sandbox));
    checks.push(offers_check(daemon.as_ref()).await);
    Report {
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        network,
        checks,
    }
}

/// `e` and its sources, joined as `a: b: c`.
fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
