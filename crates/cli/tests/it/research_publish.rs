//! `agora research publish` on a real git repository: the provenance file (trainHash
//! of train.py's committed bytes, equal to the worker's), the Modelfile, the GGUF
//! guard, and `--sell` putting the provenance into the registration the gateway
//! serves, with a daemon on a devnet.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::support::agora;
use serde_json::{Value, json};
use testkit::daemon;
use testkit::process;

const TRAIN_PY: &str = "# lr 0.04\r\nprint('val_bpb: 0.993200')  \n\n";

/// A repo whose best kept experiment is the commit of [`TRAIN_PY`]; returns it.
fn repo(dir: &Path) -> String {
    let (baseline, best) = testkit::autoresearch::experiments(dir, TRAIN_PY);
    std::fs::write(
        dir.join("results.tsv"),
        format!("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n{baseline}\t0.997900\t44.0\tkeep\tbaseline\n{best}\t0.993200\t44.2\tkeep\tlr 0.04\n"),
    )
    .unwrap();
    std::fs::write(dir.join("metadata.json"), r#"{"param_count": 1234}"#).unwrap();
    best
}

#[tokio::test]
async fn publish_writes_provenance_and_a_modelfile_and_guards_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let r = dir.path().join("repo");
    let best = repo(&r);

    std::fs::write(r.join("model.safetensors"), b"st").unwrap();
    let refused = process::run(
        agora(&home),
        &["research", "publish", "--repo", r.to_str().unwrap()],
        None,
    )
    .await;
    refused.fails_saying(&["convert_hf_to_gguf.py"]);

    std::fs::create_dir_all(r.join("out")).unwrap();
    std::fs::write(r.join("out/model.gguf"), b"GGUF").unwrap();
    let out = process::ok(
        agora(&home),
        &[
            "research",
            "publish",
            "--repo",
            r.to_str().unwrap(),
            "--json",
        ],
    )
    .await
    .json();
    let want = json!({
        "framework": "autoresearch",
        "metricName": "val_bpb",
        "metricValue": "0.993200",
        "experimentId": best,
        "trainHash": research::train_hash(TRAIN_PY.as_bytes()),
        "paramCount": "1234",
    });
    assert_eq!(out["provenance"], want);
    assert_eq!(out["name"], format!("autoresearch-{best}"));
    let written: Value =
        serde_json::from_slice(&std::fs::read(r.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(written, want);
    let gguf = std::fs::canonicalize(r.join("out/model.gguf")).unwrap();
    assert_eq!(
        std::fs::read_to_string(r.join("Modelfile")).unwrap(),
        format!("FROM {}\n", gguf.display())
    );

    std::fs::write(r.join("results.tsv"), "aaaa111\t0.000000\tcrash\toom\n").unwrap();
    let none = process::run(
        agora(&home),
        &["research", "publish", "--repo", r.to_str().unwrap()],
        None,
    )
    .await;
    none.fails_saying(&["no row with status keep"]);
}

#[tokio::test]
async fn publish_sell_puts_the_provenance_in_the_registration() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = process::account_key_file(dir.path(), "facilitator.key", &chain, 0);
    let seller = chain.accounts()[1].address().to_string();
    let r = dir.path().join("repo");
    let best = repo(&r);
    std::fs::write(r.join("model.gguf"), b"GGUF").unwrap();
    let ollama = testkit::loopback::serve(testkit::upstream::ollama(&["tinyllm"])).await;

    let (mut daemon, started) = daemon::serve(agora(&home), chain.rpc_url(), &key, &[]).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();

    let sold = process::ok(
        agora(&home),
        &[
            "research",
            "publish",
            "--repo",
            r.to_str().unwrap(),
            "--sell",
            "--price",
            "0.001",
            "--name",
            "tinyllm",
            "--no-create",
            "--upstream",
            &ollama.url(),
            "--pay-to",
            &seller,
            "--wait",
            "30",
            "--json",
        ],
    )
    .await;
    // --json: one object, the publication with its sale.
    assert_eq!(sold.stdout.lines().count(), 1, "{}", sold.stdout);
    let published = sold.json();
    assert_eq!(published["provenance"]["experimentId"], best);
    assert_eq!(published["sale"]["ready"], true, "{}", sold.stdout);
    assert_eq!(
        published["sale"]["offer"]["spec"]["provenance"],
        published["provenance"]
    );

    let want = published["provenance"].clone();
    let url = format!("{gateway}/.well-known/agent-registration.json");
    testkit::eventually(
        "the registration to carry the provenance",
        std::time::Duration::from_secs(20),
        || {
            let (url, want) = (url.clone(), want.clone());
            async move {
                match testkit::http().get(&url).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|doc| doc["provenance"] == want),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    daemon.kill().await.unwrap();
}
