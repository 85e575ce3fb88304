//! `agora pay URL`: the buyer's one command, curl's habits on top of the `buyer`
//! library (`x402::client` and the wallet's spending ledger). Here are the flags, their
//! conversion into a `buyer::RequestSpec` and `buyer::Limits`, the rendering
//! (show.rs) and the exit codes (exit.rs).
//!
//! The order is the money-safety argument (docs/security.md): the 402 is read and
//! judged against `--max`, the networks, the assets and what the ledger leaves of the
//! daily budget BEFORE anything is signed (a refusal exits 2 naming the price and the
//! flag); the signed authorization is written to the ledger, with its exact header,
//! BEFORE it is sent; and a lost answer is resent from that record (`--resume`, or the
//! one automatic retry), never signed anew, so it can be charged at most once.
//!
//! Exit codes (crate::exit's table): 0 answered (paid or free), 1 an error before
//! anything was signed or an I/O failure, 2 refused before signing, 3 sent but the
//! outcome is unknown or the paid answer arrived cut (run `agora pay --resume URL`), 4
//! the server refused the signed payment.

mod exit;
mod request;
mod show;

use alloy::primitives::Address;
use anyhow::bail;
use buyer::{Buyer, Limits, Paid, Quote, RequestSpec};
use clap::Args;
use wallet::budget::parse_usdc;
use wallet::home;
use x402::Network;

use crate::env;

pub use exit::failure;
use show::note;

/// `agora pay URL [flags]`.
#[derive(Debug, Args)]
pub struct PayArgs {
    /// The URL to call (and pay for when it answers 402).
    url: String,
    /// HTTP method (default: GET, or POST with -d).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// Request body: DATA, @FILE, or @- for stdin (sent byte for byte).
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    data: Option<String>,
    /// Request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Write the body to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Show the status line and headers before the body.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// Most USDC one call may cost, e.g. 0.01 (required unless
    /// `agora wallet budget --per-call` is set; the lower of the two applies).
    #[arg(long, value_name = "USDC")]
    max: Option<String>,
    /// Networks the payment may use, e.g. base-sepolia (repeatable; default: any
    /// network with known USDC).
    #[arg(long = "network", value_name = "NETWORK")]
    networks: Vec<String>,
    /// The wallet that pays (default: the default wallet, see `agora wallet list`).
    #[arg(long, env = env::PAY_WALLET, value_name = "NAME")]
    wallet: Option<String>,
    /// Also pay this token, NETWORK:ADDRESS (e.g. eip155:84532:0xabc…). Its
    /// decimals are taken as 6 (USDC's): --max and the budgets compare atomic units.
    #[arg(long = "allow-asset", value_name = "NETWORK:ADDRESS")]
    allow_assets: Vec<String>,
    /// A JSON-RPC of a chain to read the wallet's USDC from (repeatable): offers on
    /// a chain where it holds enough are preferred, and a price it cannot cover is
    /// refused before signing. Without it balances are not read.
    #[arg(long = "rpc", value_name = "URL")]
    rpcs: Vec<reqwest::Url>,
    /// Show the price and what would be signed; sign and pay nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send again the last signed authorization for this URL whose answer was lost
    /// or cut (from the ledger); never signs a new one.
    #[arg(long, conflicts_with = "dry_run")]
    resume: bool,
    /// Sign a new payment even though one for this URL is still open (sent, its
    /// outcome unknown, not yet expired): both may be charged. Without it `agora pay`
    /// refuses, naming --resume.
    #[arg(long = "new", conflicts_with = "resume")]
    new_payment: bool,
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

/// Buys `spec` as `agora pay` would, for the commands that buy (the research
/// coordinator, `agora discover` paying an indexer): the wallet of `AGORA_WALLET` (else
/// the default one), at most `max` USDC and the wallet's budgets, the ledger row
/// written before the payment is sent, the notes on stderr; a failure reads as
/// `agora pay`'s, exit code and hints included. The answer comes back whole.
pub async fn buy(spec: &RequestSpec, max: Option<&str>) -> anyhow::Result<Paid> {
    let url = spec.url.as_str();
    let (buyer, limits) = buyer(url, max)?;
    buyer.pay(spec, &limits).await.map_err(|e| failure(e, url))
}

/// The buyer and limits [`buy`] pays `url` with, for a command that hands them to a
/// library (the coordinator's `research::coordinator::Coordinator::buy`) and reports
/// its `PayError` through [`failure`].
pub fn buyer(url: &str, max: Option<&str>) -> anyhow::Result<(Buyer, Limits)> {
    let home = home::agora_home()?;
    let wallet = std::env::var(env::PAY_WALLET).ok();
    let buyer = Buyer::open(&home, wallet.as_deref())
        .map_err(|e| failure(e, url))?
        .on_note(note);
    let mut limits = Limits::new();
    if let Some(max) = max {
        limits = limits.max(parse_usdc("--max", max)?);
    }
    Ok((buyer, limits))
}

/// Runs `agora pay`: the free answer, the dry run, the paid call or `--resume`; a
/// stop carries its exit code and `--json` kind (exit.rs).
pub async fn run(args: PayArgs) -> anyhow::Result<()> {
    let home = home::agora_home()?;
    let buyer = Buyer::open(&home, args.wallet.as_deref())
        .map_err(|e| failure(e, &args.url))?
        .on_note(note);
    let spec = request::spec(
        &args.url,
        args.method.as_deref(),
        args.data.as_deref(),
        &args.headers,
    )?;
    let url = spec.url.to_string();
    let mut sink = show::Sink {
        file: args.output.clone(),
        head: args.include,
        json: args.json,
    };
    if args.resume {
        buyer
            .resume_to(&spec, &mut sink)
            .await
            .map_err(|e| failure(e, &url))?;
        return Ok(());
    }
    let limits = limits(&args)?;
    if args.dry_run {
        return match buyer.quote(&spec, &limits).await {
            Ok(Quote::Free(response)) => show::answer(response, &sink, None).await,
            Ok(Quote::Priced(preview)) => show::dry_run(&preview, args.json),
            Err(e) => Err(failure(e, &url)),
        };
    }
    buyer
        .pay_to(&spec, &limits, &mut sink)
        .await
        .map_err(|e| failure(e, &url))?;
    Ok(())
}

/// The limits from the flags: `--max`, `--network`, `--allow-asset`, `--rpc`, `--new`.
fn limits(args: &PayArgs) -> anyhow::Result<Limits> {
    let mut limits = Limits::new().new_while_open(args.new_payment);
    if let Some(max) = &args.max {
        limits = limits.max(parse_usdc("--max", max)?);
    }
    for text in &args.networks {
        let network = Network::parse(text).map_err(|e| {
            anyhow::anyhow!("--network {text:?}: {e}; write e.g. --network base-sepolia or --network eip155:84532")
        })?;
        limits = limits.network(network);
    }
    for text in &args.allow_assets {
        let (network, address) = allowed_asset(text)?;
        limits = limits.asset(network, address);
    }
    for rpc in &args.rpcs {
        limits = limits.balances_from(rpc.clone());
    }
    Ok(limits)
}

/// `--allow-asset NETWORK:ADDRESS`: the network may hold a colon itself (CAIP-2), so
/// the address is what follows the last one.
fn allowed_asset(text: &str) -> anyhow::Result<(Network, Address)> {
    let Some((network, address)) = text.trim().rsplit_once(':') else {
        bail!(
            "--allow-asset {text:?}: write NETWORK:ADDRESS, e.g. --allow-asset base-sepolia:0x036CbD53842c5426634e7929541eC2318f3dCF7e"
        );
    };
    let network = Network::parse(network).map_err(|e| {
        anyhow::anyhow!("--allow-asset {text:?}: {e}; write NETWORK:ADDRESS, e.g. base-sepolia:0x…")
    })?;
    let address: Address = address.parse().map_err(|_| {
        anyhow::anyhow!(
            "--allow-asset {text:?}: {address:?} is not a token address (0x and 40 hex digits)"
        )
    })?;
    Ok((network, address))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        pay: PayArgs,
    }

