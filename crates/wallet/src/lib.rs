//! agora's wallet: the buyer's named keys, its spending ledger and budgets, chain reads
//! of balances and authorizations, and `$AGORA_HOME`, where all of it lives.
//!
//! This is a library so that a Rust program can hold and spend agora's wallets without
//! the `agora` binary: the CLI (`agora wallet`, `agora pay`, `agora sell`, the daemon)
//! is one user of it. Keys are files under `$AGORA_HOME/keys` (see [`keys`]), read only
//! through [`keyfile`]'s checks; everything else the wallet keeps (the default wallet's
//! name, the budgets, the spending ledger) is one SQLite file, `$AGORA_HOME/wallet.db`,
//! separate from the daemon's `agora.db` so buying never waits on, or is locked by, a
//! running seller. The default wallet is the first one created or imported, or the one
//! named by `agora wallet use NAME`.
//!
//! # Example
//!
//! Create a wallet, set a per-call budget, record a payment within it and read it back:
//!
//! ```
//! use alloy::primitives::{Address, B256, U256};
//! use alloy::signers::local::PrivateKeySigner;
//! use wallet::budget::{Budget, parse_usdc};
//! use wallet::ledger::{NewEntry, Status};
//!
//! # fn main() -> anyhow::Result<()> {
//! let home = tempfile::tempdir()?; // stands for $AGORA_HOME
//! let store = wallet::open_store(home.path())?;
//! let signer = PrivateKeySigner::random();
//! wallet::keys::write_key(home.path(), "alice", &signer)?;
//! store.set_budget(&Budget { daily: None, per_call: Some(parse_usdc("per-call", "0.05")?) })?;
//!
//! let now = 1_700_000_000;
//! let entry = NewEntry {
//!     wallet: "alice",
//!     payer: signer.address(),
//!     url: "https://seller.example/api",
//!     network: "eip155:84532",
//!     asset: Address::ZERO,
//!     pay_to: Address::ZERO,
//!     amount: parse_usdc("price", "0.01")?,
//!     nonce: B256::random(),
//!     valid_before: now + 60,
//! };
//! let id = store
//!     .record_payment_within_budget(&entry, "{}", now)?
//!     .expect("0.01 USDC fits a 0.05 per-call budget");
//! store.mark_sent(id, now)?; // the signed header went out
//! store.mark_settled(id, "0xabc", now)?;
//!
//! let spent = store.entries_since(now - 1)?;
//! assert_eq!(spent[0].status, Status::Settled);
//! assert_eq!(store.spent_since(now - 1, now)?, U256::from(10_000u64));
//! assert_eq!(wallet::keys::address(home.path(), "alice")?, signer.address());
//! # Ok(())
//! # }
//! ```

pub mod budget;
pub mod chain;
pub mod env;
pub mod home;
pub mod keyfile;
pub mod keys;
pub mod ledger;
pub mod signed;

use std::path::Path;

use alloy::primitives::Address;
use anyhow::{Context, bail};

use self::ledger::Ledger;

/// The setting naming the default wallet.
pub const DEFAULT: &str = "default";

/// Opens `$AGORA_HOME/wallet.db`, creating the home (0700) when needed.
pub fn open_store(agora_home: &Path) -> anyhow::Result<Ledger> {
    home::create_private_dir(agora_home)?;
    Ledger::open(&agora_home.join("wallet.db"))
}

/// The default wallet's name and address, if there is one; reads nothing it would
/// have to create. Used by `agora sell` for a missing `payTo`.
pub fn default_wallet() -> anyhow::Result<Option<(String, Address)>> {
    let home = home::agora_home()?;
    if !home.join("wallet.db").exists() {
        return Ok(None);
    }
    let store = Ledger::open(&home.join("wallet.db"))?;
    let Some(name) = store.setting(DEFAULT)? else {
        return Ok(None);
    };
    let address = keys::address(&home, &name)
        .with_context(|| format!("the default wallet {name} cannot be read"))?;
    Ok(Some((name, address)))
}

/// The wallet `name`, else the default one; the error says what to type.
pub fn resolve_name(
    agora_home: &Path,
    store: &Ledger,
    name: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(name) = name {
        keys::check_name(name)?;
        return Ok(name.to_string());
    }
    if let Some(name) = store.setting(DEFAULT)? {
        return Ok(name);
    }
    if keys::names(agora_home)?.is_empty() {
        bail!(
            "no wallet yet; create one with: agora wallet new (or agora wallet import --name NAME --key-file FILE)"
        );
    }
    bail!(
        "no default wallet; pass --name NAME or choose one with: agora wallet use NAME (see agora wallet list)"
    )
}
