//! The reconciler against real things: a devnet with the embedded facilitator, a
//! loopback upstream that can be stopped and restarted, an Ollama-shaped model server,
//! and the gateway serving what the reconciler installs.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use devnet::Devnet;
use gateway::{Gateway, GatewayConfig};
use offers::{Reconciler, ReconcilerConfig, STAGES, ServiceOffer, Store};
use serde_json::json;
use testkit::loopback::{serve, serve_on};
use testkit::status_of;
use testkit::upstream::{echo, ollama};
use tokio::net::TcpListener;
use x402::Facilitator;

struct Fixture {
    chain: Devnet,
    store: Arc<Store>,
    reconciler: Reconciler,
    gateway: Gateway,
    gateway_url: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with(ReconcilerConfig::default()).await
}

async fn fixture_with(config: ReconcilerConfig) -> Fixture {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator: Arc<dyn Facilitator> =
        testkit::embedded::facilitator(&chain, dir.path()).await;
    let store = Arc::new(Store::open(&dir.path().join("agora.db")).unwrap());
    let gateway = Gateway::new(GatewayConfig::default(), facilitator.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    let served = gateway.clone();
    tokio::spawn(async move {
        gateway::serve(&served, listener, std::future::pending())
            .await
            .unwrap()
    });
    let reconciler = Reconciler::new(store.clone(), gateway.clone(), facilitator, config).unwrap();
    Fixture {
        chain,
        store,
        reconciler,
        gateway,
        gateway_url,
        _dir: dir,
    }
}

fn manifest(name: &str, upstream: &str, seller: &str) -> ServiceOffer {
    ServiceOffer::from_manifest(&format!(
        "metadata: {{name: {name}}}\nspec:\n  upstream: {{url: '{upstream}', healthPath: /health}}\n  payment: {{network: base-sepolia, payTo: '{seller}', price: {{perRequest: '0.001'}}}}\n"
    ))
    .unwrap()
}

fn conditions(store: &Store, name: &str) -> Vec<(String, String, String)> {
    store
        .get(name)
        .unwrap()
        .unwrap()
        .status
        .conditions
        .into_iter()
        .map(|c| (c.kind, c.status.to_string(), c.reason))
        .collect()
}

#[tokio::test]
async fn an_http_offer_goes_ready_falls_back_when_its_upstream_dies_and_recovers() {
    let f = fixture().await;
    let upstream = serve(echo()).await;
    let port = upstream.port();
    let seller = f.chain.accounts()[1].address().to_string();
    f.store
        .put(&manifest(
            "echo",
            &format!("http://127.0.0.1:{port}"),
            &seller,
        ))
        .unwrap();
    let summary = f.reconciler.pass().await.unwrap();
    assert_eq!((summary.offers, summary.ready), (1, 1));
    let expected: Vec<(String, String, String)> = [
        ("ModelReady", "Skipped"),
        ("UpstreamHealthy", "Healthy"),
        ("PaymentGateReady", "Reconciled"),
        ("RoutePublished", "Reconciled"),
        ("Registered", "Disabled"),
        ("Ready", "Reconciled"),
    ]
    .iter()
    .map(|(k, r)| ((*k).to_string(), "True".to_string(), (*r).to_string()))
    .collect();
    assert_eq!(conditions(&f.store, "echo"), expected);
    let offer = f.store.get("echo").unwrap().unwrap();
    assert_eq!(offer.status.endpoint.as_deref(), Some("/services/echo"));
    assert_eq!(offer.status.observed_generation, 1);
    let paid = format!("{}/services/echo/x", f.gateway_url);
    assert_eq!(status_of(&paid).await, 402);
    assert_eq!(
        status_of(&format!("{}/services/echo/health", f.gateway_url)).await,
        200,
        "health path is free"
    );

    upstream.stop().await;
    f.reconciler.pass().await.unwrap();
    let now = conditions(&f.store, "echo");
    assert_eq!(now[1].1, "False");
    assert_eq!(now[1].2, "Unhealthy");
    assert_eq!(now[5].1, "False", "not Ready while the upstream is down");
    assert_eq!(
        status_of(&paid).await,
        503,
        "the route refuses instead of charging"
    );

    let _back = serve_on(echo(), port).await;
    f.reconciler.pass().await.unwrap();
    assert_eq!(conditions(&f.store, "echo")[5].1, "True");
    assert_eq!(status_of(&paid).await, 402);
    let events = f.store.events("echo", 50).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.starts_with("UpstreamHealthy False (Unhealthy)"))
    );
}

