//! Batches fit in one transaction (issue 21, M4): a batch's gas limit is a frame plus
//! the per-settlement cap for each member, so `--batch-max 256` (or a raised
//! `--gas-limit-cap`) used to sign transactions over the block gas limit and the
//! EIP-7825 cap of 2^24; the node refused each one and every member, already served,
//! went unpaid. On a devnet (block gas limit 30M) with a cap of 1M gas per settlement
//! and `--batch-max 256`, a burst of settlements that queue behind the ones in flight
//! must all be paid, each in a transaction whose gas limit is within both limits.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use facilitator::BatchConfig;
use testkit::pay::PRICE;
use x402::Facilitator;

const PER_SETTLEMENT_GAS: u64 = 1_000_000;

#[tokio::test]
async fn batch_max_256_is_clamped_so_a_burst_still_settles_within_the_gas_limits() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(&chain, dir.path());
    config.batch = BatchConfig {
        max_size: 256,
        max_wait: Duration::from_millis(300),
    };
    config.gas_limit_cap = PER_SETTLEMENT_GAS;
    let facilitator = testkit::embedded::open(config).await;
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 300);

    let mut requests = Vec::new();
    for _ in 0..40 {
        let payer = PrivateKeySigner::random();
        chain
            .mint_usdc(payer.address(), U256::from(PRICE))
            .await
            .unwrap();
        let request = testkit::pay::request(&payer, &requirement);
        // Verified first, as a gateway does: a verified payment may join a batch.
        assert!(facilitator.verify(&request).await.unwrap().is_valid);
        requests.push(request);
    }
    let before = chain.usdc_balance(seller).await.unwrap();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let f = Arc::clone(&facilitator);
            tokio::spawn(async move { f.settle(&request).await.unwrap() })
        })
        .collect();
    let mut hashes = HashSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(answer.success, "{answer:?}");
        hashes.insert(answer.transaction.unwrap());
    }
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap(),
        before + U256::from(PRICE * 40),
        "every member was paid"
    );
    let provider = chain.provider().unwrap();
    let block_limit = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .gas_limit;
    let limit = block_limit.min(1 << 24);
    assert!(hashes.len() > 2, "the burst was batched: {hashes:?}");
    for hash in hashes {
        let tx = provider
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .unwrap();
        let gas = alloy::consensus::Transaction::gas_limit(&tx);
        assert!(gas <= limit, "{hash}: gas limit {gas} over {limit}");
    }
}
