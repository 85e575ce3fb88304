//! `agora`: monetize a machine with x402 payments and the ERC-8004 registry.

mod demo;
mod detect;
mod devnet_cmd;
mod discover;
mod doctor;
mod env;
mod facilitator_cmd;
#[cfg(feature = "kubernetes")]
mod gateway_cmd;
mod hint;
mod index_cmd;
mod mcp;
#[cfg(feature = "kubernetes")]
mod operator_cmd;
mod output;
mod pay;
mod research;
mod sell;
mod serve_cmd;
mod signals;
mod skills;
mod tunnel_cmd;
mod wallet_cmd;

use clap::{Parser, Subcommand};

// Without the `kubernetes` feature the commands keep their names and answer how to
// get them (see without_kubernetes.rs).
#[cfg(not(feature = "kubernetes"))]
mod without_kubernetes;
#[cfg(not(feature = "kubernetes"))]
use without_kubernetes as gateway_cmd;
#[cfg(not(feature = "kubernetes"))]
use without_kubernetes as operator_cmd;

/// agora: sell, buy and discover x402-paid services.
#[derive(Debug, Parser)]
#[command(name = "agora", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local chain that looks like Base Sepolia (USDC + ERC-8004 registry) until Ctrl-C.
    Devnet(devnet_cmd::DevnetArgs),
    /// Start a devnet, the seller daemon and a sample service; sell it, probe it, buy it,
    /// and print the on-chain proof.
    Demo(demo::DemoArgs),
    /// Serve the x402 facilitator API (/verify, /settle, /supported, /health), settling
    /// USDC payments on the given chains with your key, until Ctrl-C.
    Facilitator(facilitator_cmd::FacilitatorArgs),
    /// Run the seller daemon (offers, reconciler, gateway, admin socket); in the
    /// background unless --foreground.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Sell services behind the x402 gate: http, inference, list, status, update, stop,
    /// delete, pricing, get, apply, probe.
    Sell(Box<sell::SellArgs>),
    /// Follow the ERC-8004 Identity Registry into SQLite and serve an 8004scan-shaped API.
    Index(Box<index_cmd::IndexArgs>),
    /// Find sellers by OASF skill/domain and x402 support (via an indexer, or over RPC).
    Discover(Box<discover::DiscoverArgs>),
    /// The buyer's wallets: new, import, list, address, balance, use, budget, spent,
    /// export.
    Wallet(Box<wallet_cmd::WalletArgs>),
    /// Call a URL like curl, paying its x402 402 from the wallet within --max and the
    /// budgets (exit 2: refused before signing; 3: outcome unknown, use --resume).
    Pay(Box<pay::PayArgs>),
    /// Serve agora's tools (sell, pricing research, discover, pay, wallet, doctor) to an
    /// agent over MCP on stdio; --print-config shows how to add it to Claude Code.
    Mcp(mcp::McpArgs),
    /// Autoresearch: run a GPU worker, coordinate paid experiments, publish the best
    /// checkpoint.
    Research(Box<research::ResearchArgs>),
    /// Install the Agent Skills that teach Claude Code to sell, buy and run autoresearch
    /// with agora: install, list, show, path.
    Skills(Box<skills::SkillsArgs>),
    /// Check that this machine is ready to sell (daemon, gateway, public URL,
    /// facilitator, wallet, registry key, model servers, offers); prints the fix for each
    /// failure and exits 1 when one fails.
    Doctor(Box<doctor::DoctorArgs>),
    /// The public tunnel to the gateway: status, start, stop, logs; and a bore relay.
    Tunnel(Box<tunnel_cmd::TunnelArgs>),
    /// Print the ServiceOffer CustomResourceDefinition (serviceoffers.obol.org,
    /// v1alpha1), generated from agora's types: `agora crd | kubectl apply -f -`.
    Crd(operator_cmd::CrdArgs),
    /// Run the Kubernetes operator: reconcile every ServiceOffer through the six stages
    /// and write the conditions to its status, until Ctrl-C.
    Operator(Box<operator_cmd::OperatorArgs>),
    /// Run the gateway alone with --from-kubernetes: routes from the cluster's
    /// ServiceOffers and Services, payments through a shared facilitator.
    Gateway(Box<gateway_cmd::GatewayArgs>),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(env::LOG)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devnet(args) => devnet_cmd::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Facilitator(args) => facilitator_cmd::run(args).await,
        Command::Serve(args) => serve_cmd::run(*args).await,
        Command::Sell(args) => sell::run(*args).await,
        Command::Index(args) => index_cmd::run(*args).await,
        Command::Discover(args) => discover::run(*args).await,
        Command::Wallet(args) => wallet_cmd::run(*args).await,
        Command::Pay(args) => pay::run(*args).await,
        Command::Mcp(args) => mcp::run(args).await,
        Command::Research(args) => research::run(*args).await,
        Command::Tunnel(args) => tunnel_cmd::run(*args).await,
        Command::Skills(args) => skills::run(*args).await,
        Command::Doctor(args) => doctor::run(*args).await,
        Command::Crd(args) => operator_cmd::crd(&args),
        Command::Operator(args) => operator_cmd::operator(*args).await,
        Command::Gateway(args) => gateway_cmd::run(*args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `agora sell list | head -1`: the reader has what it wanted.
        Err(e) if output::is_stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", hint::describe(&e));
            // `agora pay` tells refusals (2) and unknown outcomes (3) apart.
            std::process::ExitCode::from(pay::exit_code(&e))
        }
    }
}
