//! The local chain every on-chain test starts from: a devnet with `accounts` funded
//! accounts and the default USDC and ETH, and the three parties of a sale on it.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use devnet::{Devnet, DevnetConfig};

use crate::process;

/// Starts a devnet with `accounts` funded accounts (account 0 deploys and mints).
pub async fn devnet(accounts: usize) -> Devnet {
    Devnet::start(DevnetConfig {
        accounts,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts (run scripts/setup if anvil is missing)")
}

/// Fails the test unless `tx` is mined on `chain` and succeeded: the chain, not what
/// a gateway or facilitator reported, is the judge of a settlement.
pub async fn assert_succeeded(chain: &Devnet, tx: B256) {
    let receipt = chain
        .provider()
        .unwrap()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("transaction {tx} is not mined"));
    assert!(receipt.status(), "transaction {tx} reverted on chain");
}

/// A devnet of three accounts in the roles the buy-and-sell tests give them: 0 the
/// facilitator that settles, 1 the seller who is paid, 2 the buyer who pays; with
/// their 0600 key files, so every test agrees on who is who.
pub struct Parties {
    /// The chain.
    pub chain: Devnet,
    /// Account 0's key: `agora serve --key-file`.
    pub facilitator_key: PathBuf,
    /// Account 1's key: the seller's wallet (`--registry-key-file`).
    pub seller_key: PathBuf,
    /// Account 2's key: the buyer's wallet.
    pub buyer_key: PathBuf,
    /// Account 1's address, where sales are paid.
    pub payee: Address,
    /// Account 2's address, whose USDC pays.
    pub buyer: Address,
}

/// Starts [`Parties`], writing their key files into `dir`.
pub async fn parties(dir: &Path) -> Parties {
    let chain = devnet(3).await;
    let key = |name, i| process::account_key_file(dir, name, &chain, i);
    let (facilitator_key, seller_key, buyer_key) = (
        key("facilitator.key", 0),
        key("seller.key", 1),
        key("buyer.key", 2),
    );
    Parties {
        payee: chain.accounts()[1].address(),
        buyer: chain.accounts()[2].address(),
        chain,
        facilitator_key,
        seller_key,
        buyer_key,
    }
}