/// H4: the settle-first annotation (`agora sell ... --settle-first`, every research
/// offer) reaches the gateway's route; without it a route settles after the call.
#[tokio::test]
async fn the_settle_first_annotation_reaches_the_gateway_route() {
    let f = fixture().await;
    let upstream = serve(echo()).await;
    let seller = f.chain.accounts()[1].address().to_string();
    let mut long = manifest("long", &upstream.url(), &seller);
    long.metadata.annotations.insert(
        offers::spec::SETTLE_FIRST_ANNOTATION.to_string(),
        "true".to_string(),
    );
    f.store.put(&long).unwrap();
    f.store
        .put(&manifest("short", &upstream.url(), &seller))
        .unwrap();
    f.reconciler.pass().await.unwrap();
    let mut settle_first: Vec<(String, bool)> = f
        .gateway
        .routes()
        .into_iter()
        .map(|r| (r.name, r.settle_first))
        .collect();
    settle_first.sort();
    assert_eq!(
        settle_first,
        [("long".to_string(), true), ("short".to_string(), false)]
    );
}

#[tokio::test]
async fn inference_offers_need_their_model_listed() {
    let f = fixture().await;
    let server = serve(ollama(&["qwen3:0.6b"])).await;
    let seller = f.chain.accounts()[1].address().to_string();
    let reference = format!(
        "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata: {{name: qwen, namespace: llm}}\nspec:\n  type: inference\n  model: {{name: 'qwen3:0.6b', runtime: ollama}}\n  upstream: {{service: ollama, namespace: llm, port: {}}}\n  payment: {{network: base-sepolia, payTo: '{seller}', price: {{perMTok: '0.50'}}}}\n",
        server.port()
    );
    f.store
        .put(&ServiceOffer::from_manifest(&reference).unwrap())
        .unwrap();
    let mut missing = ServiceOffer::from_manifest(&reference).unwrap();
    missing.metadata.name = "llama".into();
    missing.spec.model.as_mut().unwrap().name = "llama3:70b".into();
    f.store.put(&missing).unwrap();
    let summary = f.reconciler.pass().await.unwrap();
    assert_eq!((summary.offers, summary.ready), (2, 1));
    assert_eq!(
        conditions(&f.store, "qwen")[0],
        ("ModelReady".into(), "True".into(), "Available".into())
    );
    let llama = f.store.get("llama").unwrap().unwrap();
    let model = llama.condition("ModelReady").unwrap();
    assert_eq!(
        (model.status.as_str(), model.reason.as_str()),
        ("False", "ModelNotFound")
    );
    assert!(
        model.message.contains("llama3:70b") && model.message.contains("qwen3:0.6b"),
        "{}",
        model.message
    );
    assert_eq!(STAGES.len(), llama.status.conditions.len());
    let required = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!(
            "{}/services/qwen/v1/chat/completions",
            f.gateway_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(required.status(), 402);
    let body: serde_json::Value = required.json().await.unwrap();
    assert_eq!(
        body["accepts"][0]["maxAmountRequired"], "500",
        "0.50 USDC/MTok is 0.0005 per request"
    );
}

#[tokio::test]
async fn a_missing_ollama_model_is_pulled_when_allowed() {
    use std::sync::{Arc, Mutex};
    let f = fixture_with(ReconcilerConfig {
        pull_models: true,
        ..ReconcilerConfig::default()
    })
    .await;
    let models = Arc::new(Mutex::new(vec!["qwen3:0.6b".to_string()]));
    let (listed, pulled) = (models.clone(), models.clone());
    let server = serve(
        Router::new()
            .route("/", get(|| async { "Ollama is running" }))
            .route(
                "/api/tags",
                get(move || {
                    let names = listed.lock().unwrap().clone();
                    async move {
                        let list: Vec<serde_json::Value> =
                            names.iter().map(|m| json!({"name": m})).collect();
                        axum::Json(json!({ "models": list }))
                    }
                }),
            )
            .route(
                "/api/pull",
                axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                    pulled
                        .lock()
                        .unwrap()
                        .push(body["name"].as_str().unwrap().to_string());
                    async { axum::Json(json!({"status": "success"})) }
                }),
            ),
    )
    .await;
    let seller = f.chain.accounts()[1].address().to_string();
    f.store
        .put(
            &ServiceOffer::from_manifest(&format!(
                "metadata: {{name: llama}}\nspec:\n  type: inference\n  model: {{name: 'llama3:8b', runtime: ollama}}\n  upstream: {{url: 'http://127.0.0.1:{}'}}\n  payment: {{network: base-sepolia, payTo: '{seller}', price: {{perRequest: '0.001'}}}}\n",
                server.port()
            ))
            .unwrap(),
        )
        .unwrap();
    f.reconciler.pass().await.unwrap();
    assert_eq!(
        conditions(&f.store, "llama")[0],
        ("ModelReady".into(), "True".into(), "Pulled".into())
    );
    assert!(models.lock().unwrap().contains(&"llama3:8b".to_string()));
    f.reconciler.pass().await.unwrap();
    assert_eq!(
        conditions(&f.store, "llama")[0].2,
        "Available",
        "listed once pulled"
    );
}
