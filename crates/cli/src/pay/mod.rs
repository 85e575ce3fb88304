//! `agora pay URL`: the buyer's one command, curl's habits on top of `x402::client`
//! and the wallet's spending ledger.
//!
//! The order is the money-safety argument (docs/security.md): the 402 is read and
//! judged against `--max`, the networks, the assets and what the ledger leaves of the
//! daily budget BEFORE anything is signed (a refusal exits 2 naming the price and the
//! flag); the signed authorization is written to the ledger, with its exact header,
//! BEFORE it is sent; and a lost answer is resent from that record (`--resume`, or the
//! one automatic retry), never signed anew, so it can be charged at most once.
//!
//! Exit codes: 0 answered (paid or free), 1 an error before anything was signed or an
//! I/O failure, 2 refused before signing, 3 sent but the outcome is unknown or the
//! paid answer arrived cut (run `agora pay --resume URL`), 4 the server refused the
//! signed payment.

mod flow;
mod request;
mod show;

use alloy::primitives::{Address, U256};
use anyhow::bail;
use clap::Args;
use wallet::budget::parse_usdc;
use x402::Network;
use x402::client::{AllowedAsset, Policy, UNLISTED_ASSET_DECIMALS};

use crate::config;

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
    #[arg(long, env = config::PAY_WALLET, value_name = "NAME")]
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
    /// One JSON object: status, body (or file), receipt; or the refusal.
    #[arg(long)]
    json: bool,
}

impl PayArgs {
    /// A plain GET of `url` paid with the default wallet (or `AGORA_PAY_WALLET`'s),
    /// capped at `max` and the wallet's budgets, its body written to `output`. This
    /// is how other commands buy (`agora discover` paying an indexer): through the
    /// same flow as `agora pay`, so they get the same refusals before signing, the
    /// same ledger row written before sending, and the same `--resume`.
    pub fn get_to_file(url: &str, max: Option<String>, output: std::path::PathBuf) -> Self {
        Self {
            url: url.to_string(),
            method: None,
            data: None,
            headers: Vec::new(),
            output: Some(output),
            include: false,
            max,
            networks: Vec::new(),
            wallet: std::env::var(config::PAY_WALLET).ok(),
            allow_assets: Vec::new(),
            rpcs: Vec::new(),
            dry_run: false,
            resume: false,
            new_payment: false,
            json: false,
        }
    }

    /// A POST of the JSON in `body` (a file, sent byte for byte) to `url`, paid like
    /// [`PayArgs::get_to_file`]: how the research coordinator buys one experiment
    /// (`POST /experiment`), with `agora pay`'s refusals, ledger and `--resume`.
    pub fn post_json_to_file(
        url: &str,
        body: &std::path::Path,
        max: Option<String>,
        output: std::path::PathBuf,
    ) -> Self {
        Self {
            method: Some("POST".into()),
            data: Some(format!("@{}", body.display())),
            headers: vec!["Content-Type: application/json".into()],
            ..Self::get_to_file(url, max, output)
        }
    }
}

/// Why `agora pay` stopped, with the exit code that tells scripts which way.
#[derive(Debug)]
pub struct Exit {
    /// The process exit code (2, 3 or 4; see the module comment).
    pub code: u8,
    /// `refused`, `pending`, `unknown`, `incomplete` or `rejected`, for `--json`.
    pub kind: &'static str,
    /// What happened and what to type.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// Refused before signing: exit 2.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            kind: "refused",
            message: message.into(),
        }
    }
}

/// The exit code for an error `main` is about to print: [`Exit`]'s own, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Exit>())
        .map_or(1, |exit| exit.code)
}

