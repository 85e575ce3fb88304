//! The full soak of agora's money promise: 10,000 paid requests at concurrency 32
//! against `agora serve --rpc` on a devnet, with 10% upstream 500s, 5% replays, 5%
//! authorizations expiring too soon and 2% malformed headers; it prints the summary
//! table and fails when any status or any charge on chain is not what it must be.
//!
//! `cargo bench -p agora --bench soak [-- --requests N --concurrency C]` (or
//! `AGORA_SOAK_REQUESTS`, `AGORA_SOAK_CONCURRENCY`, `AGORA_SOAK_SEED`). Without
//! `--bench` (as under `cargo test --all-targets`) it runs a 64-request smoke pass so
//! it keeps working; `tests/it/soak.rs` is the 1,000-request CI version.

#![allow(clippy::unwrap_used)]

#[path = "../tests/it/support/mod.rs"]
mod support;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench");
    let config = support::soak::SoakConfig::from_env(if measuring { 10_000 } else { 64 }, &args);
    let report = support::soak::run(config).await;
    println!("{report}");
    if !report.violations.is_empty() {
        eprintln!("soak FAILED: {} violations", report.violations.len());
        std::process::exit(1);
    }
}
