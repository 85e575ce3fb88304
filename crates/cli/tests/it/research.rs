//! Autoresearch end to end through the `agora` binary on a devnet: `agora sell
//! research` (the daemon runs the worker as its child) behind the real gateway and
//! the embedded facilitator, found through `agora index` by `agora research
//! coordinator` (discover → probe → submit, paid like `agora pay` → result →
//! leaderboard). The chain judges the money: the payee gains exactly the per-hour
//! derived price, 0.50 USDC/h × 300 s rounded UP to the next atomic unit = 41 667,
//! and a busy worker is not paid at all.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::support::agora;
use alloy::primitives::U256;
use serde_json::{Value, json};
use testkit::chain::{Parties, parties};
use testkit::daemon::{self, stop};
use testkit::process;
use tokio::process::Command;

/// 0.50 USDC/h × 300 s / 3600 s = 41 666.67 atomic units, rounded up.
const PER_RUN_ATOMIC: u64 = 41_667;

async fn run(home: &Path, args: &[&str]) -> process::Output {
    process::run(agora(home), args, None).await
}

async fn ok(home: &Path, args: &[&str]) -> Value {
    process::ok(agora(home), args).await.json()
}

#[tokio::test]
async fn a_coordinator_finds_pays_and_ranks_a_worker_sold_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let Parties {
        chain,
        facilitator_key,
        seller_key,
        buyer_key,
        payee,
        buyer,
    } = parties(dir.path()).await;

    // The worker's repository: the shipped example.
    let repo = testkit::autoresearch::example_repo(dir.path());

    let index_home = dir.path().join("indexer");
    let (_indexer, index_url) = daemon::index(agora(&index_home), chain.rpc_url()).await;

    let home = dir.path().join("seller");
    let (daemon, started) = daemon::serve(
        agora(&home),
        chain.rpc_url(),
        &facilitator_key,
        &["--registry-key-file", seller_key.to_str().unwrap()],
    )
    .await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();

    // agora sell research: per hour, the worker run by the daemon.
    let pay_to = payee.to_string();
    let sold = ok(
        &home,
        &[
            "sell",
            "research",
            "worker",
            "--repo",
            repo.to_str().unwrap(),
            "--per-hour",
            "0.50",
            "--pay-to",
            &pay_to,
            "--wait",
            "60",
            "--json",
        ],
    )
    .await;
    assert_eq!(sold["ready"], true, "{sold}");
    let offer = &sold["offer"]["spec"];
    assert_eq!(
        offer["payment"]["price"]["perRequest"], "0.041667",
        "{sold}"
    );
    // One run at a time, and the gateway waits out budget 300 + grace 120 + 30 s.
    assert_eq!(offer["limits"]["maxInFlight"], 1, "{sold}");
    assert_eq!(offer["limits"]["timeoutSeconds"], 450, "{sold}");
    assert_eq!(
        offer["registration"]["skills"],
        json!(["devops_mlops/model_versioning"])
    );
    assert_eq!(
        offer["registration"]["domains"],
        json!(["research_and_development/scientific_research"])
    );
    let worker_url = format!(
        "http://{}",
        sold["offer"]["metadata"]["annotations"]["research.agora/listen"]
            .as_str()
            .unwrap()
    );
    let registered = ok(&home, &["sell", "register", "--json"]).await;
    let agent_id = registered["agentId"].as_str().unwrap().to_string();
    testkit::indexed(&index_url, 1, Duration::from_secs(30)).await;
    let endpoint = format!("{gateway}/services/worker");

    // The buyer's default wallet, as for agora pay.
    let buyer_home = dir.path().join("buyer");
    process::default_wallet(agora(&buyer_home), &buyer_key).await;
    let coordinator = |args: &[&str]| {
        let mut all = vec![
            "research",
            "coordinator",
            "--indexer",
            index_url.as_str(),
            "--json",
        ];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let call = |args: Vec<String>| {
        let buyer_home = buyer_home.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&buyer_home, &args).await
        }
    };

    // discover: found by skill and x402 through the indexer, idle, with its price.
    let found = call(coordinator(&["discover"])).await;
    assert!(found.success(), "{}\n{}", found.stdout, found.stderr);
    let found = found.json();
    let workers = found["items"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{found}");
    assert_eq!(workers[0]["endpoint"], endpoint.as_str());
    assert_eq!(
        workers[0]["agentId"].as_u64().unwrap().to_string(),
        agent_id
    );
    assert_eq!(workers[0]["state"], "idle", "{found}");
    assert_eq!(
        workers[0]["quote"]["amountAtomic"],
        PER_RUN_ATOMIC.to_string()
    );

    // The domain finds it too; a text completer's skill does not.
    let by_domain = call(coordinator(&[
        "discover",
        "--skill",
        "research_and_development/scientific_research",
    ]))
    .await;
    assert_eq!(
        by_domain.json()["items"].as_array().unwrap().len(),
        1,
        "{}",
        by_domain.stderr
    );
    let other = call(coordinator(&[
        "discover",
        "--skill",
        "natural_language_processing/natural_language_generation/text_completion",
    ]))
    .await;
    assert_eq!(other.json(), json!({"items": []}), "{}", other.stderr);

    // probe: the 402 read, per run and per hour.
    let probed = call(coordinator(&["probe", &endpoint])).await;
    assert!(probed.success(), "{}\n{}", probed.stdout, probed.stderr);
    let probed = probed.json();
    assert_eq!(
        probed["amountAtomic"],
        PER_RUN_ATOMIC.to_string(),
        "{probed}"
    );
    assert_eq!(
        probed["perRun"], "0.041667 USDC on base-sepolia",
        "{probed}"
    );
    assert_eq!(probed["perHour"], "0.500004 USDC/hour", "{probed}");
    assert_eq!(probed["budgetSeconds"], 300);
    assert_eq!(probed["state"], "idle");

    // submit above --max: refused before signing (exit 2, as agora pay), no USDC moves.
    let payee_before = chain.usdc_balance(payee).await.unwrap();
    let buyer_before = chain.usdc_balance(buyer).await.unwrap();
    let train_py = repo.join("train.py");
    let too_dear = call(coordinator(&[
        "submit",
        &endpoint,
        train_py.to_str().unwrap(),
        "--max",
        "0.04",
    ]))
    .await;
    too_dear.exits_saying(2, &["0.041667 USDC", "--max"]);
    assert_eq!(chain.usdc_balance(payee).await.unwrap(), payee_before);

    // submit: paid once, exactly the derived price, the result stored.
    let submitted = call(coordinator(&[
        "submit",
        &endpoint,
        train_py.to_str().unwrap(),
        "--config",
        r#"{"order": 3}"#,
        "--max",
        "0.05",
    ]))
    .await;
    assert!(
        submitted.success(),
        "{}\n{}",
        submitted.stdout,
        submitted.stderr
    );
    let result = submitted.json();
    assert_eq!(result["status"], "completed", "{result}");
    let val_bpb = result["valBpb"].as_f64().unwrap();
    assert!(val_bpb > 0.0 && val_bpb < 8.0, "{result}");
    assert_eq!(
        result["trainHash"], result["workerTrainHash"],
        "the worker ran exactly the bytes sent"
    );
    assert_eq!(result["agentId"].as_str(), Some(agent_id.as_str()));
    assert_eq!(result["amountAtomic"], PER_RUN_ATOMIC.to_string());
    assert!(result["tx"].as_str().unwrap().starts_with("0x"), "{result}");
    assert_eq!(
        result["result"]["config"]["order"], 3,
        "the config reached the run"
    );
    let gained = chain.usdc_balance(payee).await.unwrap() - payee_before;
    assert_eq!(
        gained,
        U256::from(PER_RUN_ATOMIC),
        "the payee gained exactly 0.041667 USDC"
    );
    assert_eq!(
        buyer_before - chain.usdc_balance(buyer).await.unwrap(),
        U256::from(PER_RUN_ATOMIC)
    );

    // leaderboard: the run is verified here, and the worker's published claim (the
    // registration metadata the daemon refreshed, on chain) catches up with it.
    let mut board = Value::Null;
    for _ in 0..120 {
        let out = call(coordinator(&["leaderboard"])).await;
        assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
        board = out.json()["items"].clone();
        if board[0]["claimedBest"].as_f64() == Some(val_bpb) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let top = &board[0];
    assert_eq!(top["agentId"].as_str(), Some(agent_id.as_str()), "{board}");
    assert_eq!(top["verified"], true, "{board}");
    assert_eq!(top["verifiedBest"].as_f64(), Some(val_bpb), "{board}");
    assert_eq!(top["runsHere"], 1);
    assert_eq!(top["claimedBest"].as_f64(), Some(val_bpb), "{board}");
    assert_eq!(top["metadata"]["total_experiments"], "1", "{board}");
    assert_eq!(top["metadata"]["framework"], "autoresearch");
    assert_eq!(
        top["metadata"]["best_experiment_hash"], result["trainHash"],
        "{board}"
    );
    let document: Value =
        testkit::get_json(&format!("{gateway}/.well-known/agent-registration.json")).await;
    assert_eq!(
        document["metadata"]["best_val_bpb"]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok()),
        Some(val_bpb),
        "{document}"
    );

    // A busy worker is not paid: while the seller runs a slow experiment on the
    // worker directly, the coordinator refuses before signing (exit 2), and no
    // USDC moves.
    let slow = tokio::spawn(
        testkit::http()
            .post(format!("{worker_url}/experiment"))
            .json(&json!({"train_py": "import time\ntime.sleep(8)\n", "experiment_id": "slow"}))
            .send(),
    );
    testkit::eventually("the worker to be busy", Duration::from_secs(10), || async {
        let status: Value = testkit::get_json(&format!("{worker_url}/status")).await;
        status["status"] == "busy"
    })
    .await;
    let payee_before = chain.usdc_balance(payee).await.unwrap();
    let buyer_before = chain.usdc_balance(buyer).await.unwrap();
    let refused = call(coordinator(&[
        "submit",
        &endpoint,
        train_py.to_str().unwrap(),
        "--max",
        "0.05",
    ]))
    .await;
    refused.exits_saying(2, &["busy"]);
    assert_eq!(chain.usdc_balance(payee).await.unwrap(), payee_before);
    assert_eq!(chain.usdc_balance(buyer).await.unwrap(), buyer_before);
    slow.await.unwrap().unwrap();

    // loop: one round to the cheapest idle worker, paid the same way.
    let looped = call(coordinator(&[
        "loop",
        train_py.to_str().unwrap(),
        "--rounds",
        "1",
        "--max",
        "0.05",
    ]))
    .await;
    assert!(looped.success(), "{}\n{}", looped.stdout, looped.stderr);
    assert_eq!(looped.json()["status"], "completed");
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap() - payee_before,
        U256::from(PER_RUN_ATOMIC)
    );
    let spent = ok(&buyer_home, &["wallet", "spent", "--json"]).await;
    let entries = spent["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        2,
        "two paid runs, nothing for the busy one: {spent}"
    );
    assert!(entries.iter().all(|e| e["status"] == "settled"), "{spent}");

    stop(daemon).await;
    assert!(
        testkit::http()
            .get(format!("{worker_url}/status"))
            .send()
            .await
            .is_err(),
        "the daemon stopped its worker"
    );
}

/// `scripts/demo-research` runs as shipped: two sellers' workers found through the
/// indexer, each paid once at its own per-hour price (0.50/h → 41 667 atomic,
/// 0.30/h → 25 000), both verified on the leaderboard, both transfers read back.
#[tokio::test]
async fn the_research_demo_pays_two_workers_and_shows_both_transfers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/demo-research"))
        .env("AGORA_BIN", env!("CARGO_BIN_EXE_agora"))
        .env_remove("AGORA_HOME")
        .env_remove("AGORA_INDEXER")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("41667 atomic (0.041667 USDC)"), "{stdout}");
    assert!(stdout.contains("25000 atomic (0.025000 USDC)"), "{stdout}");
    let verified = stdout
        .lines()
        .filter(|l| l.contains(" yes ") && l.contains("84532:"))
        .count();
    assert_eq!(verified, 2, "both workers verified here:\n{stdout}");
}
