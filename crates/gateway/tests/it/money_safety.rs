//! Fault injection on the paid path: every way a settlement's outcome can go missing
//! (a receipt that does not come, a broadcast error after the node took the
//! transaction, a remote facilitator on a slow chain, a buyer who hangs up after
//! settlement, an upstream that dies mid-body) must end with the buyer served and
//! charged once, or not charged.
//!
//! Real anvil, real embedded facilitator, real HTTP between every piece; the faults
//! are injected by pausing the chain's miner and by a JSON-RPC proxy on loopback.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{B256, U256};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use devnet::Devnet;
use facilitator::EmbeddedFacilitator;
use gateway::GatewayConfig;
use serde_json::{Value, json};
use support::{Served, install, sell_echo};
use testkit::loopback::Server;
use testkit::pay::PRICE;
use testkit::upstream::Recording;
use x402::wire::SettleResponse;
use x402::{Facilitator, HttpFacilitator};

/// A devnet, a facilitator, an upstream and a gateway in front of it.
struct Rig {
    chain: Devnet,
    upstream: Recording,
    served: Served,
    seller: alloy::primitives::Address,
    _db: tempfile::TempDir,
}

async fn chain() -> Devnet {
    testkit::chain::devnet(4).await
}

async fn embedded(
    chain: &Devnet,
    rpc_url: &str,
    db: &tempfile::TempDir,
    receipt_timeout: Duration,
) -> Arc<EmbeddedFacilitator> {
    let mut config = testkit::embedded::config_via(chain, rpc_url, db.path());
    config.receipt_timeout = receipt_timeout;
    testkit::embedded::open(config).await
}

async fn rig(chain: Devnet, facilitator: Arc<dyn Facilitator>, db: tempfile::TempDir) -> Rig {
    let seller = chain.accounts()[1].address();
    let config = GatewayConfig {
        ledger: Some(db.path().join("payments.db")),
        ..GatewayConfig::default()
    };
    let (upstream, served) = sell_echo(&chain, facilitator, config).await;
    Rig {
        chain,
        upstream,
        served,
        seller,
        _db: db,
    }
}

impl Rig {
    fn url(&self) -> String {
        format!("{}/services/echo/ok", self.served.url)
    }

    fn pay_header(&self) -> String {
        let requirement = &self.served.gateway.routes()[0].accepts[0];
        testkit::pay::header(&self.chain.accounts()[2].signer(), requirement)
    }

    async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }

    fn calls(&self) -> usize {
        self.upstream.calls()
    }

    async fn send(&self, header: &str) -> reqwest::Response {
        testkit::http()
            .get(self.url())
            .header("payment-signature", header)
            .send()
            .await
            .unwrap()
    }
}

fn receipt(response: &reqwest::Response) -> SettleResponse {
    x402::header::decode(response.headers()["payment-response"].to_str().unwrap()).unwrap()
}

