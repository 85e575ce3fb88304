//! `agora facilitator`: agora's embedded facilitator served as the standard x402 HTTP
//! API (`/verify`, `/settle`, `/supported`, `/health`), so any x402 resource server,
//! agora's or not, can settle USDC payments through it.
//!
//! Startup reads each `--rpc`'s chain id (so the served networks are facts, not
//! claims), loads the gas key from a private file or the environment without ever
//! printing it, opens the settlement journal under `$AGORA_HOME`, and serves until
//! Ctrl-C or SIGTERM, letting requests in flight finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, anyhow, bail};
use clap::Args;
use facilitator::{ChainConfig, ChainsError, EmbeddedConfig, EmbeddedFacilitator};
use serde::Serialize;
use wallet::home;
use wallet::keyfile::{load_key, read_private_file};
use x402::Network;

use crate::env;
use crate::output::outln;

/// Options of `agora facilitator`.
#[derive(Debug, Args)]
pub struct FacilitatorArgs {
    /// JSON-RPC endpoint of a chain to settle on (repeat for several chains); its chain
    /// id is read at start.
    #[arg(long = "rpc", value_name = "URL", required = true)]
    rpcs: Vec<reqwest::Url>,
    /// Serve only these networks (repeatable), e.g. base-sepolia or eip155:84532; each
    /// must be served by one of the --rpc endpoints.
    #[arg(long = "network", value_name = "NAME")]
    networks: Vec<String>,
    /// File holding the hex private key that sends settlements and pays their gas
    /// (mode 0600 or stricter). Default: the AGORA_FACILITATOR_KEY environment variable.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// SQLite file for the replay guard and the settlement journal
    /// [default: $AGORA_HOME/facilitator.db].
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Also settle this token (repeatable); by default only each chain's USDC is
    /// settled, since the facilitator pays the gas of every settlement it sends.
    #[arg(long = "asset", value_name = "ADDRESS")]
    assets: Vec<alloy::primitives::Address>,
    /// Most gas one settlement may use; payments whose settlement needs more are
    /// refused.
    #[arg(long, value_name = "GAS", default_value_t = facilitator::DEFAULT_GAS_LIMIT_CAP)]
    gas_limit_cap: u64,
    #[command(flatten)]
    batch: BatchArgs,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4020")]
    listen: SocketAddr,
    /// File (mode 0600) holding the API key that /verify, /settle and /release
    /// require as `Authorization: Bearer <key>`; give the same file to each gateway's
    /// --facilitator-api-key-file. Required to listen beyond loopback.
    #[arg(long, value_name = "PATH")]
    api_key_file: Option<PathBuf>,
    /// Listen beyond loopback without an API key (only behind something else that
    /// admits only your gateways, such as a NetworkPolicy or an mTLS proxy): anyone
    /// who reaches /settle spends this facilitator's gas.
    #[arg(long, conflicts_with = "api_key_file")]
    no_auth: bool,
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

/// Group-commit settlement, shared by `agora facilitator` and `agora serve --rpc`.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Most USDC settlements sent as one Multicall3 transaction while another is in
    /// flight, and most verify simulations sent as one `eth_call` (1 sends each
    /// alone). An idle facilitator still sends at once, and a chain without Multicall3
    /// at its canonical address does each alone. Clamped at start, with a warning, to
    /// what one transaction may carry (2^24 gas and the block's gas limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_MAX, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch_max: u16,
    /// Longest a queued settlement waits for the transaction in flight, in ms.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_BATCH_WAIT_MS)]
    batch_wait_ms: u64,
}

/// `--batch-max` when not given.
const DEFAULT_BATCH_MAX: u16 = 64;
/// `--batch-wait-ms` when not given.
const DEFAULT_BATCH_WAIT_MS: u64 = 50;

/// The flags' defaults, for a daemon started without a command line (`agora sell`).
impl Default for BatchArgs {
    fn default() -> Self {
        Self {
            batch_max: DEFAULT_BATCH_MAX,
            batch_wait_ms: DEFAULT_BATCH_WAIT_MS,
        }
    }
}

impl BatchArgs {
    /// The facilitator's batch setting.
    pub fn config(&self) -> facilitator::BatchConfig {
        facilitator::BatchConfig {
            max_size: usize::from(self.batch_max),
            max_wait: std::time::Duration::from_millis(self.batch_wait_ms),
        }
    }
}

/// The startup line: where the facilitator listens and who signs, never the key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    url: String,
    listen: String,
    /// Checksummed, as wallets and explorers print it.
    signer: String,
    networks: Vec<String>,
    db: PathBuf,
    /// Whether /verify, /settle and /release require the bearer key.
    api_key: bool,
}

