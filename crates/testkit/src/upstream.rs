//! Upstreams a seller sells, on loopback: a plain echo with `/health`, an
//! Ollama-shaped model server, and a recording upstream whose paths succeed, fail,
//! stall, hold and stream, counting what it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use reqwest::Url;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::loopback::{self, Server};

/// A healthy service: `/health` answers "ok", anything else `{"served": true}`.
pub fn echo() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { axum::Json(json!({"served": true})) })
}

/// An Ollama-shaped model server listing `models` at `/api/tags`; anything else
/// answers like a chat completion.
pub fn ollama(models: &'static [&'static str]) -> Router {
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/tags",
            get(move || async move {
                let list: Vec<Value> = models.iter().map(|m| json!({"name": m})).collect();
                axum::Json(json!({ "models": list }))
            }),
        )
        .fallback(|| async { axum::Json(json!({"choices": [{"message": {"content": "hi"}}]})) })
}

/// What the recording upstream saw and can be told to do.
#[derive(Default)]
pub struct Seen {
    /// Calls received, by any path.
    pub calls: AtomicUsize,
    /// `X-Payment-Payer` of the last call.
    pub last_payer: Mutex<Option<String>>,
    /// Released by the test to let `/hold` answer.
    pub release: Notify,
    /// When `/v1/chat/completions` sent its last chunk.
    pub stream_finished: Mutex<Option<Instant>>,
}

/// The recording upstream: `/fail` answers 500, `/slow` waits 800 ms, `/hold` waits
/// for [`Seen::release`], `/v1/chat/completions` streams SSE, anything else echoes
/// its path, payer, body and whether a payment header leaked through.
pub struct Recording {
    /// Where it listens.
    pub url: Url,
    /// What it saw.
    pub state: Arc<Seen>,
    _server: Server,
}

impl Recording {
    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }
}

/// Starts a [`Recording`] upstream on a free loopback port.
pub async fn recording() -> Recording {
    let seen = Arc::new(Seen::default());
    let app = Router::new().fallback(any(answer)).with_state(seen.clone());
    let server = loopback::serve(app).await;
    Recording {
        url: server.parsed_url(),
        state: seen,
        _server: server,
    }
}

async fn answer(State(seen): State<Arc<Seen>>, request: Request) -> Response {
    seen.calls.fetch_add(1, Ordering::SeqCst);
    let payer = request
        .headers()
        .get("x-payment-payer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    *seen.last_payer.lock().unwrap() = payer.clone();
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
            seen.release.notified().await;
            axum::Json(json!({"ok": true, "held": true})).into_response()
        }
        "/v1/chat/completions" => sse(seen.clone()),
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
fn sse(seen: Arc<Seen>) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(8);
    tokio::spawn(async move {
        for i in 0..4 {
            let chunk = json!({"choices": [{"delta": {"content": format!("token{i} ")}}]});
            if tx.send(Ok(format!("data: {chunk}\n\n"))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = tx.send(Ok("data: [DONE]\n\n".to_string())).await;
        *seen.stream_finished.lock().unwrap() = Some(Instant::now());
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
