//! `agora`: monetize a machine with x402 payments and the ERC-8004 registry.

mod cmd;
mod env;
mod exit;
mod hint;
mod model_lookup;
mod output;
mod signals;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use cmd::{
    demo, devnet, discover, doctor, facilitator, gateway, index, mcp, operator, pay, research,
    sell, serve, skills, tunnel, wallet,
};

/// agora: sell, buy and discover x402-paid services.
#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    about,
    propagate_version = true,
    after_help = exit::help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local chain that looks like Base Sepolia (USDC + ERC-8004 registry) until Ctrl-C.
    Devnet(devnet::DevnetArgs),
    /// Start a devnet, the seller daemon and a sample service; sell it, probe it, buy it,
    /// and print the on-chain proof.
    Demo(demo::DemoArgs),
    /// Serve the x402 facilitator API (/verify, /settle, /supported, /health), settling
    /// USDC payments on the given chains with your key, until Ctrl-C.
    Facilitator(facilitator::FacilitatorArgs),
    /// Run the seller daemon (offers, reconciler, gateway, admin socket); in the
    /// background unless --foreground.
    Serve(Box<serve::ServeArgs>),
    /// Sell services behind the x402 gate: http, inference, list, status, update, stop,
    /// delete, pricing, get, apply, probe.
    Sell(Box<sell::SellArgs>),
    /// Follow the ERC-8004 Identity Registry into SQLite and serve an 8004scan-shaped API.
    Index(Box<index::IndexArgs>),
    /// Find sellers by OASF skill/domain and x402 support (via an indexer, or over RPC).
    Discover(Box<discover::DiscoverArgs>),
    /// The buyer's wallets: new, import, list, address, balance, use, budget, spent,
    /// export.
    Wallet(Box<wallet::WalletArgs>),
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
    Tunnel(Box<tunnel::TunnelArgs>),
    /// Print the ServiceOffer CustomResourceDefinition (serviceoffers.obol.org,
    /// v1alpha1), generated from agora's types: `agora crd | kubectl apply -f -`.
    Crd(operator::CrdArgs),
    /// Run the Kubernetes operator: reconcile every ServiceOffer through the six stages
    /// and write the conditions to its status, until Ctrl-C.
    Operator(Box<operator::OperatorArgs>),
    /// Run the gateway alone with --from-kubernetes: routes from the cluster's
    /// ServiceOffers and Services, payments through a shared facilitator.
    Gateway(Box<gateway::GatewayArgs>),
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
    let matches = Cli::command().get_matches();
    let json = json_asked(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Devnet(args) => devnet::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Facilitator(args) => facilitator::run(args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Sell(args) => sell::run(*args).await,
        Command::Index(args) => index::run(*args).await,
        Command::Discover(args) => discover::run(*args).await,
        Command::Wallet(args) => wallet::run(*args).await,
        Command::Pay(args) => pay::run(*args).await,
        Command::Mcp(args) => mcp::run(args).await,
        Command::Research(args) => research::run(*args).await,
        Command::Tunnel(args) => tunnel::run(*args).await,
        Command::Skills(args) => skills::run(*args).await,
        Command::Doctor(args) => doctor::run(*args).await,
        Command::Crd(args) => operator::crd(&args),
        Command::Operator(args) => operator::operator(*args).await,
        Command::Gateway(args) => gateway::run(*args).await,
    };
    match result {
        Ok(()) => exit::Code::Ok,
        Err(e) => report(&e, json),
    }
    .into()
}

/// Whether the command ran with `--json` (its own flag, or a global one of its
/// command tree, as declared today): then a failure is also one JSON object on stdout.
fn json_asked(matches: &ArgMatches) -> bool {
    matches!(matches.try_get_one::<bool>("json"), Ok(Some(true)))
        || matches.subcommand().is_some_and(|(_, sub)| json_asked(sub))
}

/// Reports a failed command once, whichever it was: `error: …` with the flag hint on
/// stderr and, with `--json`, `{"error", "kind", "exitCode"}` on stdout; a closed
/// stdout (`agora sell list | head -1`) ends it quietly, as the reader has what it
/// wanted.
fn report(error: &anyhow::Error, json: bool) -> exit::Code {
    let code = exit::code(error);
    if code == exit::Code::Ok {
        return code;
    }
    eprintln!("error: {}", hint::describe(error));
    if json {
        // Nothing is left to tell when stdout is gone as well; stderr has it.
        let _ = output::outln!("{}", exit::json_error(error));
    }
    code
}

#[cfg(test)]
mod tests {
    use clap::ArgAction;

    use super::*;

    /// Every `--json` of the command tree, as (command path, arg).
    fn json_flags(command: &clap::Command, path: &str, found: &mut Vec<(String, clap::Arg)>) {
        let path = [path, command.get_name()].join(" ").trim().to_string();
        for arg in command.get_arguments().filter(|a| a.get_id() == "json") {
            found.push((path.clone(), arg.clone()));
        }
        for sub in command.get_subcommands() {
            json_flags(sub, &path, found);
        }
    }

    #[test]
    fn every_json_flag_is_the_one_contract() {
        let mut found = Vec::new();
        json_flags(&Cli::command(), "", &mut found);
        assert!(found.len() > 10, "{found:?}");
        for (path, arg) in found {
            assert!(
                matches!(arg.get_action(), ArgAction::SetTrue),
                "{path}: --json must be a flag"
            );
            // `agora crd --json` chooses JSON over YAML for one document.
            if path != "agora crd" {
                assert_eq!(
                    arg.get_help().map(ToString::to_string).as_deref(),
                    Some(output::JSON_HELP),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn json_is_seen_at_any_depth_of_the_command() {
        let asked = |argv: &[&str]| {
            let matches = Cli::command()
                .try_get_matches_from(argv)
                .expect("valid flags");
            json_asked(&matches)
        };
        assert!(asked(&["agora", "wallet", "--json", "list"]));
        assert!(asked(&["agora", "wallet", "list", "--json"]));
        assert!(asked(&["agora", "pay", "http://h/x", "--json"]));
        assert!(asked(&[
            "agora",
            "research",
            "coordinator",
            "leaderboard",
            "--json"
        ]));
        assert!(!asked(&["agora", "wallet", "list"]));
        assert!(!asked(&["agora", "pay", "http://h/x", "-H", "X: --json"]));
    }
}
