//! Group-commit settlement on a real devnet (with its Multicall3): two transactions
//! leave at once, and settlements queued behind them leave as one `aggregate3`
//! transaction; a member that fails inside it is not charged and fails no other
//! member; and a batch that a crash leaves unmined is resolved member by member after
//! a restart. Verify simulations queued behind one in flight share one `eth_call`,
//! and a batch never refuses a payment on its own.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use devnet::Devnet;
use facilitator::store::SettlementStatus;
use facilitator::{BatchConfig, EmbeddedFacilitator, MULTICALL3};
use testkit::pay::PRICE;
use x402::{Facilitator, FacilitatorRequest, PaymentRequirements, SettleResponse, VerifyResponse};

const BATCH: BatchConfig = BatchConfig {
    max_size: 32,
    max_wait: Duration::from_millis(300),
};

async fn open(
    chain: &Devnet,
    dir: &std::path::Path,
    receipt_timeout: Duration,
) -> Arc<EmbeddedFacilitator> {
    let mut config = testkit::embedded::config(chain, dir);
    config.batch = BATCH;
    config.receipt_timeout = receipt_timeout;
    testkit::embedded::open(config).await
}

/// `n` funded payers, each with one verified (reserved and simulated) payment, plus
/// a spoiled one: verified, then its funds moved by another authorization settled
/// first, so it can only fail inside a batch.
async fn verified(
    chain: &Devnet,
    facilitator: &EmbeddedFacilitator,
    requirement: &PaymentRequirements,
    n: usize,
) -> (Vec<FacilitatorRequest>, FacilitatorRequest, Address) {
    let mut good = Vec::new();
    for _ in 0..n {
        let payer = PrivateKeySigner::random();
        chain
            .mint_usdc(payer.address(), U256::from(PRICE))
            .await
            .unwrap();
        let request = testkit::pay::request(&payer, requirement);
        assert!(facilitator.verify(&request).await.unwrap().is_valid);
        good.push(request);
    }
    let spoiled_payer = PrivateKeySigner::random();
    chain
        .mint_usdc(spoiled_payer.address(), U256::from(PRICE))
        .await
        .unwrap();
    let spoiled = testkit::pay::request(&spoiled_payer, requirement);
    assert!(facilitator.verify(&spoiled).await.unwrap().is_valid);
    let first = testkit::pay::request(&spoiled_payer, requirement);
    assert!(facilitator.settle(&first).await.unwrap().success);
    (good, spoiled, spoiled_payer.address())
}

async fn settle_all(
    facilitator: &Arc<EmbeddedFacilitator>,
    requests: &[FacilitatorRequest],
) -> Vec<SettleResponse> {
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let f = Arc::clone(facilitator);
            tokio::spawn(async move { f.settle(&request).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn queued_settlements_share_one_transaction_and_a_failed_member_is_not_charged() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = open(&chain, dir.path(), Duration::from_secs(30)).await;
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 600);
    let (good, spoiled, spoiled_payer) = verified(&chain, &facilitator, &requirement, 24).await;
    let seller_before = chain.usdc_balance(seller).await.unwrap();

    let mut all = good.clone();
    all.insert(good.len() / 2, spoiled);
    let answers = settle_all(&facilitator, &all).await;

    let mut members: HashMap<B256, usize> = HashMap::new();
    for (request, answer) in all.iter().zip(&answers) {
        let from = request.payment_payload.payload.authorization.from;
        if from == spoiled_payer {
            assert!(!answer.success, "the spoiled member fails: {answer:?}");
        } else {
            assert!(answer.success, "{answer:?}");
            *members.entry(answer.transaction.unwrap()).or_default() += 1;
        }
    }
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64),
        "every good member paid exactly once, the failed one nothing"
    );
    assert_eq!(chain.usdc_balance(spoiled_payer).await.unwrap(), U256::ZERO);
    let provider = chain.provider().unwrap();
    let mut batched = 0;
    for (hash, count) in &members {
        let receipt = provider
            .get_transaction_receipt(*hash)
            .await
            .unwrap()
            .unwrap();
        if *count > 1 {
            assert_eq!(
                receipt.to,
                Some(MULTICALL3),
                "a shared transaction is a batch"
            );
            batched += count;
        }
    }
    assert!(
        batched >= good.len() / 2,
        "settlements queued behind the first transaction left together: {members:?}"
    );
    let journal = facilitator.journal().unwrap();
    let failed: Vec<_> = journal
        .iter()
        .filter(|s| s.status == SettlementStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].payer, spoiled_payer);
    assert!(
        failed[0].error.as_deref().unwrap().contains("inside batch"),
        "{:?}",
        failed[0].error
    );
    // Settling a member again answers its original receipt and moves nothing.
    let again = facilitator.settle(&good[0]).await.unwrap();
    assert!(again.success);
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64)
    );
    chain.stop().await;
}

