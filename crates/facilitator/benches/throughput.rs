//! Facilitator throughput on a real devnet, each number against a baseline measured in
//! the same run:
//! - offline verification (no simulation) vs the bare secp256k1 recovery it needs;
//! - verify with `eth_call` simulation vs offline verification;
//! - concurrent settlement (all in flight at once) vs one-at-a-time settlement.
//!
//! `cargo bench -p facilitator --bench throughput` measures; without `--bench` (as
//! under `cargo test --all-targets`) it runs a small smoke pass so it stays working.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Signature, U256};
use alloy::signers::local::PrivateKeySigner;
use testkit::pay::{PRICE, request};
use x402::eip3009;
use x402::time::unix_now;
use x402::{Facilitator, FacilitatorRequest};

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (offline_n, verify_n, settle_n) = if measuring {
        (2000, 200, 100)
    } else {
        (20, 5, 4)
    };

    let chain = testkit::chain::devnet(2).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let requirement = testkit::pay::requirement(&chain, chain.accounts()[1].address(), 600);
    let payers: Vec<PrivateKeySigner> = (0..settle_n * 2)
        .map(|_| PrivateKeySigner::random())
        .collect();
    for payer in &payers {
        chain
            .mint_usdc(payer.address(), U256::from(PRICE * 10))
            .await
            .unwrap();
    }

    // Offline verification vs its ecrecover baseline.
    let sample = request(&payers[0], &requirement);
    let domain = eip3009::domain(
        "USDC",
        "2",
        chain.network().chain_id().unwrap(),
        requirement.asset,
    );
    let digest = eip3009::signing_hash(&sample.payment_payload.payload.authorization, &domain);
    let signature = Signature::from_raw(&sample.payment_payload.payload.signature).unwrap();
    let start = Instant::now();
    for _ in 0..offline_n {
        std::hint::black_box(signature.recover_address_from_prehash(&digest).unwrap());
    }
    let ecrecover = rate(offline_n, start.elapsed());
    // Each a payment never seen before: the verifier remembers recent signers, and a
    // repeat would be answered from memory rather than measured.
    let fresh: Vec<FacilitatorRequest> = (0..offline_n)
        .map(|i| request(&payers[i % payers.len()], &requirement))
        .collect();
    let start = Instant::now();
    for r in &fresh {
        std::hint::black_box(
            eip3009::verify_offline(&r.payment_payload, &requirement, unix_now()).unwrap(),
        );
    }
    let offline = rate(offline_n, start.elapsed());

    // Verify with simulation (each a fresh authorization, released after).
    let verifies: Vec<FacilitatorRequest> = (0..verify_n)
        .map(|i| request(&payers[i % payers.len()], &requirement))
        .collect();
    let start = Instant::now();
    for r in &verifies {
        assert!(facilitator.verify(r).await.unwrap().is_valid);
        facilitator.release(r).await.unwrap();
    }
    let simulated = rate(verify_n, start.elapsed());

    // Settlement: one at a time, then all at once.
    let sequential: Vec<FacilitatorRequest> = payers[..settle_n]
        .iter()
        .map(|p| request(p, &requirement))
        .collect();
    let start = Instant::now();
    for r in &sequential {
        assert!(facilitator.settle(r).await.unwrap().success);
    }
    let one_at_a_time = rate(settle_n, start.elapsed());
    let concurrent: Vec<FacilitatorRequest> = payers[settle_n..]
        .iter()
        .map(|p| request(p, &requirement))
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = concurrent
        .into_iter()
        .map(|r| {
            let f = Arc::clone(&facilitator);
            tokio::spawn(async move { f.settle(&r).await.unwrap().success })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    let all_at_once = rate(settle_n, start.elapsed());
    chain.stop().await;

    println!(
        "facilitator throughput ({} mode)",
        if measuring { "bench" } else { "smoke" }
    );
    println!("  ecrecover baseline          {ecrecover:>10.0} /s");
    println!(
        "  verify, offline             {offline:>10.0} /s  ({:.2}x of ecrecover)",
        offline / ecrecover
    );
    println!(
        "  verify, with eth_call       {simulated:>10.0} /s  ({:.3}x of offline)",
        simulated / offline
    );
    println!("  settle, one at a time       {one_at_a_time:>10.1} /s");
    println!(
        "  settle, {settle_n} concurrent        {all_at_once:>10.1} /s  ({:.2}x of one at a time)",
        all_at_once / one_at_a_time
    );
}
