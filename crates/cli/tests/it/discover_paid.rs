//! Selling indexing (the seed's M3) through the `agora` binary: `agora index` on a
//! devnet, `agora serve --rpc` selling it as `agora sell http indexer`, and `agora
//! discover --indexer <gateway>/services/indexer --max` paying for the query the way
//! `agora pay` does (default wallet, ledger), refusing a price above `--max` with exit
//! 2 and no USDC moved. The chain is the judge of what was paid.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::support::agora;
use alloy::primitives::U256;
use serde_json::Value;
use testkit::chain::{Parties, parties};
use testkit::daemon;
use testkit::process;
use testkit::upstream::echo;

async fn run(home: &Path, args: &[&str]) -> process::Output {
    process::run(agora(home), args, None).await
}

async fn ok(home: &Path, args: &[&str]) -> Value {
    process::ok(agora(home), args).await.json()
}

#[tokio::test]
async fn discover_pays_an_indexer_sold_through_the_gateway_within_max() {
    let dir = tempfile::tempdir().unwrap();
    let Parties {
        chain,
        facilitator_key,
        seller_key,
        buyer_key,
        payee,
        buyer,
    } = parties(dir.path()).await;

    // agora index --rpc …
    let index_home = dir.path().join("indexer");
    let (_indexer, index_url) = daemon::index(agora(&index_home), chain.rpc_url()).await;

    // agora serve --rpc …, one registered seller to be found, and the indexer sold.
    let home = dir.path().join("seller");
    let (_daemon, started) = daemon::serve(
        agora(&home),
        chain.rpc_url(),
        &facilitator_key,
        &["--registry-key-file", seller_key.to_str().unwrap()],
    )
    .await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let upstream = testkit::loopback::serve(echo()).await;
    let pay_to = payee.to_string();
    let writer = ok(
        &home,
        &[
            "sell",
            "http",
            "writer",
            "--upstream",
            &upstream.url(),
            "--per-request",
            "0.001",
            "--pay-to",
            &pay_to,
            "--register-skills",
            "natural_language_processing/natural_language_generation/text_completion",
            "--register-domains",
            "technology/data_science",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await;
    assert_eq!(writer["ready"], true, "{writer}");
    let registered = ok(&home, &["sell", "register", "--json"]).await;
    assert!(registered["agentId"].is_string(), "{registered}");
    testkit::indexed(&index_url, 1, Duration::from_secs(30)).await;
    let sold = ok(
        &home,
        &[
            "sell",
            "http",
            "indexer",
            "--upstream",
            &index_url,
            "--per-request",
            "0.0001",
            "--pay-to",
            &pay_to,
            "--no-register",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await;
    assert_eq!(sold["ready"], true, "{sold}");
    let paid_indexer = format!("{gateway}/services/indexer");

    // The buyer's default wallet, as for agora pay.
    let buyer_home = dir.path().join("buyer");
    process::default_wallet(agora(&buyer_home), &buyer_key).await;

    // Above --max: exit 2, the price and the flag named, no USDC moves.
    let payee_before = chain.usdc_balance(payee).await.unwrap();
    let buyer_before = chain.usdc_balance(buyer).await.unwrap();
    let refused = run(
        &buyer_home,
        &[
            "discover",
            "--json",
            "--indexer",
            &paid_indexer,
            "--max",
            "0.00005",
        ],
    )
    .await;
    refused.exits_saying(2, &["0.0001 USDC", "--max"]);
    // --json: the failure is one object on stdout, as pay's.
    assert_eq!(refused.json()["kind"], "refused", "{}", refused.stdout);
    assert_eq!(refused.json()["exitCode"], 2, "{}", refused.stdout);
    assert_eq!(chain.usdc_balance(payee).await.unwrap(), payee_before);
    assert_eq!(chain.usdc_balance(buyer).await.unwrap(), buyer_before);

    // Within --max: the query is paid once, exactly the price, and answered.
    let out = run(
        &buyer_home,
        &[
            "discover",
            "--json",
            "--indexer",
            &paid_indexer,
            "--max",
            "0.001",
        ],
    )
    .await;
    out.exits_saying(0, &["paid 0.0001 USDC on base-sepolia, tx 0x"]);
    let found: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    let names: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["writer"], "{found}");
    let paid = chain.usdc_balance(payee).await.unwrap() - payee_before;
    assert_eq!(paid, U256::from(100), "the payee got exactly 0.0001 USDC");
    assert_eq!(
        buyer_before - chain.usdc_balance(buyer).await.unwrap(),
        U256::from(100)
    );

    // The ledger holds the payment, settled, like agora pay's.
    let spent = ok(&buyer_home, &["wallet", "spent", "--json"]).await;
    let entries = spent["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{spent}");
    assert_eq!(entries[0]["status"], "settled", "{spent}");
}
