//! A busy worker behind the x402 gate: `agora research worker` sold with `agora sell
//! http`, one experiment running, and a buyer's signed, paid `POST
//! /experiment` answered 409 by the worker: the gateway settles only 2xx answers, so
//! the chain shows no USDC moved and the buyer's ledger shows nothing settled.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::agora;
use serde_json::{Value, json};
use testkit::chain::{Parties, parties};
use testkit::daemon;
use testkit::process;

#[tokio::test]
async fn a_paid_call_to_a_busy_worker_gets_409_and_is_not_charged() {
    let dir = tempfile::tempdir().unwrap();
    let Parties {
        chain,
        facilitator_key,
        buyer_key,
        payee,
        buyer,
        ..
    } = parties(dir.path()).await;
    let repo = testkit::autoresearch::example_repo(dir.path());

    let home = dir.path().join("seller");
    let mut command = agora(&home);
    command
        .args([
            "research",
            "worker",
            "--repo",
            repo.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--data-dir",
        ])
        .arg(dir.path().join("worker"));
    let (mut worker, started) = daemon::spawn(command).await;
    let worker_url = started["url"].as_str().unwrap().to_string();
    assert_eq!(started["budgetSeconds"], 300);

    let (mut daemon, started) =
        daemon::serve(agora(&home), chain.rpc_url(), &facilitator_key, &[]).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let sold = process::ok(
        agora(&home),
        &[
            "sell",
            "http",
            "worker",
            "--upstream",
            &worker_url,
            "--price",
            "0.041667",
            "--pay-to",
            &payee.to_string(),
            "--no-register",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(sold["ready"], true, "{sold}");

    let buyer_home = dir.path().join("buyer");
    process::default_wallet(agora(&buyer_home), &buyer_key).await;

    let slow = tokio::spawn(
        testkit::http()
            .post(format!("{worker_url}/experiment"))
            .json(&json!({"train_py": "import time\ntime.sleep(6)\nprint('val_bpb: 1.0')\n", "experiment_id": "slow"}))
            .send(),
    );
    testkit::eventually("the worker to be busy", Duration::from_secs(10), || {
        let url = format!("{worker_url}/status");
        async move {
            let status: Value = testkit::get_json(&url).await;
            status["status"] == "busy"
        }
    })
    .await;
    let payee_before = chain.usdc_balance(payee).await.unwrap();
    let buyer_before = chain.usdc_balance(buyer).await.unwrap();
    let body = json!({"train_py": "print('val_bpb: 0.5')\n", "experiment_id": "paid"}).to_string();
    let paid = process::run(
        agora(&buyer_home),
        &[
            "pay",
            "-i",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            "--max",
            "0.05",
            &format!("{gateway}/services/worker/experiment"),
        ],
        None,
    )
    .await;
    assert!(
        paid.stdout.contains("409"),
        "{}\n{}",
        paid.stdout,
        paid.stderr
    );
    assert!(
        paid.stdout
            .contains(r#""error":"worker is already running an experiment""#),
        "the worker's answer reaches the buyer: {}",
        paid.stdout
    );
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap(),
        payee_before,
        "the payee gained nothing"
    );
    assert_eq!(
        chain.usdc_balance(buyer).await.unwrap(),
        buyer_before,
        "the buyer paid nothing"
    );
    let spent = process::ok(agora(&buyer_home), &["wallet", "spent", "--json"])
        .await
        .json();
    let entries = spent["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["status"] != "settled"), "{spent}");
    assert_eq!(slow.await.unwrap().unwrap().status().as_u16(), 200);
    assert!(
        !dir.path()
            .join("worker/autoresearch-worker/results/paid")
            .exists()
    );

    daemon.kill().await.unwrap();
    worker.kill().await.unwrap();
}