/// Asserts a 503 `settlement_pending` and returns the transaction it names.
async fn assert_pending(response: reqwest::Response) -> Option<B256> {
    assert_eq!(response.status(), 503, "an unknown outcome is not a 402");
    assert!(response.headers().contains_key("retry-after"));
    let pending = receipt(&response);
    assert!(!pending.success);
    assert_eq!(pending.error_reason.as_deref(), Some("settlement_pending"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "settlement_pending");
    assert!(
        body["hint"]
            .as_str()
            .unwrap()
            .contains("same payment header"),
        "{body}"
    );
    pending.transaction
}

#[tokio::test]
async fn a_receipt_that_does_not_come_is_pending_and_the_same_header_is_served_once_mined() {
    let chain = chain().await;
    let db = tempfile::tempdir().unwrap();
    let f = embedded(&chain, chain.rpc_url(), &db, Duration::from_millis(500)).await;
    let rig = rig(chain, f.clone(), db).await;
    let before = rig.seller_balance().await;
    let header = rig.pay_header();

    rig.chain.set_automine(false).await.unwrap();
    let hash = assert_pending(rig.send(&header).await)
        .await
        .expect("the pending answer names the transaction");
    assert_eq!(rig.seller_balance().await, before, "nothing mined yet");
    let still = assert_pending(rig.send(&header).await).await;
    assert_eq!(
        still,
        Some(hash),
        "asking again sends no second transaction"
    );

    rig.chain.set_automine(true).await.unwrap();
    rig.chain.mine().await.unwrap();
    let served = rig.send(&header).await;
    assert_eq!(served.status(), 200, "paid, so served");
    let paid = receipt(&served);
    assert!(paid.success);
    assert_eq!(paid.transaction, Some(hash), "the original receipt");
    assert_eq!(served.json::<Value>().await.unwrap()["path"], "/ok");
    assert_eq!(
        rig.seller_balance().await - before,
        U256::from(PRICE),
        "charged once"
    );
    assert_eq!(
        rig.send(&header).await.status(),
        402,
        "and spent after that"
    );
    assert_eq!(
        rig.seller_balance().await - before,
        U256::from(PRICE),
        "still charged once"
    );
}

/// A JSON-RPC proxy that, when armed, forwards `eth_sendRawTransaction` to the node
/// and then answers the caller with an error, as a flaky provider or a dropped
/// connection would.
struct RpcProxy {
    url: String,
    fail_broadcasts: Arc<AtomicBool>,
    broadcasts: Arc<AtomicUsize>,
    _server: Server,
}

#[derive(Clone)]
struct ProxyState {
    target: String,
    fail_broadcasts: Arc<AtomicBool>,
    broadcasts: Arc<AtomicUsize>,
}

async fn proxy_handler(State(state): State<ProxyState>, body: Bytes) -> Response {
    let forwarded = testkit::http()
        .post(&state.target)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["method"] == "eth_sendRawTransaction" {
        state.broadcasts.fetch_add(1, Ordering::SeqCst);
        if state.fail_broadcasts.load(Ordering::SeqCst) {
            return axum::Json(json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": -32000, "message": "injected: the upstream node closed the connection"},
            }))
            .into_response();
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        forwarded,
    )
        .into_response()
}

async fn rpc_proxy(target: &str) -> RpcProxy {
    let fail_broadcasts = Arc::new(AtomicBool::new(false));
    let broadcasts = Arc::new(AtomicUsize::new(0));
    let state = ProxyState {
        target: target.to_string(),
        fail_broadcasts: fail_broadcasts.clone(),
        broadcasts: broadcasts.clone(),
    };
    let app = axum::Router::new()
        .route("/", axum::routing::post(proxy_handler))
        .with_state(state);
    let server = testkit::loopback::serve(app).await;
    RpcProxy {
        url: server.url(),
        fail_broadcasts,
        broadcasts,
        _server: server,
    }
}

#[tokio::test]
async fn a_broadcast_error_after_the_node_took_the_transaction_still_serves_the_buyer() {
    let chain = chain().await;
    let proxy = rpc_proxy(chain.rpc_url()).await;
    let db = tempfile::tempdir().unwrap();
    let f = embedded(&chain, &proxy.url, &db, Duration::from_secs(10)).await;
    let rig = rig(chain, f.clone(), db).await;
    let before = rig.seller_balance().await;
    proxy.fail_broadcasts.store(true, Ordering::SeqCst);

    let header = rig.pay_header();
    let response = rig.send(&header).await;
    assert_eq!(
        response.status(),
        200,
        "the node took the transaction; the error was the RPC's, not the chain's"
    );
    let paid = receipt(&response);
    assert!(paid.success);
    assert_eq!(proxy.broadcasts.load(Ordering::SeqCst), 1);
    assert_eq!(rig.seller_balance().await - before, U256::from(PRICE));
    let journal = f.journal().unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(
        journal[0].status,
        facilitator::store::SettlementStatus::Confirmed
    );
    assert_eq!(journal[0].tx_hash, paid.transaction);
    assert_eq!(rig.send(&header).await.status(), 402);
    assert_eq!(rig.seller_balance().await - before, U256::from(PRICE));
}

#[tokio::test]
async fn a_remote_facilitator_on_a_12_second_chain_settles_within_the_settle_timeout() {
    let chain = chain().await;
    let db = tempfile::tempdir().unwrap();
    let f = embedded(&chain, chain.rpc_url(), &db, Duration::from_secs(30)).await;
    let server =
        testkit::loopback::serve(facilitator::router(f.clone() as Arc<dyn Facilitator>)).await;
    let remote = Arc::new(HttpFacilitator::new(&server.url()).unwrap());
    assert!(remote.settle_timeout() > Duration::from_secs(30));
    let rig = rig(chain, remote, db).await;
    let before = rig.seller_balance().await;
    let header = rig.pay_header();

    rig.chain.set_block_time(12).await.unwrap();
    let started = std::time::Instant::now();
    let response = rig.send(&header).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert!(
        started.elapsed() > Duration::from_secs(5),
        "the settlement waited for a block"
    );
    assert_eq!(rig.seller_balance().await - before, U256::from(PRICE));
}