/// Starts the facilitator, prints where it listens, serves until Ctrl-C or SIGTERM.
pub async fn run(args: FacilitatorArgs) -> anyhow::Result<()> {
    let api_key = api_key(&args)?;
    let signer = load_signer(args.key_file.as_deref())?;
    let chains = served_chains(&args.rpcs, &args.networks).await?;
    let db_path = match &args.db {
        Some(path) => path.clone(),
        None => home::agora_home()?.join("facilitator.db"),
    };
    if let Some(parent) = db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        home::create_private_dir(parent)?;
    }
    let networks: Vec<String> = chains.iter().map(|c| c.network.caip2()).collect();
    let mut config = EmbeddedConfig::new(chains, signer, db_path.clone());
    config.extra_assets = args.assets.clone();
    config.gas_limit_cap = args.gas_limit_cap;
    config.batch = args.batch.config();
    let embedded = EmbeddedFacilitator::open(config).await.with_context(|| {
        format!(
            "cannot start the facilitator (database {})",
            db_path.display()
        )
    })?;
    let signer_address = embedded.signer_address();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? try --listen 127.0.0.1:0 for a free port)",
                args.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let shutdown = crate::signals::shutdown_signal()?;
    let started = Started {
        url: format!("http://{bound}"),
        listen: bound.to_string(),
        signer: signer_address.to_checksum(None),
        networks,
        db: db_path,
        api_key: api_key.is_some(),
    };
    if args.json {
        outln!("{}", serde_json::to_string(&started)?)?;
    } else {
        outln!(
            "agora facilitator listening on {} (signer {}, networks {}, journal {})",
            started.url,
            started.signer,
            started.networks.join(", "),
            started.db.display()
        )?;
    }

    let embedded = Arc::new(embedded);
    let app = facilitator::router_with_key(embedded.clone(), api_key)
        .merge(facilitator::metrics_router(embedded));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed")?;
    if !args.json {
        eprintln!("facilitator stopped");
    }
    Ok(())
}

/// The API key from `--api-key-file`; without one, listening beyond loopback is
/// refused unless `--no-auth` says something else guards the port. Refusing rather
/// than warning: an open `/settle` lets anyone spend the facilitator's gas with
/// self-signed zero-value payments, and a warning in a pod's log is read too late.
fn api_key(args: &FacilitatorArgs) -> anyhow::Result<Option<facilitator::ApiKey>> {
    if let Some(path) = &args.api_key_file {
        let text = read_private_file(path)?;
        let key = facilitator::ApiKey::new(&text)
            .with_context(|| format!("--api-key-file {}", path.display()))?;
        return Ok(Some(key));
    }
    if !args.listen.ip().is_loopback() {
        if !args.no_auth {
            bail!(
                "--listen {} is reachable from other machines, and without an API key anyone who reaches /settle spends this facilitator's gas. Create a key with:\n  openssl rand -hex 32 > facilitator-api.key && chmod 600 facilitator-api.key\nthen pass --api-key-file facilitator-api.key here and --facilitator-api-key-file to each gateway (or --no-auth if a NetworkPolicy or proxy already admits only your gateways)",
                args.listen
            );
        }
        eprintln!(
            "warning: agora facilitator listens on {} with no API key (--no-auth): whoever reaches /settle spends its gas; make sure only your gateways can",
            args.listen
        );
    }
    Ok(None)
}

/// A client of the facilitator at `url` that sends the bearer key read from
/// `key_file` (mode 0600), for `--facilitator URL --facilitator-api-key-file PATH`.
pub(crate) fn remote(url: &str, key_file: Option<&Path>) -> anyhow::Result<x402::HttpFacilitator> {
    let remote = x402::HttpFacilitator::new(url).with_context(|| format!("--facilitator {url}"))?;
    let Some(path) = key_file else {
        return Ok(remote);
    };
    let key = read_private_file(path)?;
    remote
        .with_bearer_key(&key)
        .with_context(|| format!("--facilitator-api-key-file {}", path.display()))
}

/// The settlement key from `--key-file` or `$AGORA_FACILITATOR_KEY`.
pub(crate) fn load_signer(key_file: Option<&Path>) -> anyhow::Result<PrivateKeySigner> {
    load_key(key_file, env::FACILITATOR_KEY)
}

/// Reads each RPC's chain and applies the `--network` restriction
/// ([`ChainConfig::from_rpcs`]), naming the flags in its errors.
pub(crate) async fn served_chains(
    rpcs: &[reqwest::Url],
    names: &[String],
) -> anyhow::Result<Vec<ChainConfig>> {
    let mut networks = Vec::new();
    for name in names {
        networks.push(Network::parse(name).with_context(|| format!("--network {name:?}"))?);
    }
    let rpcs: Vec<String> = rpcs.iter().map(env::url_text).collect();
    // The name the user typed for a network, as the flag had it.
    let typed = |network: &Network| {
        names
            .iter()
            .zip(&networks)
            .find(|(_, parsed)| *parsed == network)
            .map_or_else(|| network.caip2(), |(name, _)| name.clone())
    };
    ChainConfig::from_rpcs(&rpcs, &networks)
        .await
        .map_err(|e| match e {
            ChainsError::Unreachable { rpc, source } => anyhow::Error::new(source).context(
                format!("cannot read the chain id of --rpc {rpc} (is the node running?)"),
            ),
            ChainsError::NotEvm { rpc } => anyhow!("--rpc {rpc} does not serve an EVM chain"),
            ChainsError::SameChain {
                rpc,
                other,
                network,
            } => anyhow!(
                "--rpc {rpc} and --rpc {other} both serve {network}; give one --rpc per chain"
            ),
            ChainsError::NetworkNotEvm { network } => anyhow!(
                "--network {} is not an EVM network; agora's facilitator settles eip155 chains",
                typed(&network)
            ),
            ChainsError::Unserved { network, served } => anyhow!(
                "--network {} ({}) has no matching --rpc; the RPCs given serve {}. Add --rpc URL with the JSON-RPC endpoint of a {} node",
                typed(&network),
                network.caip2(),
                served.join(", "),
                facilitator::node_name(&network)
            ),
        })
}
