//! Publishing from a real git repository: the best kept row of results.tsv in both
//! formats, a trainHash that equals the worker's hash of the same bytes (the reference
//! stripped whitespace first, so its hashes never matched), and the GGUF guard.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use research::publish;
use serde_json::json;

use crate::support;

/// Bytes whose stripped form differs: leading blank line, CRLF, trailing spaces.
const TRAIN_PY: &str = "\n# experiment: lr 0.04\r\nprint('val_bpb: 0.993200')  \r\n\n";

/// A repo with two experiment commits; returns (baseline commit, better commit).
fn fixture(repo: &Path) -> (String, String) {
    let commits = testkit::autoresearch::experiments(repo, TRAIN_PY);
    // The working tree moves on; publish must hash the committed bytes.
    std::fs::write(repo.join("train.py"), "print('val_bpb: 2.0')\n").unwrap();
    commits
}

#[tokio::test]
async fn train_hash_matches_the_workers_hash_of_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let (baseline, better) = fixture(&repo);
    std::fs::write(repo.join("config.json"), r#"{"n_params": 50331648}"#).unwrap();

    for tsv in [
        format!(
            "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n{baseline}\t0.997900\t44.0\tkeep\tbaseline\n{better}\t0.993200\t44.2\tkeep\tlr 0.04\nabcdef1\t0.990000\t44.0\tdiscard\tnoise\n"
        ),
        format!(
            "commit_hash\tval_bpb\tstatus\tdescription\n{baseline}\t0.997900\tkeep\tbaseline\n{better}\t0.993200\tkeep\tlr 0.04\n"
        ),
    ] {
        let rows = publish::parse_results(&tsv).unwrap();
        let best = publish::best(&rows).unwrap();
        assert_eq!(best.commit, better);
        let provenance = publish::provenance(&repo, best).unwrap();
        assert_eq!(
            serde_json::to_value(&provenance).unwrap(),
            json!({
                "framework": "autoresearch",
                "metricName": "val_bpb",
                "metricValue": "0.993200",
                "experimentId": better,
                "trainHash": research::train_hash(TRAIN_PY.as_bytes()),
                "paramCount": "50331648",
            })
        );
        assert_ne!(
            provenance["trainHash"],
            research::train_hash(TRAIN_PY.trim().as_bytes()),
            "whitespace is part of the hash"
        );
    }

    // The worker, given the same bytes over HTTP, reports the same hash.
    let worker = support::python_worker(repo.clone(), dir.path().join("data"), 30, 30);
    let server = testkit::loopback::serve(worker.router()).await;
    let (code, result) =
        support::post_experiment(&server.url(), json!({"train_py": TRAIN_PY}).to_string()).await;
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["status"], "completed", "{result}");
    let rows = publish::parse_results(&format!("{better}\t0.993200\tkeep\tlr\n")).unwrap();
    let provenance = publish::provenance(&repo, &rows[0]).unwrap();
    assert_eq!(
        result["train_hash"].as_str(),
        Some(provenance["trainHash"].as_str())
    );

    let missing = publish::parse_results("1234567\t0.9\tkeep\tgone\n").unwrap();
    let err = publish::provenance(&repo, &missing[0]).unwrap_err();
    assert!(err.contains("git show 1234567:train.py failed"), "{err}");
    let injected = publish::parse_results("--output=x\t0.9\tkeep\tflag\n").unwrap();
    assert!(
        publish::provenance(&repo, &injected[0])
            .unwrap_err()
            .contains("not a git commit hash")
    );
}

#[test]
fn the_gguf_guard_prefers_gguf_and_refuses_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let err = publish::checkpoint(repo, None).unwrap_err();
    assert!(err.starts_with("no checkpoint"), "{err}");

    std::fs::create_dir_all(repo.join("out")).unwrap();
    std::fs::write(repo.join("out/model.safetensors"), b"st").unwrap();
    let err = publish::checkpoint(repo, None).unwrap_err();
    assert!(
        err.contains("is not GGUF") && err.contains("convert_hf_to_gguf.py"),
        "{err}"
    );

    std::fs::write(repo.join("out/model.gguf"), b"GGUF").unwrap();
    // A stray checkpoint written later does not hide the GGUF (it did in the reference).
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(repo.join("stray.pt"), b"pt").unwrap();
    assert_eq!(
        publish::checkpoint(repo, None).unwrap(),
        repo.join("out/model.gguf")
    );
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join(".git/packed.gguf"), b"GGUF").unwrap();
    assert_eq!(
        publish::checkpoint(repo, None).unwrap(),
        repo.join("out/model.gguf"),
        ".git is skipped"
    );

    let err = publish::checkpoint(repo, Some(&repo.join("stray.pt"))).unwrap_err();
    assert!(err.contains("is not GGUF"), "{err}");
    let err = publish::checkpoint(repo, Some(&repo.join("none.gguf"))).unwrap_err();
    assert!(err.contains("no such file"), "{err}");
}
