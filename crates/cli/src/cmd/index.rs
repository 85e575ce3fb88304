//! `agora index`: agora's own ERC-8004 indexer, so buyers and coordinators find
//! sellers without a third-party API.

use std::net::SocketAddr;
use std::path::PathBuf;

use alloy::primitives::Address;
use anyhow::Context;
use clap::Args;
use serde_json::json;
use wallet::home;

use crate::output::outln;

/// Where `agora discover` looks for an indexer first.
pub const DEFAULT_INDEXER: &str = "http://127.0.0.1:3400";

/// Options of `agora index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// JSON-RPC endpoint of the chain whose registry is followed.
    #[arg(long, value_name = "URL")]
    rpc: reqwest::Url,
    /// Identity Registry address [default: the ERC-8004 deployment of the chain].
    #[arg(long, value_name = "ADDR")]
    registry: Option<Address>,
    /// API address (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3400")]
    listen: SocketAddr,
    /// SQLite database [default: $AGORA_HOME/indexer.db].
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Blocks to wait before indexing a block (raise it on public chains).
    #[arg(long, default_value_t = 0)]
    confirmations: u64,
    /// First block to read (the registry's deployment block saves time).
    #[arg(long, default_value_t = 0)]
    start_block: u64,
    /// IPFS gateway for ipfs:// registration files.
    #[arg(long, value_name = "URL")]
    ipfs_gateway: Option<reqwest::Url>,
    /// Fetch registration files from private and loopback addresses too (on by default
    /// when the RPC itself is on loopback, i.e. a local chain).
    #[arg(long)]
    allow_private_addresses: bool,
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

/// The indexer configuration from the flags.
fn config(
    rpc: &str,
    registry: Option<Address>,
    db: PathBuf,
    allow_private: bool,
) -> indexer::IndexerConfig {
    let mut config = indexer::IndexerConfig::new(rpc, db);
    config.registry = registry;
    config.fetch.allow_private_addresses = allow_private || indexer::is_local_rpc(rpc);
    config
}

/// Indexes and serves the API until Ctrl-C or SIGTERM.
pub async fn run(args: IndexArgs) -> anyhow::Result<()> {
    let db = match args.db.clone() {
        Some(path) => path,
        None => {
            let home = home::agora_home()?;
            home::create_private_dir(&home)?;
            home.join("indexer.db")
        }
    };
    let mut config = config(
        &crate::env::url_text(&args.rpc),
        args.registry,
        db.clone(),
        args.allow_private_addresses,
    );
    config.confirmations = args.confirmations;
    config.start_block = args.start_block;
    if let Some(gateway) = &args.ipfs_gateway {
        config.ipfs_gateway = gateway.clone();
    }
    let private = config.fetch.allow_private_addresses;
    let indexer = indexer::Indexer::open(config).await?;
    let listen = args.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (in use? pass --listen 127.0.0.1:0)")
        })?;
    let bound = listener.local_addr()?;
    let shutdown = crate::signals::shutdown_signal()?;
    let line = json!({
        "url": format!("http://{bound}"),
        "chainId": indexer.chain_id(),
        "registry": indexer.registry().to_checksum(None),
        "db": db,
        "privateAddresses": private,
    });
    if args.json {
        outln!("{line}")?;
    } else {
        outln!(
            "agora indexer on http://{bound}: chain {} registry {} (database {}); API /api/v1/public/agents, health /health",
            indexer.chain_id(),
            indexer.registry(),
            db.display()
        )?;
    }
    indexer.serve(listener, shutdown).await?;
    Ok(())
}