#[tokio::test]
async fn a_batch_left_unmined_by_a_crash_is_resolved_per_member_after_restart() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 600);
    let facilitator = open(&chain, dir.path(), Duration::from_millis(500)).await;
    let (good, spoiled, spoiled_payer) = verified(&chain, &facilitator, &requirement, 12).await;
    let seller_before = chain.usdc_balance(seller).await.unwrap();

    // Blocks stop: every settlement is journaled and broadcast, none mines. The
    // first leaves alone, the rest queue behind it and leave as batches.
    chain.set_automine(false).await.unwrap();
    let mut all = good.clone();
    all.push(spoiled.clone());
    let answers = settle_all(&facilitator, &all).await;
    for answer in &answers {
        assert!(!answer.success, "nothing is mined yet: {answer:?}");
        assert!(answer.transaction.is_some(), "pending, with its hash");
    }
    let sent: Vec<_> = facilitator.journal().unwrap();
    assert!(
        sent.iter()
            .filter(|s| s.payer != spoiled_payer || s.tx_hash.is_some())
            .all(|s| s.status != SettlementStatus::Pending)
    );
    // The crash: the process and everything in memory are gone, the journal stays.
    drop(facilitator);
    chain.mine().await.unwrap();
    chain.set_automine(true).await.unwrap();

    let restarted = open(&chain, dir.path(), Duration::from_secs(30)).await;
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64),
        "each good member settled exactly once, the spoiled one not at all"
    );
    let journal = restarted.journal().unwrap();
    for row in journal.iter().filter(|s| s.tx_hash.is_some()) {
        let want = if row.payer == spoiled_payer
            && row.nonce == spoiled.payment_payload.payload.authorization.nonce
        {
            SettlementStatus::Failed
        } else {
            SettlementStatus::Confirmed
        };
        assert_eq!(row.status, want, "{row:?}");
    }
    for request in &good {
        let answer = restarted.settle(request).await.unwrap();
        assert!(answer.success, "the same authorization answers its receipt");
    }
    let answer = restarted.settle(&spoiled).await.unwrap();
    assert!(
        !answer.success,
        "the spoiled member is refused, never charged"
    );
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64)
    );
    chain.stop().await;
}

#[tokio::test]
async fn an_idle_facilitator_sends_at_once_alone_and_counts_its_rpc_calls() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = open(&chain, dir.path(), Duration::from_secs(30)).await;
    let requirement = testkit::pay::requirement(&chain, chain.accounts()[1].address(), 600);
    let payer = PrivateKeySigner::random();
    chain
        .mint_usdc(payer.address(), U256::from(PRICE))
        .await
        .unwrap();
    let request = testkit::pay::request(&payer, &requirement);
    assert!(facilitator.verify(&request).await.unwrap().is_valid);
    let answer = facilitator.settle(&request).await.unwrap();
    assert!(answer.success);
    let receipt = chain
        .provider()
        .unwrap()
        .get_transaction_receipt(answer.transaction.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        receipt.to,
        Some(requirement.asset),
        "with nothing in flight a settlement leaves alone, not through Multicall3"
    );

    let server = testkit::loopback::serve(facilitator::metrics_router(facilitator.clone())).await;
    let text = testkit::http()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for method in ["eth_call", "eth_sendRawTransaction"] {
        assert!(
            text.contains(&format!(
                "agora_facilitator_rpc_calls_total{{method=\"{method}\"}} 1\n"
            )),
            "{method} counted once: {text}"
        );
    }
    assert!(
        !text.contains("eth_estimateGas"),
        "a verified USDC payment is not simulated twice: {text}"
    );
    chain.stop().await;
}

