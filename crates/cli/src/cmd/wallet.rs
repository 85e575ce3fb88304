//! `agora wallet`: the buyer's keys, its default wallet, its budgets and what it spent.
//!
//! Keys are files under `$AGORA_HOME/keys` (see `wallet::keys`); everything else the wallet
//! keeps (the default wallet's name, the budgets, the spending ledger) is one SQLite
//! file, `$AGORA_HOME/wallet.db`, separate from the daemon's `agora.db` so buying never
//! waits on, or is locked by, a running seller. The default wallet is the first one
//! created or imported, or the one named by `agora wallet use NAME`; it pays for
//! `agora pay` and is the `payTo` of `agora sell` when none is set.
//!
//! Only `agora wallet export --yes` ever prints a private key.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Url;
use serde_json::json;
use wallet::budget::{Budget, parse_usdc, usdc_text};
use wallet::{DEFAULT, chain, home, keys, open_store, resolve_name};
use x402::Money;

use crate::output::outln;

/// `agora wallet` and its subcommands.
#[derive(Debug, Args)]
pub struct WalletArgs {
    #[command(subcommand)]
    command: WalletCommand,
    #[arg(long, global = true, help = crate::output::JSON_HELP)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create a new key (the first wallet becomes the default).
    New(NameOpt),
    /// Import a hex private key from a 0600 file, or from stdin with --key-file -.
    Import(ImportArgs),
    /// List the wallets and their addresses; * marks the default.
    List,
    /// Print a wallet's address.
    Address(NameOpt),
    /// Show a wallet's USDC and gas-coin balances on a network.
    Balance(BalanceArgs),
    /// Make NAME the default wallet (pays for `agora pay`, default payTo of `agora sell`).
    Use(UseArgs),
    /// Show or set the spending limits: --daily (rolling 24 h) and --per-call, in USDC.
    Budget(BudgetArgs),
    /// What was spent (settled, plus payments whose outcome is not known yet).
    Spent(SpentArgs),
    /// Print a wallet's private key (needs --yes).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
struct NameOpt {
    /// Wallet name [default: the default wallet; "default" for the first `new`].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Name for the imported wallet.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// File holding the hex private key (mode 0600), or - to read it from stdin.
    #[arg(long, value_name = "PATH")]
    key_file: PathBuf,
}

#[derive(Debug, Args)]
struct BalanceArgs {
    /// Wallet name [default: the default wallet].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Network, e.g. base-sepolia or eip155:84532 [default: base-sepolia, or the chain
    /// --rpc serves].
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// JSON-RPC endpoint [default: the network's public RPC (Base, Base Sepolia)].
    #[arg(long, value_name = "URL")]
    rpc: Option<Url>,
}

#[derive(Debug, Args)]
struct UseArgs {
    /// The wallet that becomes the default.
    name: String,
}

#[derive(Debug, Args)]
struct BudgetArgs {
    /// Most USDC all payments of the last 24 hours may add up to ("off" removes it).
    #[arg(long, value_name = "USDC")]
    daily: Option<String>,
    /// Most USDC one payment may cost ("off" removes it).
    #[arg(long, value_name = "USDC")]
    per_call: Option<String>,
}

#[derive(Debug, Args)]
struct SpentArgs {
    /// How far back, e.g. 24h, 30m, 168h.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    since: String,
    /// Before summing, ask this chain (`authorizationState`) about payments whose
    /// outcome is not known: used ones become settled, expired unused ones refused.
    #[arg(long, value_name = "URL")]
    rpc: Option<Url>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Wallet name [default: the default wallet].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Confirm printing the private key.
    #[arg(long)]
    yes: bool,
}

/// Runs one `agora wallet` command.
pub async fn run(args: WalletArgs) -> anyhow::Result<()> {
    let json = args.json;
    let home = home::agora_home()?;
    match args.command {
        WalletCommand::New(a) => create(&home, a.name, None, json),
        WalletCommand::Import(a) => {
            let signer = keys::read_import(&a.key_file)?;
            create(&home, Some(a.name), Some(signer), json)
        }
        WalletCommand::List => list(&home, json),
        WalletCommand::Address(a) => {
            let (name, address) = chosen(&home, a.name.as_deref())?;
            if json {
                outln!(
                    "{}",
                    json!({ "name": name, "address": address.to_string() })
                )
            } else {
                outln!("{address}")
            }
        }
        WalletCommand::Balance(a) => balance(&home, a, json).await,
        WalletCommand::Use(a) => use_wallet(&home, &a.name, json),
        WalletCommand::Budget(a) => set_budget(&home, a, json),
        WalletCommand::Spent(a) => spent(&home, &a, json).await,
        WalletCommand::Export(a) => export(&home, a, json),
    }
}

fn chosen(agora_home: &Path, name: Option<&str>) -> anyhow::Result<(String, Address)> {
    let store = open_store(agora_home)?;
    let name = resolve_name(agora_home, &store, name)?;
    let address = keys::address(agora_home, &name)?;
    Ok((name, address))
}

/// `new` (no signer: a random key) and `import`.
fn create(
    agora_home: &Path,
    name: Option<String>,
    signer: Option<PrivateKeySigner>,
    json: bool,
) -> anyhow::Result<()> {
    let name = name.unwrap_or_else(|| DEFAULT.to_string());
    keys::check_name(&name)?;
    let store = open_store(agora_home)?;
    let imported = signer.is_some();
    let signer = signer.unwrap_or_else(PrivateKeySigner::random);
    let path = keys::write_key(agora_home, &name, &signer)?;
    let became_default = match store.setting(DEFAULT)? {
        Some(current) if keys::key_path(agora_home, &current).exists() => false,
        _ => {
            store.set_setting(DEFAULT, Some(&name))?;
            true
        }
    };
    let address = signer.address();
    if json {
        return outln!(
            "{}",
            json!({
                "name": name,
                "address": address.to_string(),
                "keyFile": path,
                "imported": imported,
                "default": became_default,
            })
        );
    }
    let verb = if imported { "imported" } else { "created" };
    outln!(
        "{verb} wallet {name} {address} (key in {}, mode 0600)",
        path.display()
    )?;
    if became_default {
        outln!(
            "it is the default wallet: it pays for agora pay and receives agora sell's payments when no --pay-to is given"
        )?;
    } else {
        outln!("make it the default with: agora wallet use {name}")?;
    }
    outln!("fund it, then check with: agora wallet balance --name {name}")
}

fn list(agora_home: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_store(agora_home)?;
    let default = store.setting(DEFAULT)?;
    let mut wallets = Vec::new();
    for name in keys::names(agora_home)? {
        let is_default = default.as_deref() == Some(name.as_str());
        let address = keys::address(agora_home, &name).map_err(|e| format!("{e:#}"));
        wallets.push((name, is_default, address));
    }
    if json {
        let items: Vec<_> = wallets
            .iter()
            .map(|(name, is_default, address)| match address {
                Ok(a) => json!({ "name": name, "address": a.to_string(), "default": is_default }),
                Err(e) => json!({ "name": name, "error": e, "default": is_default }),
            })
            .collect();
        return outln!("{}", json!({ "wallets": items }));
    }
    if wallets.is_empty() {
        return outln!("no wallets yet; create one with: agora wallet new");
    }
    for (name, is_default, address) in wallets {
        let mark = if is_default { "*" } else { " " };
        match address {
            Ok(a) => outln!("{mark} {name:<20} {a}")?,
            Err(e) => outln!("{mark} {name:<20} unreadable: {e}")?,
        }
    }
    Ok(())
}

fn use_wallet(agora_home: &Path, name: &str, json: bool) -> anyhow::Result<()> {
    let address = keys::address(agora_home, name)?;
    let store = open_store(agora_home)?;
    store.set_setting(DEFAULT, Some(name))?;
    if json {
        outln!(
            "{}",
            json!({ "default": name, "address": address.to_string() })
        )
    } else {
        outln!("the default wallet is now {name} {address}")
    }
}

async fn balance(agora_home: &Path, a: BalanceArgs, json: bool) -> anyhow::Result<()> {
    let (name, address) = chosen(agora_home, a.name.as_deref())?;
    let chain = chain::connect(a.network.as_deref(), a.rpc.as_ref()).await?;
    let balances = chain.balances(address).await?;
    let usdc = Money::from_atomic(balances.usdc, x402::network::USDC_DECIMALS).to_string();
    let gas = Money::from_atomic(balances.gas, 18).to_string();
    let symbol = chain::gas_symbol(&chain.network);
    if json {
        return outln!(
            "{}",
            json!({
                "name": name,
                "address": address.to_string(),
                "network": chain.network.caip2(),
                "usdc": usdc,
                "usdcAtomic": balances.usdc.to_string(),
                "usdcAddress": balances.usdc_address.to_string(),
                "gas": gas,
                "gasAtomic": balances.gas.to_string(),
                "gasSymbol": symbol,
            })
        );
    }
    outln!(
        "wallet {name} {address} on {} ({}):",
        chain.network.v1_name(),
        chain.network.caip2()
    )?;
    outln!("  {usdc} USDC")?;
    outln!("  {gas} {symbol}")
}

fn limit(flag: &str, text: &str) -> anyhow::Result<Option<alloy::primitives::U256>> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let value = parse_usdc(flag, text)?;
    if value.is_zero() {
        bail!(
            "{flag} 0 would refuse every payment; give a positive amount, or {flag} off for no limit"
        );
    }
    Ok(Some(value))
}