/// Runs `agora pay`. With `--json` a stop also prints `{"error", "kind",
/// "exitCode"}` on stdout (`kind` is `error` for anything but a refusal or a
/// payment outcome), so scripts read one object either way.
pub async fn run(args: PayArgs) -> anyhow::Result<()> {
    let json = args.json;
    let result = flow::run(args).await;
    if json
        && let Err(e) = &result
        && !crate::output::is_stdout_closed(e)
    {
        let exit = e.chain().find_map(|c| c.downcast_ref::<Exit>());
        crate::output::outln!(
            "{}",
            serde_json::json!({
                "error": format!("{e:#}"),
                "kind": exit.map_or("error", |x| x.kind),
                "exitCode": exit_code(e),
            })
        )?;
    }
    result
}

/// The per-call cap: the lower of `--max` and the wallet's per-call budget, or
/// `None` when neither is set (a free answer or a dry run needs none; a 402 is then
/// refused naming its price). The bool says whether the wallet's budget is the
/// binding one, so a refusal names the right flag.
fn per_call_cap(max: Option<&str>, per_call: Option<U256>) -> anyhow::Result<Option<(U256, bool)>> {
    let max = max.map(|m| parse_usdc("--max", m)).transpose()?;
    Ok(match (max, per_call) {
        (Some(m), Some(p)) if p < m => Some((p, true)),
        (Some(m), _) => Some((m, false)),
        (None, Some(p)) => Some((p, true)),
        (None, None) => None,
    })
}

/// The refusal when a 402 meets no cap at all, naming the price it asks.
fn no_cap(price: &str) -> Exit {
    Exit::refused(format!(
        "the price is {price} and no spending cap is set: pass --max USDC (e.g. --max 0.01), or set one for every call with: agora wallet budget --per-call 0.01; nothing was signed"
    ))
}

/// The policy from the flags: cap, networks, extra assets.
fn policy(args: &PayArgs, cap: U256) -> anyhow::Result<Policy> {
    let mut policy = Policy::new(cap);
    for text in &args.networks {
        let network = Network::parse(text).map_err(|e| {
            anyhow::anyhow!("--network {text:?}: {e}; write e.g. --network base-sepolia or --network eip155:84532")
        })?;
        policy = policy.allow_network(network);
    }
    for text in &args.allow_assets {
        policy = policy.allow_asset(allowed_asset(text, cap)?);
    }
    Ok(policy)
}

/// `--allow-asset NETWORK:ADDRESS`: the network may hold a colon itself (CAIP-2), so
/// the address is what follows the last one.
fn allowed_asset(text: &str, cap: U256) -> anyhow::Result<AllowedAsset> {
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
    Ok(AllowedAsset {
        network,
        address,
        decimals: UNLISTED_ASSET_DECIMALS,
        symbol: format!("units of {}", address.to_checksum(None)),
        max_per_call: cap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_cap_applies_and_none_is_refused_with_what_to_type() {
        let p = Some(U256::from(5_000));
        assert_eq!(
            per_call_cap(Some("0.01"), p).expect("cap"),
            Some((U256::from(5_000), true))
        );
        assert_eq!(
            per_call_cap(Some("0.001"), p).expect("cap"),
            Some((U256::from(1_000), false))
        );
        assert_eq!(per_call_cap(None, None).expect("cap"), None);
        let e: anyhow::Error = no_cap("0.001 USDC on base-sepolia").into();
        assert_eq!(exit_code(&e), 2);
        assert!(e.to_string().contains("--max"), "{e}");
        let e = per_call_cap(Some("0.0000001"), None).expect_err("too fine");
        assert!(e.to_string().contains("--max"), "{e}");
    }

    #[test]
    fn allow_asset_takes_caip2_and_v1_names() {
        let a = allowed_asset(
            "eip155:84532:0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            U256::from(1),
        )
        .expect("asset");
        assert_eq!(a.network.chain_id(), Some(84532));
        assert_eq!(a.decimals, 6);
        let b = allowed_asset(
            "base-sepolia:0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            U256::from(1),
        )
        .expect("asset");
        assert_eq!(a.network, b.network);
        let e = allowed_asset("base-sepolia", U256::from(1)).expect_err("no address");
        assert!(e.to_string().contains("NETWORK:ADDRESS"), "{e}");
    }
}
