//! `agora serve --metrics-listen` through the binary: the flag survives the start in
//! the background, the operator's listener serves per-route metrics, and the buyers'
//! listener does not. No chain is needed: the facilitator is a dead loopback port, so
//! the route answers 503 and is counted as unavailable.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;

use axum::Router;
use serde_json::Value;
use tokio::process::Command;

fn agora(home: &Path) -> Command {
    let mut command = testkit::process::agora(env!("CARGO_BIN_EXE_agora"), home);
    command.stdin(Stdio::null());
    command
}

async fn ok_json(home: &Path, args: &[&str]) -> Value {
    let out = agora(home).args(args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agora {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// Stops the background daemon started in the test, by its pid.
struct Daemon(u64);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
    }
}

#[tokio::test]
async fn metrics_are_served_on_the_operator_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let upstream = testkit::loopback::serve(Router::new().fallback(|| async { "ok" })).await;
    let upstream_url = upstream.url();

    let started = ok_json(
        &home,
        &["serve", "--json", "--metrics-listen", "127.0.0.1:0"],
    )
    .await;
    let _daemon = Daemon(started["pid"].as_u64().unwrap());
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let metrics_url = started["metricsUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("the startup info names the metrics URL: {started}"))
        .to_string();
    assert!(
        metrics_url.starts_with("http://127.0.0.1:"),
        "{metrics_url}"
    );
    assert_ne!(
        metrics_url.trim_end_matches("/metrics"),
        gateway,
        "a separate listener"
    );

    ok_json(
        &home,
        &[
            "sell",
            "http",
            "hello",
            "--upstream",
            &upstream_url,
            "--per-request",
            "0.001",
            "--pay-to",
            "0x1111111111111111111111111111111111111111",
            "--network",
            "base-sepolia",
            "--no-register",
            "--json",
        ],
    )
    .await;
    let http = testkit::http();
    let paid = format!("{gateway}/services/hello/x");
    let mut status = 0;
    for _ in 0..100 {
        status = http.get(&paid).send().await.unwrap().status().as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503, "the facilitator is down, so the route refuses");

    let operator = http.get(&metrics_url).send().await.unwrap();
    assert_eq!(operator.status(), 200);
    let text = operator.text().await.unwrap();
    assert!(
        text.contains("agora_gateway_requests_total{route=\"hello\",outcome=\"unavailable\"}"),
        "{text}"
    );
    assert!(text.contains("# TYPE agora_gateway_settled_atomic_total counter"));

    let public = http.get(format!("{gateway}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let text = public.text().await.unwrap();
    assert!(!text.contains("agora_gateway"), "{text}");
    assert!(!text.contains("hello"), "{text}");
    assert!(text.contains("--metrics-listen"), "{text}");
}

/// With `--rpc` the daemon settles itself, and the operator's `/metrics` also counts
/// the embedded facilitator's JSON-RPC calls by method (what an RPC provider bills).
#[tokio::test]
async fn the_embedded_facilitators_rpc_calls_are_on_the_operator_metrics() {
    let chain = testkit::chain::devnet(1).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = testkit::process::account_key_file(dir.path(), "settle.key", &chain, 0);
    let (daemon, started) = testkit::daemon::serve(
        agora(&home),
        chain.rpc_url(),
        &key,
        &["--metrics-listen", "127.0.0.1:0"],
    )
    .await;
    let metrics_url = started["metricsUrl"].as_str().unwrap().to_string();
    let text = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE agora_facilitator_rpc_calls_total counter"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("agora_facilitator_rpc_calls_total{method=\"eth_")),
        "the facilitator's start-up calls are counted: {text}"
    );
    assert!(text.contains("# TYPE agora_gateway_settled_atomic_total counter"));
    testkit::daemon::stop(daemon).await;
    chain.stop().await;
}
