//! The CI-sized soak of agora's money promise: 1,000 paid requests (or
//! `AGORA_SOAK_REQUESTS`) at concurrency 32 (`AGORA_SOAK_CONCURRENCY`) against `agora
//! serve --rpc` on a devnet, with 10% upstream 500s, 5% replays, 5% authorizations
//! expiring too soon, 2% malformed headers and 5% buyers who spend their own nonce
//! while their call is at a slow upstream; every status is checked and the chain
//! must show each success charged once, nothing else charged, and the payee's balance
//! up by exactly price × served. The 10,000-request
//! run is `cargo bench -p agora --bench soak`, over the same harness
//! (`tests/it/support/soak.rs`).

#![allow(clippy::unwrap_used)]

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_of_paid_and_hostile_requests_charges_exactly_the_successes() {
    let config = support::soak::SoakConfig::from_env(1000, &[]);
    let report = support::soak::run(config).await;
    assert!(
        report.violations.is_empty(),
        "the soak broke the money promise or answered unexpectedly:\n{report}"
    );
    println!("{report}");
}