fn set_budget(agora_home: &Path, a: BudgetArgs, json: bool) -> anyhow::Result<()> {
    let store = open_store(agora_home)?;
    let mut budget: Budget = store.budget()?;
    if let Some(text) = &a.daily {
        budget.daily = limit("--daily", text)?;
    }
    if let Some(text) = &a.per_call {
        budget.per_call = limit("--per-call", text)?;
    }
    if a.daily.is_some() || a.per_call.is_some() {
        store.set_budget(&budget)?;
    }
    let now = x402::time::unix_now();
    let remaining = store.remaining_daily_budget(now)?;
    if json {
        return outln!(
            "{}",
            json!({ "budget": budget.view(), "remainingDaily": remaining.map(usdc_text) })
        );
    }
    match (budget.daily, remaining) {
        (Some(daily), Some(left)) => outln!(
            "daily budget: {} USDC ({} USDC left in the last 24 h)",
            usdc_text(daily),
            usdc_text(left)
        )?,
        _ => outln!("daily budget: none (set one with: agora wallet budget --daily 1.00)")?,
    }
    match budget.per_call {
        Some(cap) => outln!("per call:     {} USDC", usdc_text(cap)),
        None => outln!(
            "per call:     none (agora pay then needs --max; set one with: agora wallet budget --per-call 0.05)"
        ),
    }
}

