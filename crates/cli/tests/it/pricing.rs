//! `agora sell pricing --research` through the real binary on a devnet: three
//! sellers (three `agora serve` daemons, three ERC-8004 agents) sell 7-8B models at
//! three prices written in the ways agora prices inference (--per-request, --per-mtok,
//! --price); an `agora index` reads their registrations; the research probes each 402
//! (read from the indexer, or scanned over RPC when none answers) and must find the
//! fixture's min, median, max and recommendation, put a 70B model in another bucket,
//! and apply nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::support::agora;
use serde_json::Value;
use testkit::daemon;
use testkit::process;
use testkit::upstream::ollama;

async fn ok(home: &Path, args: &[&str]) -> Value {
    process::ok(agora(home), args).await.json()
}

/// The fixture: each seller's offer, model and price flag; per request these are
/// 0.001, 0.002 (2 USDC/MTok at 1000 tokens per request) and 0.003 USDC.
static SELLERS: [(&str, &str, &str, &str); 3] = [
    ("alpha", "llama3.1:8b", "--per-request", "0.001"),
    ("bravo", "mistral:7b", "--per-mtok", "2"),
    ("charlie", "qwen2.5:7b", "--price", "0.003"),
];

#[tokio::test]
async fn research_finds_the_median_of_three_sellers_and_applies_nothing() {
    let chain = testkit::chain::devnet(5).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator_key = process::account_key_file(dir.path(), "facilitator.key", &chain, 0);

    let (_indexer, index_url) =
        daemon::index(agora(&dir.path().join("indexer")), chain.rpc_url()).await;

    let mut daemons = Vec::new();
    let mut upstreams = Vec::new();
    for (i, (name, model, flag, price)) in SELLERS.iter().enumerate() {
        let home = dir.path().join(name);
        let key = process::account_key_file(dir.path(), &format!("{name}.key"), &chain, i + 1);
        let registry_flags = ["--registry-key-file", key.to_str().unwrap()];
        let (daemon, _) = daemon::serve(
            agora(&home),
            chain.rpc_url(),
            &facilitator_key,
            &registry_flags,
        )
        .await;
        daemons.push(daemon);
        let upstream = testkit::loopback::serve(ollama(std::slice::from_ref(model))).await;
        let pay_to = chain.accounts()[i + 1].address().to_string();
        let sold = ok(
            &home,
            &[
                "sell",
                "inference",
                name,
                "--model",
                model,
                "--upstream",
                &upstream.url(),
                flag,
                price,
                "--pay-to",
                &pay_to,
                "--register-skills",
                "natural_language_processing/natural_language_generation/text_completion",
                "--wait",
                "30",
                "--json",
            ],
        )
        .await;
        assert_eq!(sold["ready"], true, "{sold}");
        let registered = ok(&home, &["sell", "register", "--json"]).await;
        assert!(registered["agentId"].is_string(), "{registered}");
        upstreams.push(upstream);
    }
    testkit::indexed(&index_url, 3, Duration::from_secs(30)).await;

    // A would-be seller with no daemon asks what an 8B model fetches.
    let researcher = dir.path().join("researcher");
    let report = ok(
        &researcher,
        &[
            "sell",
            "pricing",
            "--research",
            "--model",
            "llama3:8b",
            "--skill",
            "natural_language_processing/*",
            "--indexer",
            &index_url,
            "--json",
        ],
    )
    .await;
    assert_eq!(report["applied"], false, "{report}");
    assert_eq!(report["targetBucket"], "inference 4B-10B", "{report}");
    assert_eq!(report["offers"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(report["skipped"].as_array().unwrap().len(), 0, "{report}");
    let mut per_request: Vec<&str> = report["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["perRequest"].as_str().unwrap())
        .collect();
    per_request.sort_unstable();
    assert_eq!(per_request, ["0.001", "0.002", "0.003"], "{report}");
    let buckets = report["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{report}");
    let b = &buckets[0];
    assert_eq!(b["bucket"], "inference 4B-10B");
    assert_eq!(b["count"], 3);
    assert_eq!(b["min"]["perRequest"], "0.001");
    assert_eq!(b["median"]["perRequest"], "0.002");
    assert_eq!(b["median"]["perMtok"], "2");
    assert_eq!(b["median"]["perHour"], "0.024");
    assert_eq!(b["max"]["perRequest"], "0.003");
    let rec = &b["recommendation"];
    assert_eq!(rec["perRequest"], "0.002", "{rec}");
    assert_eq!(rec["flag"], "--per-mtok 2", "{rec}");
    let why = rec["reasoning"].as_str().unwrap();
    assert!(why.contains("median of 3 comparable offers"), "{why}");
    assert!(why.contains("0.001 to 0.003 USDC/request"), "{why}");
    assert!(
        why.contains("agora sell inference --model llama3:8b --per-mtok 2"),
        "{why}"
    );
    assert!(
        !researcher.join("agora.sock").exists(),
        "research started no daemon"
    );

    // With no indexer answering, the registry is scanned over RPC: the same answer.
    let scanned = ok(
        &researcher,
        &[
            "sell",
            "pricing",
            "--research",
            "--model",
            "llama3:8b",
            "--indexer",
            testkit::loopback::dead_url().as_str(),
            "--rpc",
            chain.rpc_url(),
            "--json",
        ],
    )
    .await;
    assert_eq!(scanned["buckets"], report["buckets"], "{scanned}");

    // A 70B model has no comparable here: no recommendation, a note saying what to do.
    let big = ok(
        &researcher,
        &[
            "sell",
            "pricing",
            "--research",
            "--model",
            "llama3.3:70b",
            "--indexer",
            &index_url,
            "--json",
        ],
    )
    .await;
    assert_eq!(big["targetBucket"], "inference 40B-100B", "{big}");
    assert_eq!(big["buckets"].as_array().unwrap().len(), 0, "{big}");
    assert!(
        big["note"]
            .as_str()
            .unwrap()
            .contains("no comparable offer"),
        "{big}"
    );

    // The sellers' prices are what they set: research applied nothing.
    for (name, ..) in &SELLERS {
        let offers = ok(&dir.path().join(name), &["sell", "list", "--json"]).await;
        assert_eq!(offers["items"].as_array().unwrap().len(), 1, "{offers}");
    }
    let alpha = ok(
        &dir.path().join("alpha"),
        &["sell", "status", "alpha", "--json"],
    )
    .await;
    assert_eq!(alpha["price"], "0.001 USDC/request", "{alpha}");

    // The human table names the bucket and the recommendation too.
    let text = process::ok(
        agora(&researcher),
        &[
            "sell",
            "pricing",
            "--research",
            "--model",
            "llama3:8b",
            "--indexer",
            &index_url,
        ],
    )
    .await
    .stdout;
    assert!(text.contains("inference 4B-10B (3 offers):"), "{text}");
    assert!(text.contains("recommend --per-mtok 2"), "{text}");
    assert!(text.contains("No price was applied."), "{text}");
}
