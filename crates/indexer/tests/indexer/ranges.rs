//! An RPC that limits `eth_getLogs` to a few blocks, as public endpoints do, and that
//! starts out down: the indexer reports 503 until it can catch up, shrinks its range
//! until the RPC accepts it, and still indexes every agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use indexer::Indexer;
use serde_json::{Value, json};

use crate::common::{self, document, serve};

/// Widest `eth_getLogs` range the proxy lets through.
const MAX_SPAN: u64 = 5;

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    up: AtomicBool,
    refused: AtomicU64,
    widest_served: AtomicU64,
}

fn block_number(value: &Value) -> u64 {
    u64::from_str_radix(value.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn relay(State(proxy): State<Arc<Proxy>>, body: String) -> Response {
    if !proxy.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let request: Value = serde_json::from_str(&body).unwrap();
    if request["method"] == "eth_getLogs" {
        let filter = &request["params"][0];
        let span = block_number(&filter["toBlock"]) - block_number(&filter["fromBlock"]) + 1;
        if span > MAX_SPAN {
            proxy.refused.fetch_add(1, Ordering::SeqCst);
            return axum::Json(json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": -32005, "message": format!("query exceeds max block range {MAX_SPAN}")}
            }))
            .into_response();
        }
        proxy.widest_served.fetch_max(span, Ordering::SeqCst);
    }
    let answer = proxy
        .client
        .post(&proxy.upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    ([("content-type", "application/json")], answer).into_response()
}

#[tokio::test]
async fn refused_log_ranges_shrink_and_an_rpc_outage_shows_in_health() {
    let chain = testkit::chain::devnet(2).await;
    let db = tempfile::tempdir().unwrap();
    for i in 0..6 {
        let doc = document(&format!("agent {i}"), "one block each", &[], &[]);
        common::register(&chain, 1, &doc.to_data_uri()).await;
    }
    let proxy = Arc::new(Proxy {
        upstream: chain.rpc_url().to_string(),
        client: reqwest::Client::new(),
        up: AtomicBool::new(false),
        refused: AtomicU64::new(0),
        widest_served: AtomicU64::new(0),
    });
    let rpc_server = testkit::loopback::serve(
        Router::new()
            .route("/", post(relay))
            .with_state(Arc::clone(&proxy)),
    )
    .await;
    let rpc = rpc_server.addr;

    let mut config = common::config(&format!("http://{rpc}"), db.path());
    config.chain_id = Some(devnet::CHAIN_ID);
    let api = serve(Indexer::open(config).await.unwrap()).await;
    testkit::eventually("the outage is reported", common::PATIENCE, || async {
        let (status, health) = api.get("/health").await;
        status == 503 && health["last_error"].is_string()
    })
    .await;
    assert_eq!(api.get("/health").await.1["status"], "starting");

    proxy.up.store(true, Ordering::SeqCst);
    api.settle(&chain).await;
    assert_eq!(api.names("").await.len(), 6);
    assert!(
        proxy.refused.load(Ordering::SeqCst) > 0,
        "ranges were refused"
    );
    let widest = proxy.widest_served.load(Ordering::SeqCst);
    assert!((1..=MAX_SPAN).contains(&widest), "widest range {widest}");
    let (_, health) = api.get("/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["last_error"], Value::Null);
    let (_, stats) = api.get("/api/v1/public/stats").await;
    assert_eq!(
        stats["total_events"],
        common::registry_event_count(&chain).await
    );
    api.stop().await;
    chain.stop().await;
}