async fn spent(agora_home: &Path, a: &SpentArgs, json: bool) -> anyhow::Result<()> {
    let window =
        offers::validate::parse_duration(&a.since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let store = open_store(agora_home)?;
    if let Some(rpc) = &a.rpc {
        let chain = chain::connect(None, Some(rpc)).await?;
        let network = chain.network.caip2();
        let now = x402::time::unix_now();
        let chain = &chain;
        let changed = store
            .resolve_open(now, |e| {
                let same = e.network == network;
                async move {
                    if !same {
                        bail!("it is on {}, not on the --rpc chain", e.network);
                    }
                    chain.authorization_state(e.asset, e.payer, e.nonce).await
                }
            })
            .await?;
        if !json && changed > 0 {
            outln!("{changed} payment(s) resolved on chain")?;
        }
    }
    let now = x402::time::unix_now();
    let since = now.saturating_sub(window.as_secs());
    let entries = store.entries_since(since)?;
    let total = store.spent_since(since, now)?;
    let remaining = store.remaining_daily_budget(now)?;
    if json {
        return outln!(
            "{}",
            json!({
                "since": x402::time::format_rfc3339(since),
                "spent": usdc_text(total),
                "spentAtomic": total.to_string(),
                "remainingDaily": remaining.map(usdc_text),
                "entries": entries,
            })
        );
    }
    outln!(
        "spent since {}: {} USDC (settled, plus payments not known to have failed that are still valid)",
        x402::time::format_rfc3339(since),
        usdc_text(total)
    )?;
    if let Some(left) = remaining {
        outln!("left of the daily budget: {} USDC", usdc_text(left))?;
    }
    for e in &entries {
        let counted = if e.counts_at(now) {
            ""
        } else {
            " (not counted)"
        };
        outln!(
            "  {}  {:<8} {} to {} for {}{}{}",
            x402::time::format_rfc3339(e.signed_at),
            serde_json::to_value(e.status)?.as_str().unwrap_or("?"),
            usdc_text(e.amount),
            e.pay_to,
            e.url,
            e.tx.as_deref()
                .map(|tx| format!(", tx {tx}"))
                .unwrap_or_default(),
            counted
        )?;
    }
    Ok(())
}

fn export(agora_home: &Path, a: ExportArgs, json: bool) -> anyhow::Result<()> {
    let store = open_store(agora_home)?;
    let name = resolve_name(agora_home, &store, a.name.as_deref())?;
    if !a.yes {
        bail!(
            "agora wallet export prints the private key of wallet {name}, and whoever sees it can spend its money; if that is what you want, type:\n  agora wallet export --name {name} --yes"
        );
    }
    let signer = keys::load(agora_home, &name)?;
    let key = signer.to_bytes();
    if json {
        outln!(
            "{}",
            json!({ "name": name, "address": signer.address().to_string(), "privateKey": key.to_string() })
        )
    } else {
        outln!("{key}")
    }
}
