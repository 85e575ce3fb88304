//! What the research crate's integration tests share: a worker that runs
//! `python3 train.py` as the shipped examples do, and a client for its
//! `POST /experiment`, so each test module builds them the same way.

use std::path::PathBuf;
use std::sync::Arc;

use research::worker::{Config, Limits, Sandbox, Worker};
use serde_json::Value;

/// A worker over `repo` that runs `python3 train.py` with `budget_secs` (and
/// `grace_secs` more before the kill), keeping its runs under `data_dir`, in the
/// default sandbox (bubblewrap must be installed: scripts/setup).
pub fn python_worker(
    repo: PathBuf,
    data_dir: PathBuf,
    budget_secs: u64,
    grace_secs: u64,
) -> Arc<Worker> {
    sandboxed_worker(
        repo,
        data_dir,
        (budget_secs, grace_secs),
        Sandbox::default(),
    )
}

/// [`python_worker`] with the given `sandbox`.
#[allow(dead_code)]
pub fn sandboxed_worker(
    repo: PathBuf,
    data_dir: PathBuf,
    (budget_secs, grace_secs): (u64, u64),
    sandbox: Sandbox,
) -> Arc<Worker> {
    Worker::open(Config {
        repo,
        data_dir,
        command: vec!["python3".into(), "train.py".into()],
        limits: Limits {
            budget_secs,
            grace_secs,
        },
        gpu: None,
        sandbox,
    })
    .unwrap()
}

/// `POST base/experiment` with a JSON `body`; the status and the JSON answer.
pub async fn post_experiment(base: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = testkit::http()
        .post(format!("{base}/experiment"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}