    fn args(argv: &[&str]) -> PayArgs {
        Cli::try_parse_from([&["agora", "http://h/x"], argv].concat())
            .expect("flags")
            .pay
    }

    #[test]
    fn the_flags_make_the_limits_and_bad_ones_name_the_flag() {
        let made = limits(&args(&[
            "--max",
            "0.01",
            "--network",
            "base-sepolia",
            "--new",
        ]))
        .expect("limits");
        assert_eq!(made.max, Some(alloy::primitives::U256::from(10_000)));
        assert_eq!(made.networks[0].chain_id(), Some(84532));
        assert!(made.new_while_open);
        let e = limits(&args(&["--max", "0.0000001"])).expect_err("too fine");
        assert!(e.to_string().contains("--max"), "{e}");
        let e = limits(&args(&["--network", "nowhere"])).expect_err("unknown network");
        assert!(e.to_string().contains("--network"), "{e}");
    }

    #[test]
    fn allow_asset_takes_caip2_and_v1_names() {
        let (a, _) = allowed_asset("eip155:84532:0x036CbD53842c5426634e7929541eC2318f3dCF7e")
            .expect("asset");
        assert_eq!(a.chain_id(), Some(84532));
        let (b, _) = allowed_asset("base-sepolia:0x036CbD53842c5426634e7929541eC2318f3dCF7e")
            .expect("asset");
        assert_eq!(a, b);
        let e = allowed_asset("base-sepolia").expect_err("no address");
        assert!(e.to_string().contains("NETWORK:ADDRESS"), "{e}");
    }
}