#[tokio::test]
async fn without_multicall3_on_the_chain_batching_turns_itself_off_and_every_payment_settles_alone()
{
    let chain = testkit::chain::devnet(2).await;
    let provider = chain.provider().unwrap();
    let _: serde_json::Value = provider
        .raw_request("anvil_setCode".into(), (MULTICALL3, "0x"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let facilitator = open(&chain, dir.path(), Duration::from_secs(30)).await;
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 600);
    let (good, spoiled, spoiled_payer) = verified(&chain, &facilitator, &requirement, 8).await;
    let seller_before = chain.usdc_balance(seller).await.unwrap();

    let mut all = good.clone();
    all.push(spoiled);
    let answers = settle_all(&facilitator, &all).await;

    let mut hashes = std::collections::HashSet::new();
    for (request, answer) in all.iter().zip(&answers) {
        if request.payment_payload.payload.authorization.from == spoiled_payer {
            assert!(!answer.success, "the spoiled payment fails: {answer:?}");
            continue;
        }
        assert!(answer.success, "{answer:?}");
        let hash = answer.transaction.unwrap();
        assert!(hashes.insert(hash), "no two payments share a transaction");
        let receipt = provider
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(
            receipt.to,
            Some(MULTICALL3),
            "nothing went to the empty address"
        );
    }
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64),
        "every payment settled exactly once, alone"
    );
    chain.stop().await;
}

/// Verifies of `requests`, all at once.
async fn verify_all(
    facilitator: &Arc<EmbeddedFacilitator>,
    requests: &[FacilitatorRequest],
) -> Vec<VerifyResponse> {
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let f = Arc::clone(facilitator);
            tokio::spawn(async move { f.verify(&request).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn eth_calls(facilitator: &EmbeddedFacilitator) -> u64 {
    facilitator
        .rpc_calls()
        .get("eth_call")
        .copied()
        .unwrap_or(0)
}

/// A random payer holding `payments` payments' worth of USDC.
async fn payer(chain: &Devnet, payments: u64) -> PrivateKeySigner {
    let payer = PrivateKeySigner::random();
    chain
        .mint_usdc(payer.address(), U256::from(PRICE * payments))
        .await
        .unwrap();
    payer
}

#[tokio::test]
async fn concurrent_verifies_share_simulation_calls_and_a_member_failing_inside_one_is_refused_as_alone()
 {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = open(&chain, dir.path(), Duration::from_secs(30)).await;
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 600);
    let mut good = Vec::new();
    for _ in 0..30 {
        good.push(testkit::pay::request(&payer(&chain, 1).await, &requirement));
    }
    // Two payments of a payer who can afford one: inside one batch the second fails
    // (the first spent the funds), alone each passes, as today.
    let twice = payer(&chain, 1).await;
    let twins = [
        testkit::pay::request(&twice, &requirement),
        testkit::pay::request(&twice, &requirement),
    ];
    // A payer whose funds an earlier payment moved: refused, with today's reason.
    let spent = payer(&chain, 1).await;
    let first = testkit::pay::request(&spent, &requirement);
    assert!(facilitator.verify(&first).await.unwrap().is_valid);
    assert!(facilitator.settle(&first).await.unwrap().success);
    let spoiled = testkit::pay::request(&spent, &requirement);

    let mut all = good.clone();
    all.insert(good.len() / 2, spoiled.clone());
    all.extend(twins.iter().cloned());
    let before = eth_calls(&facilitator);
    let answers = verify_all(&facilitator, &all).await;
    let calls = eth_calls(&facilitator) - before;

    let refused: Vec<_> = answers.iter().filter(|a| !a.is_valid).collect();
    assert_eq!(
        refused.len(),
        1,
        "only the spoiled payment is refused: {answers:?}"
    );
    assert_eq!(refused[0].payer, Some(spent.address()));
    assert_eq!(
        refused[0].invalid_reason.as_deref(),
        Some("insufficient_funds"),
        "{:?}",
        refused[0]
    );
    // The refusal released the authorization: verified again, alone, it answers the
    // same.
    let alone = facilitator.verify(&spoiled).await.unwrap();
    assert_eq!(
        &alone, refused[0],
        "a batch refuses as a single simulation does"
    );
    // Alone, the 33 verifies would make 33 simulations plus the spoiled one's four
    // diagnostic reads; queued behind each other they share a few.
    assert!(
        calls <= all.len() as u64 / 2,
        "{} verifies made {calls} eth_calls",
        all.len()
    );

    // What the batches called valid is: each good payment settles and pays once.
    let seller_before = chain.usdc_balance(seller).await.unwrap();
    for answer in settle_all(&facilitator, &good).await {
        assert!(answer.success, "{answer:?}");
    }
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64)
    );
    chain.stop().await;
}

