//! The coordinator in process: loopback workers (axum) that answer `/status` and sell
//! `POST /experiment` through a 402, checking each payment with agora's offline
//! verifier; the buyer's ledger is its own SQLite file and the results database a
//! temporary one. No chain: the receipts name a made-up transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use buyer::{Buyer, Limits};
use market::{AgentRecord, Page, Search};
use research::coordinator::store::Store;
use research::coordinator::workers::WORKER_SKILL;
use research::coordinator::{Coordinator, PickError, Registry, SubmitError, Worker};
use serde_json::{Map, Value, json};
use x402::eip3009::verify_offline;
use x402::header;
use x402::time::unix_now;
use x402::wire::{PaymentPayload, PaymentRequirements, SettleResponse};

const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// A worker's state: busy or idle, its price per run and how many runs it was paid for.
struct Seller {
    busy: AtomicBool,
    atomic: u64,
    paid: AtomicUsize,
}

fn requirement(atomic: u64) -> Value {
    json!({
        "scheme": "exact", "network": "eip155:84532", "amount": atomic.to_string(),
        "payTo": PAY_TO, "asset": USDC, "maxTimeoutSeconds": 540,
        "extra": {"name": "USDC", "version": "2"}
    })
}

fn challenge(atomic: u64) -> Response {
    let body = json!({"x402Version": 2, "error": "payment required",
        "accepts": [requirement(atomic)]});
    let mut response = (StatusCode::PAYMENT_REQUIRED, axum::Json(body.clone())).into_response();
    response.headers_mut().insert(
        "payment-required",
        HeaderValue::from_str(&header::encode(&body).unwrap()).unwrap(),
    );
    response
}

/// `GET /status` free; `POST /experiment` paid, answered with the run's result.
async fn worker(State(seller): State<Arc<Seller>>, request: Request) -> Response {
    if request.uri().path().ends_with("/status") {
        let status = if seller.busy.load(Ordering::SeqCst) {
            "busy"
        } else {
            "idle"
        };
        return axum::Json(json!({"status": status, "budgetSeconds": 300})).into_response();
    }
    let signature = request
        .headers()
        .get("payment-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(signature) = signature else {
        return challenge(seller.atomic);
    };
    let payment: PaymentPayload = header::decode(&signature).unwrap();
    let required: PaymentRequirements = serde_json::from_value(requirement(seller.atomic)).unwrap();
    if verify_offline(&payment, &required, unix_now()).is_err() {
        return challenge(seller.atomic);
    }
    seller.paid.fetch_add(1, Ordering::SeqCst);
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    let order: Value = serde_json::from_slice(&body).unwrap();
    let receipt = SettleResponse {
        success: true,
        error_reason: None,
        error_message: None,
        payer: Some(payment.payload.authorization.from),
        transaction: Some([7u8; 32].into()),
        network: payment.network.clone(),
        amount: None,
        extensions: None,
    };
    let value = header::encode(&receipt.to_wire(payment.x402_version)).unwrap();
    let train_py = order["train_py"].as_str().unwrap();
    (
        [("payment-response", value)],
        axum::Json(json!({
            "experiment_id": order["experiment_id"],
            "train_hash": research::train_hash(train_py.as_bytes()),
            "status": "completed",
            "val_bpb": 0.99,
            "config": order["config"],
        })),
    )
        .into_response()
}