#[tokio::test]
async fn a_buyer_who_hangs_up_after_settlement_gets_the_answer_for_the_same_header() {
    let chain = chain().await;
    let db = tempfile::tempdir().unwrap();
    let f = embedded(&chain, chain.rpc_url(), &db, Duration::from_secs(20)).await;
    let rig = rig(chain, f.clone(), db).await;
    let before = rig.seller_balance().await;
    let header = rig.pay_header();

    rig.chain.set_automine(false).await.unwrap();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(rig.url())
        .header("payment-signature", &header)
        .send()
        .await;
    assert!(
        gave_up.is_err(),
        "the buyer hung up while the settlement waited"
    );
    assert_eq!(rig.calls(), 1);
    rig.chain.set_automine(true).await.unwrap();
    rig.chain.mine().await.unwrap();

    let mut answer = None;
    for _ in 0..100 {
        let response = rig.send(&header).await;
        match response.status().as_u16() {
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => {
                answer = Some(response);
                break;
            }
        }
    }
    let response = answer.expect("the same header is answered once the settlement is done");
    assert_eq!(response.status(), 200, "charged, so served");
    let paid = receipt(&response);
    assert!(paid.success);
    let journal = f.journal().unwrap();
    assert_eq!(paid.transaction, journal[0].tx_hash, "the original receipt");
    assert_eq!(rig.calls(), 2, "the upstream answered again");
    assert_eq!(
        rig.seller_balance().await - before,
        U256::from(PRICE),
        "charged once"
    );
    assert_eq!(rig.send(&header).await.status(), 402);
}

#[tokio::test]
async fn an_authorization_about_to_expire_is_refused_before_the_upstream_is_called() {
    let chain = chain().await;
    let db = tempfile::tempdir().unwrap();
    let f = embedded(&chain, chain.rpc_url(), &db, Duration::from_secs(5)).await;
    let rig = rig(chain, f, db).await;
    let mut short = rig.served.gateway.routes()[0].accepts[0].clone();
    assert!(
        short.max_timeout_seconds >= 300,
        "the offer gives clients enough time"
    );
    short.max_timeout_seconds = 30;
    let buyer = rig.chain.accounts()[2].signer();
    let payload = testkit::pay::authorize(&buyer, &short);
    let header = testkit::pay::encode(&rig.served.gateway.routes()[0].accepts[0], payload);
    let response = rig.send(&header).await;
    assert_eq!(response.status(), 402);
    assert_eq!(
        response.headers()["x-payment-invalid-reason"],
        "expires_too_soon"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("validBefore >="),
        "{body}"
    );
    assert_eq!(rig.calls(), 0, "the service was not called");
}

/// An upstream that promises a body and dies mid-way: headers with a Content-Length,
/// a few bytes, then the connection closes.
async fn cut_upstream() -> reqwest::Url {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"partial\":",
                    )
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    url.parse().unwrap()
}

#[tokio::test]
async fn an_answer_cut_mid_body_is_not_charged_and_the_payment_can_be_retried() {
    let chain = chain().await;
    let db = tempfile::tempdir().unwrap();
    let f = embedded(&chain, chain.rpc_url(), &db, Duration::from_secs(5)).await;
    let rig = rig(chain, f.clone(), db).await;
    let mut route = rig.served.gateway.routes()[0].clone();
    route.upstream = cut_upstream().await;
    install(&rig.served.gateway, vec![route]);
    let before = rig.seller_balance().await;
    let header = rig.pay_header();

    let response = rig.send(&header).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_body_cut");
    assert!(f.journal().unwrap().is_empty(), "no settlement was started");
    assert_eq!(rig.seller_balance().await, before, "not charged");

    let again = rig.send(&header).await;
    assert_eq!(
        again.status(),
        502,
        "the same payment is accepted again (not refused as used)"
    );
    assert_eq!(rig.seller_balance().await, before);
}
