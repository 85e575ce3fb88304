//! `agora crd`, `agora operator` and `agora gateway --from-kubernetes` as a user runs
//! them: the CRD printed is the one checked in, and without a usable cluster each
//! command stops with the step to take. The API server here is a loopback stand-in
//! that knows no ServiceOffers (no kube-apiserver installs here); the operator's
//! reconcile loop itself is tested in crates/operator.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::StatusCode;
use testkit::loopback::serve;

fn agora(home: &Path) -> tokio::process::Command {
    let mut command = testkit::process::agora(env!("CARGO_BIN_EXE_agora"), home);
    command.env_remove("KUBERNETES_SERVICE_HOST");
    command
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn crd_prints_the_checked_in_crd_as_yaml_and_json() {
    let home = tempfile::tempdir().unwrap();
    let yaml = agora(home.path()).arg("crd").output().await.unwrap();
    assert!(yaml.status.success());
    let checked_in = std::fs::read_to_string(repo().join("deploy/kubernetes/crd.yaml")).unwrap();
    assert!(
        String::from_utf8(yaml.stdout.clone()).unwrap() == checked_in,
        "deploy/kubernetes/crd.yaml is stale; run `agora crd > deploy/kubernetes/crd.yaml`"
    );
    let json = agora(home.path())
        .args(["crd", "--json"])
        .output()
        .await
        .unwrap();
    assert!(json.status.success());
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let from_yaml: serde_json::Value = serde_norway::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_json, from_yaml);
    assert_eq!(from_json["spec"]["names"]["shortNames"][0], "so");
}

#[tokio::test]
async fn gateway_without_from_kubernetes_names_the_flag_and_agora_serve() {
    let home = tempfile::tempdir().unwrap();
    let out = agora(home.path())
        .args(["gateway", "--facilitator", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("add --from-kubernetes"), "{stderr}");
    assert!(stderr.contains("agora serve"), "{stderr}");
}

#[tokio::test]
async fn without_a_cluster_operator_and_gateway_say_how_to_point_at_one() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["operator", "--facilitator", "http://127.0.0.1:9"],
        vec![
            "gateway",
            "--from-kubernetes",
            "--facilitator",
            "http://127.0.0.1:9",
        ],
    ] {
        let out = agora(home.path())
            .args(&args)
            .env("KUBECONFIG", home.path().join("missing"))
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("point KUBECONFIG at one"), "{stderr}");
    }
}

#[tokio::test]
async fn a_cluster_without_the_crd_is_refused_with_the_install_command() {
    // Answers every request as an API server does for a resource it does not serve.
    let api_server = serve(Router::new().fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#,
        )
    }))
    .await;
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster: {{server: '{}'}}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: standin\n  context: {{cluster: standin, user: nobody}}\ncurrent-context: standin\n",
            api_server.url()
        ),
    )
    .unwrap();
    for args in [
        vec!["operator", "--facilitator", "http://127.0.0.1:9"],
        vec![
            "gateway",
            "--from-kubernetes",
            "--facilitator",
            "http://127.0.0.1:9",
        ],
    ] {
        let out = agora(home.path())
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot list ServiceOffers")
                && stderr.contains("agora crd | kubectl apply -f -"),
            "{stderr}"
        );
    }
}

/// A replica set that cannot work is named before any cluster is reached: an index
/// outside the set, and replicas without a ledger on their own volume (the ledger is
/// what serves a buyer charged without an answer).
#[tokio::test]
async fn gateway_replica_flags_that_cannot_work_are_named_before_the_cluster() {
    let home = tempfile::tempdir().unwrap();
    let ledger = home.path().join("payments.db");
    let ledger = ledger.to_str().unwrap();
    let base = [
        "gateway",
        "--from-kubernetes",
        "--facilitator",
        "http://127.0.0.1:9",
        "--replicas",
        "2",
        "--replica-url",
        "http://agora-gateway-{}.agora-gateway-replicas:8402",
    ];
    let outside = agora(home.path())
        .args(base)
        .args(["--replica-index", "2", "--ledger", ledger])
        .output()
        .await
        .unwrap();
    assert_eq!(outside.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&outside.stderr);
    assert!(
        stderr.contains("--replica-index between 0 and 1"),
        "{stderr}"
    );

    let no_ledger = agora(home.path())
        .args(base)
        .env("AGORA_REPLICA_INDEX", "1")
        .output()
        .await
        .unwrap();
    assert_eq!(no_ledger.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_ledger.stderr);
    assert!(stderr.contains("--replicas needs --ledger"), "{stderr}");
}
