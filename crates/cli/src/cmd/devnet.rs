//! `agora devnet`: a local Base Sepolia look-alike for development and tests.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use devnet::{Devnet, DevnetConfig, DevnetSummary};
use x402::Money;
use x402::network::USDC_DECIMALS;

use crate::env;
use crate::output::outln;

/// Options of `agora devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Funded accounts to create (account 0 deploys the contracts and mints USDC).
    #[arg(long, default_value_t = 10)]
    accounts: usize,
    /// USDC minted to each account, in whole USDC.
    #[arg(long, default_value = "1000")]
    usdc: String,
    /// Loopback port for the JSON-RPC endpoint (0 picks a free one).
    #[arg(long, default_value_t = 8545)]
    port: u16,
    /// The anvil binary [default: PATH, then the project's tools/ install].
    #[arg(long, env = env::ANVIL)]
    anvil: Option<PathBuf>,
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

impl DevnetArgs {
    /// The devnet configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<DevnetConfig> {
        let usdc = Money::parse(&self.usdc, USDC_DECIMALS)
            .with_context(|| format!("--usdc {:?} is not a USDC amount", self.usdc))?;
        Ok(DevnetConfig {
            accounts: self.accounts,
            usdc_per_account: usdc,
            port: self.port,
            anvil: self.anvil.clone(),
            ..DevnetConfig::default()
        })
    }
}

/// Starts the devnet, prints its summary, waits for Ctrl-C (or anvil dying), stops it.
pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if !args.json {
        eprintln!(
            "starting anvil (chain id {}) and installing USDC and the ERC-8004 registry...",
            devnet::CHAIN_ID
        );
    }
    let mut chain = Devnet::start(config).await.with_context(|| {
        if args.port != 0 {
            format!(
                "could not start the devnet on port {} (is it in use? try --port 0)",
                args.port
            )
        } else {
            "could not start the devnet".to_string()
        }
    })?;
    let shutdown = crate::signals::shutdown_signal()?;
    let summary = chain.summary().await?;
    if args.json {
        outln!("{}", serde_json::to_string(&summary)?)?;
    } else {
        if let Err(e) = print_summary(&summary) {
            chain.stop().await;
            return Err(e);
        }
        eprintln!("\ndevnet running; press Ctrl-C to stop");
    }
    tokio::select! {
        () = shutdown => {
            chain.stop().await;
            if !args.json {
                eprintln!("devnet stopped");
            }
            Ok(())
        }
        why = chain.exited() => anyhow::bail!("{why}; the devnet is gone"),
    }
}

fn print_summary(summary: &DevnetSummary) -> anyhow::Result<()> {
    outln!("agora devnet")?;
    outln!("  RPC URL            {}", summary.rpc_url)?;
    outln!(
        "  chain              {} ({})",
        summary.chain_id,
        summary.network
    )?;
    outln!(
        "  USDC               {} (EIP-712 {:?} v{}, {} decimals)",
        summary.usdc.address,
        summary.usdc.name,
        summary.usdc.version,
        summary.usdc.decimals
    )?;
    outln!(
        "  Identity Registry  {} (ERC-8004 2.0.0)",
        summary.identity_registry
    )?;
    outln!("\n  funded accounts ({})", summary.keys_note)?;
    for (i, account) in summary.accounts.iter().enumerate() {
        outln!(
            "  [{i}] {}  {} USDC  {} ETH\n      key {}",
            account.address,
            account.usdc,
            account.eth,
            account.private_key
        )?;
    }
    Ok(())
}