/// A worker on loopback at its offer URL, selling one run for `atomic` units.
async fn seller(atomic: u64) -> (String, Arc<Seller>) {
    let state = Arc::new(Seller {
        busy: AtomicBool::new(false),
        atomic,
        paid: AtomicUsize::new(0),
    });
    let app = Router::new().fallback(worker).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/services/worker", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// A wallet with its ledger in a fresh home, and a coordinator recording there.
fn buyer(home: &std::path::Path) -> (Buyer, Coordinator) {
    let ledger = wallet::open_store(home).unwrap();
    let buyer = Buyer::new(
        "alice",
        PrivateKeySigner::random(),
        ledger,
        buyer::http_client().unwrap(),
    );
    let coordinator = Coordinator::new(research::coordinator::http_client().unwrap())
        .record_in(home.join(research::coordinator::store::FILE));
    (buyer, coordinator)
}

#[tokio::test]
async fn one_run_is_paid_once_and_recorded_and_a_busy_worker_is_not_paid() {
    let home = tempfile::tempdir().unwrap();
    let (buyer, coordinator) = buyer(home.path());
    let (url, seller) = seller(41_667).await;
    let worker = Worker {
        endpoint: url.clone(),
        agent: Some((84532, 0)),
    };
    let limits = Limits::new().max(U256::from(50_000));
    let mut config = Map::new();
    config.insert("order".into(), json!(3));
    let done = coordinator
        .submit(&buyer, &limits, worker.clone(), b"print(1)\n", config)
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    assert!(done.hash_matches(), "{done:?}");
    assert_eq!(done.amount_atomic, "41667");
    assert_eq!(done.agent_id.as_deref(), Some("0"));
    assert!(done.tx.as_deref().unwrap().starts_with("0x07"), "{done:?}");
    assert_eq!(
        done.result["config"]["order"], 3,
        "the config reached the run"
    );
    let store = Store::open(&home.path().join("research.db")).unwrap();
    assert_eq!(store.all().unwrap(), vec![done]);

    seller.busy.store(true, Ordering::SeqCst);
    let e = coordinator
        .submit(&buyer, &limits, worker, b"print(1)\n", Map::new())
        .await
        .unwrap_err();
    assert!(matches!(e, SubmitError::Busy { .. }), "{e}");
    assert!(
        !e.to_string().contains("--"),
        "no CLI flag in a library text: {e}"
    );
    assert_eq!(
        seller.paid.load(Ordering::SeqCst),
        1,
        "the busy worker was not paid"
    );
    assert_eq!(store.all().unwrap().len(), 1);
}

#[tokio::test]
async fn a_price_above_the_limit_signs_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (buyer, coordinator) = buyer(home.path());
    let (url, seller) = seller(41_667).await;
    let worker = Worker {
        endpoint: url,
        agent: None,
    };
    let e = coordinator
        .submit(
            &buyer,
            &Limits::new().max(U256::from(40_000)),
            worker,
            b"x",
            Map::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, SubmitError::Pay(buyer::PayError::Refused(_))),
        "{e}"
    );
    assert_eq!(seller.paid.load(Ordering::SeqCst), 0);
}

/// A registry that lists the given workers, each registered with the worker skill.
struct Listed(Vec<String>);

impl Registry for Listed {
    type Error = std::convert::Infallible;

    async fn agents(&self, _: &Search) -> Result<Page, Self::Error> {
        let agents = self
            .0
            .iter()
            .enumerate()
            .map(|(id, endpoint)| agent(id as u64, endpoint))
            .collect();
        Ok(Page {
            agents,
            unreadable: Vec::new(),
        })
    }
}

fn agent(id: u64, endpoint: &str) -> AgentRecord {
    serde_json::from_value(json!({
        "id": format!("84532:0x00:{id}"), "chain_id": 84532, "agent_id": id,
        "agent_registry": "eip155:84532:0x0000000000000000000000000000000000000000",
        "owner_address": "0x0000000000000000000000000000000000000001", "uri": "",
        "name": format!("w{id}"), "description": "", "image_url": null, "active": true,
        "x402_supported": true, "service_type": "http", "supported_protocols": [],
        "oasf_skills": [WORKER_SKILL], "oasf_domains": [], "services": [{"name": "web", "endpoint": endpoint}],
        "metadata": {}, "registration": null, "fetch_status": "ok", "fetch_error": null,
        "fetched_at": null, "registered_block": 1,
        "registered_tx": format!("0x{}", "00".repeat(32)), "updated_block": 1
    }))
    .unwrap()
}

#[tokio::test]
async fn the_next_worker_is_the_preferred_idle_one_else_the_cheapest() {
    let home = tempfile::tempdir().unwrap();
    let (_, coordinator) = buyer(home.path());
    let (dear, _) = seller(50_000).await;
    let (cheap, cheap_state) = seller(25_000).await;
    let registry = Listed(vec![dear.clone(), cheap.clone()]);
    let skills = [WORKER_SKILL.to_string()];
    let wait = Duration::ZERO;
    let (worker, quote) = coordinator
        .next_worker(&registry, &skills, None, wait)
        .await
        .unwrap();
    assert_eq!(worker.endpoint, cheap);
    assert_eq!(worker.agent, Some((84532, 1)));
    assert_eq!(quote.amount(), U256::from(25_000));
    let (worker, _) = coordinator
        .next_worker(&registry, &skills, Some(&format!("{dear}/")), wait)
        .await
        .unwrap();
    assert_eq!(worker.endpoint, dear, "the preferred one while it is idle");
    cheap_state.busy.store(true, Ordering::SeqCst);
    let (worker, _) = coordinator
        .next_worker(&registry, &skills, Some(&cheap), wait)
        .await
        .unwrap();
    assert_eq!(
        worker.endpoint, dear,
        "not the preferred one while it is busy"
    );
    let e = coordinator
        .next_worker(&Listed(vec![cheap]), &skills, None, wait)
        .await
        .unwrap_err();
    assert!(matches!(e, PickError::NoneIdle { endpoints: 1, .. }), "{e}");
}