#[tokio::test]
async fn a_payer_funded_only_by_an_earlier_member_of_the_same_batch_is_still_refused() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = open(&chain, dir.path(), Duration::from_secs(30)).await;
    let seller = chain.accounts()[1].address();
    let to_seller = testkit::pay::requirement(&chain, seller, 600);
    // Each broke payer would be paid by a funded one; only a settlement, not a
    // simulation, may fund it.
    let mut all = Vec::new();
    let mut broke = Vec::new();
    for _ in 0..12 {
        let poor = PrivateKeySigner::random();
        let to_poor = testkit::pay::requirement(&chain, poor.address(), 600);
        all.push(testkit::pay::request(&payer(&chain, 1).await, &to_poor));
        all.push(testkit::pay::request(&poor, &to_seller));
        broke.push(poor.address());
    }
    let answers = verify_all(&facilitator, &all).await;
    for answer in answers {
        let payer = answer.payer.unwrap();
        if broke.contains(&payer) {
            assert!(!answer.is_valid, "{answer:?}");
            assert_eq!(answer.invalid_reason.as_deref(), Some("insufficient_funds"));
        } else {
            assert!(answer.is_valid, "{answer:?}");
        }
    }
    chain.stop().await;
}

/// Where `request`'s settlement stands in the journal: its status and transaction.
fn row_of(
    facilitator: &EmbeddedFacilitator,
    request: &FacilitatorRequest,
) -> Option<(SettlementStatus, Option<B256>)> {
    let nonce = request.payment_payload.payload.authorization.nonce;
    facilitator
        .journal()
        .unwrap()
        .into_iter()
        .rfind(|row| row.nonce == nonce)
        .map(|row| (row.status, row.tx_hash))
}

async fn until_sent(facilitator: &EmbeddedFacilitator, request: &FacilitatorRequest) -> B256 {
    testkit::until(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            match row_of(facilitator, request) {
                Some((SettlementStatus::Sent, Some(hash))) => Ok(hash),
                other => Err(format!("not sent yet: {other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn two_transactions_leave_at_once_and_what_queues_behind_them_waits_for_one_to_mine() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 600);
    let mut config = testkit::embedded::config(&chain, dir.path());
    config.batch = BatchConfig {
        max_size: 32,
        max_wait: Duration::from_secs(60),
    };
    config.receipt_timeout = Duration::from_secs(60);
    let facilitator = testkit::embedded::open(config).await;
    let (good, _, _) = verified(&chain, &facilitator, &requirement, 6).await;
    let seller_before = chain.usdc_balance(seller).await.unwrap();

    // Blocks stop. The first two settlements each leave at once, alone, under
    // consecutive signer nonces; the rest queue behind them.
    chain.set_automine(false).await.unwrap();
    let settle = |request: &FacilitatorRequest| {
        let (f, request) = (Arc::clone(&facilitator), request.clone());
        tokio::spawn(async move { f.settle(&request).await.unwrap() })
    };
    let mut tasks = vec![settle(&good[0])];
    let first = until_sent(&facilitator, &good[0]).await;
    tasks.push(settle(&good[1]));
    let second = until_sent(&facilitator, &good[1]).await;
    assert_ne!(first, second, "two transactions in flight");
    tasks.extend(good[2..].iter().map(settle));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for request in &good[2..] {
        assert_eq!(
            row_of(&facilitator, request),
            Some((SettlementStatus::Pending, None)),
            "with two in flight the rest wait"
        );
    }

    // One block mines both; the queue then leaves as one batch.
    chain.mine().await.unwrap();
    let batch = until_sent(&facilitator, &good[2]).await;
    for request in &good[3..] {
        assert_eq!(until_sent(&facilitator, request).await, batch);
    }
    chain.mine().await.unwrap();
    chain.set_automine(true).await.unwrap();
    for task in tasks {
        assert!(task.await.unwrap().success);
    }
    let provider = chain.provider().unwrap();
    let nonce_of = |hash: B256| {
        let provider = provider.clone();
        async move {
            use alloy::consensus::Transaction;
            provider
                .get_transaction_by_hash(hash)
                .await
                .unwrap()
                .unwrap()
                .nonce()
        }
    };
    assert_eq!(nonce_of(second).await, nonce_of(first).await + 1);
    assert_eq!(nonce_of(batch).await, nonce_of(second).await + 1);
    let receipt = provider
        .get_transaction_receipt(batch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.to, Some(MULTICALL3));
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE * good.len() as u64),
        "each settled exactly once"
    );
    chain.stop().await;
}
