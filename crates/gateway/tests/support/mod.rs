//! Shared fixture for the gateway tests: a devnet, the embedded facilitator, a test
//! upstream on loopback that counts its calls, and the gateway serving on an
//! ephemeral port. Everything stops when the fixture is dropped.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use devnet::{Devnet, DevnetConfig};
use facilitator::{ChainConfig, EmbeddedConfig, EmbeddedFacilitator};
use gateway::{Documents, Gateway, GatewayConfig, Route, Site};
use reqwest::Url;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use x402::eip3009::{self, unix_now};
use x402::{Facilitator, PaymentPayload, PaymentRequirements};

/// Price of the test route, atomic USDC (0.001).
pub const PRICE: u64 = 1000;

/// What the upstream saw and can be told to do.
#[derive(Default)]
pub struct UpstreamState {
    /// Calls received, by any path.
    pub calls: AtomicUsize,
    /// `X-Payment-Payer` of the last call.
    pub last_payer: Mutex<Option<String>>,
    /// Released by the test to let `/hold` answer.
    pub release: Notify,
    /// When `/stream` sent its last chunk.
    pub stream_finished: Mutex<Option<Instant>>,
}

/// A loopback HTTP service with paths that succeed, fail, stall and stream.
pub struct Upstream {
    pub url: Url,
    pub state: Arc<UpstreamState>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn upstream_handler(State(state): State<Arc<UpstreamState>>, request: Request) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let payer = request
        .headers()
        .get("x-payment-payer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    *state.last_payer.lock().unwrap() = payer.clone();
    let leaked_payment = request.headers().contains_key("payment-signature")
        || request.headers().contains_key("x-payment");
    let path = request.uri().path().to_string();
    match path.as_str() {
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            axum::Json(json!({"ok": true, "slow": true})).into_response()
        }
        "/hold" => {
            state.release.notified().await;
            axum::Json(json!({"ok": true, "held": true})).into_response()
        }
        "/v1/chat/completions" => sse(state.clone()),
        _ => {
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            axum::Json(json!({
                "ok": true,
                "path": path,
                "payer": payer,
                "leakedPayment": leaked_payment,
                "body": String::from_utf8_lossy(&body),
            }))
            .into_response()
        }
    }
}

/// An OpenAI-style stream: the first chunk at once, then one every 300 ms.
fn sse(state: Arc<UpstreamState>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(8);
    tokio::spawn(async move {
        for i in 0..4 {
            let chunk = json!({"choices": [{"delta": {"content": format!("token{i} ")}}]});
            if tx.send(Ok(format!("data: {chunk}\n\n"))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = tx.send(Ok("data: [DONE]\n\n".to_string())).await;
        *state.stream_finished.lock().unwrap() = Some(Instant::now());
    });
    let stream = tokio_stream(rx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Starts the test upstream on an ephemeral loopback port.
pub async fn upstream() -> Upstream {
    let state = Arc::new(UpstreamState::default());
    let app = Router::new()
        .fallback(any(upstream_handler))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Upstream {
        url,
        state,
        stop: Some(stop),
    }
}

/// A URL where nothing listens.
pub async fn dead_url() -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    url
}

/// A gateway being served, with the means to stop it.
pub struct Served {
    pub gateway: Gateway,
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Starts serving `gateway` on an ephemeral loopback port.
    pub async fn start(gateway: Gateway) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let g = gateway.clone();
        let done = tokio::spawn(async move {
            gateway::serve(&g, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            gateway,
            url,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Begins a graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Devnet + embedded facilitator + upstream + gateway.
pub struct Fixture {
    pub chain: Devnet,
    pub facilitator: Arc<EmbeddedFacilitator>,
    pub upstream: Upstream,
    pub served: Served,
    pub seller: Address,
    _db: tempfile::TempDir,
}

/// Accounts: 0 settles (facilitator), 1 is the seller, the rest are buyers.
pub async fn fixture() -> Fixture {
    fixture_with(GatewayConfig::default()).await
}

pub async fn fixture_with(config: GatewayConfig) -> Fixture {
    let chain = Devnet::start(DevnetConfig {
        accounts: 6,
        ..DevnetConfig::default()
    })
    .await
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let facilitator = Arc::new(
        EmbeddedFacilitator::open(EmbeddedConfig::new(
            vec![ChainConfig {
                network: chain.network(),
                rpc_url: chain.rpc_url().to_string(),
            }],
            chain.accounts()[0].signer(),
            db.path().join("facilitator.db"),
        ))
        .await
        .unwrap(),
    );
    let seller = chain.accounts()[1].address();
    let upstream = upstream().await;
    let gateway = Gateway::new(config, facilitator.clone() as Arc<dyn Facilitator>).unwrap();
    let fixture_route = route_for(&chain, seller, upstream.url.clone(), "echo");
    install(&gateway, vec![fixture_route]);
    let served = Served::start(gateway).await;
    Fixture {
        chain,
        facilitator,
        upstream,
        served,
        seller,
        _db: db,
    }
}

/// The paid route `name` at `/services/<name>` in front of `upstream`.
pub fn route_for(chain: &Devnet, seller: Address, upstream: Url, name: &str) -> Route {
    let requirement = PaymentRequirements::exact(
        chain.network(),
        chain.usdc(),
        U256::from(PRICE),
        seller,
        300,
    );
    let mut route = Route::new(
        name,
        format!("/services/{name}"),
        upstream,
        vec![requirement],
    );
    route.description = format!("{name} test service");
    route.free_paths = vec!["/health".to_string()];
    route
}

/// Installs `routes` with documents derived from them.
pub fn install(gateway: &Gateway, routes: Vec<Route>) {
    let documents = Documents::build(&Site::default(), &routes, None);
    gateway.install(routes, documents);
}

impl Fixture {
    /// Buyer `i` (1-based among the buyers).
    pub fn buyer(&self, i: usize) -> PrivateKeySigner {
        self.chain.accounts()[1 + i].signer()
    }

    /// The route's requirement as the gateway offers it.
    pub fn requirement(&self) -> PaymentRequirements {
        self.served.gateway.routes()[0].accepts[0].clone()
    }

    /// A v2 payment header for the route, signed by `buyer`.
    pub fn pay_header(&self, buyer: &PrivateKeySigner) -> String {
        let requirement = self.requirement();
        let payload = eip3009::authorize(buyer, &requirement, unix_now()).unwrap();
        x402::header::encode(&PaymentPayload::v2(&requirement, payload)).unwrap()
    }

    pub async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }

    pub fn calls(&self) -> usize {
        self.upstream.state.calls.load(Ordering::SeqCst)
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}/services/echo{rest}", self.served.url)
    }
}

/// Waits for `predicate` (polling), for state set by background tasks.
pub async fn eventually(what: &str, mut predicate: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !predicate() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
