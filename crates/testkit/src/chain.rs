//! The local chain every on-chain test starts from: a devnet with `accounts` funded
//! accounts and the default USDC and ETH.

use devnet::{Devnet, DevnetConfig};

/// Starts a devnet with `accounts` funded accounts (account 0 deploys and mints).
pub async fn devnet(accounts: usize) -> Devnet {
    Devnet::start(DevnetConfig {
        accounts,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts (run scripts/setup if anvil is missing)")
}
