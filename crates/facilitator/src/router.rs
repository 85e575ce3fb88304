//! The standard x402 facilitator HTTP API over any [`Facilitator`]: `POST /verify`,
//! `POST /settle`, `GET /supported`, `GET /health`, plus agora's `POST /release`,
//! which frees a verified authorization whose call failed so its buyer can retry at
//! once instead of waiting out the reservation.
//!
//! A settle runs in its own task: a client that hangs up (or times out) cannot cut a
//! settlement in half; the journal then holds its outcome for the next settle of the
//! same authorization.
//!
//! Invalid payments answer 200 with `isValid:false` / `success:false` (spec style);
//! requests that cannot be parsed answer 400 with a JSON error; a facilitator that
//! cannot answer (chain RPC down) answers 503.
//!
//! The 503 says which kind of failure and at most `scheme://host[:port]` of the
//! endpoint: the error's own text names the full RPC URL, whose path or query holds
//! the provider's API key, and this API answers whoever can reach it. The full error
//! goes to the log.
//!
//! With an [`ApiKey`] ([`router_with_key`], `agora facilitator --api-key-file`),
//! `/verify`, `/settle` and `/release` answer 401 unless the request carries
//! `Authorization: Bearer <key>`: each settle costs the facilitator's gas and each
//! verify an `eth_call` and a reservation, so only its own resource servers may ask.
//! `/supported` and `/health` stay open (they cost nothing and reveal only what the
//! facilitator settles).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use x402::{Facilitator, FacilitatorError, FacilitatorRequest};

/// Largest request body accepted; a real verify request is about 2 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The facilitator API as an axum router, open to whoever can reach it: for an
/// in-process or loopback-only facilitator. Anything reachable from elsewhere takes
/// [`router_with_key`].
pub fn router(facilitator: Arc<dyn Facilitator>) -> Router {
    router_with_key(facilitator, None)
}

/// The facilitator API whose `/verify`, `/settle` and `/release` require
/// `Authorization: Bearer <key>` when `key` is given.
pub fn router_with_key(facilitator: Arc<dyn Facilitator>, key: Option<ApiKey>) -> Router {
    let mut paying = Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/release", post(release));
    if let Some(key) = key {
        paying = paying.layer(axum::middleware::from_fn_with_state(
            Arc::new(key),
            require_key,
        ));
    }
    paying
        .route("/supported", get(supported))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(facilitator)
}

/// The bearer key a facilitator's clients must present; kept only as its hash, so
/// comparing takes the same time whatever the guess.
#[derive(Clone)]
pub struct ApiKey {
    digest: alloy::primitives::B256,
}

/// Shortest key accepted: a guessable key protects nothing.
pub const MIN_API_KEY_CHARS: usize = 16;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "the API key has {0} characters after trimming; use at least {MIN_API_KEY_CHARS} random ones, e.g. `openssl rand -hex 32 > KEYFILE && chmod 600 KEYFILE`"
)]
pub struct WeakApiKey(usize);

impl ApiKey {
    /// A key from its text (surrounding whitespace, such as a file's newline, is
    /// ignored); refused when shorter than [`MIN_API_KEY_CHARS`].
    pub fn new(text: &str) -> Result<Self, WeakApiKey> {
        let key = text.trim();
        if key.chars().count() < MIN_API_KEY_CHARS {
            return Err(WeakApiKey(key.chars().count()));
        }
        Ok(Self {
            digest: alloy::primitives::keccak256(key.as_bytes()),
        })
    }

    /// Whether `presented` is the key, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let theirs = alloy::primitives::keccak256(presented.trim().as_bytes());
        self.digest
            .iter()
            .zip(theirs.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// The layer on the paying endpoints: 401 unless the bearer key matches.
async fn require_key(State(key): State<Arc<ApiKey>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match presented {
        Some(token) if key.matches(token) => next.run(request).await,
        Some(_) => unauthorized("the bearer key is not this facilitator's key"),
        None => unauthorized("this facilitator requires Authorization: Bearer <key>"),
    }
}

fn unauthorized(what: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({
            "error": what,
            "reason": "unauthorized",
            "hint": "send the key given to this facilitator's --api-key-file; an agora gateway sends it with --facilitator-api-key-file PATH",
        })),
    )
        .into_response()
}

/// `GET /metrics`: the embedded facilitator's counters (JSON-RPC calls by method) as
/// Prometheus text, for operators watching what their RPC provider bills.
pub fn metrics_router(facilitator: Arc<crate::EmbeddedFacilitator>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(f): State<Arc<crate::EmbeddedFacilitator>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        f.render_metrics(),
                    )
                },
            ),
        )
        .with_state(facilitator)
}

fn parse(body: &Bytes) -> Result<FacilitatorRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

fn bad_request(e: serde_json::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": format!("the body is not an x402 facilitator request: {e}"),
            "reason": "invalid_payload",
            "hint": "POST {\"x402Version\", \"paymentPayload\", \"paymentRequirements\"} as JSON",
        })),
    )
        .into_response()
}

fn unavailable(e: FacilitatorError) -> Response {
    tracing::warn!("facilitator API answers 503: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "5")],
        axum::Json(json!({"error": public_message(&e), "reason": "facilitator_unavailable"})),
    )
        .into_response()
}

/// What a client may read of `e`: the kind of failure and the endpoint's origin only.
fn public_message(e: &FacilitatorError) -> String {
    match e {
        FacilitatorError::Unreachable { endpoint, .. } => format!(
            "the chain RPC or facilitator at {} cannot be reached; retry later",
            x402::redact::origin(endpoint)
        ),
        FacilitatorError::Timeout { endpoint, .. } => format!(
            "the chain RPC or facilitator at {} did not answer in time; retry later",
            x402::redact::origin(endpoint)
        ),
        FacilitatorError::BadResponse {
            endpoint, status, ..
        } => format!(
            "the chain RPC or facilitator at {} answered HTTP {status} with nothing usable; retry later",
            x402::redact::origin(endpoint)
        ),
        _ => "the facilitator could not process the request; retry later".to_string(),
    }
}

async fn verify(State(f): State<Arc<dyn Facilitator>>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match f.verify(&request).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn settle(State(f): State<Arc<dyn Facilitator>>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let version = request.x402_version;
    let detached = tokio::spawn(async move { f.settle(&request).await });
    match detached.await {
        Ok(Ok(answer)) => axum::Json(answer.to_wire(version)).into_response(),
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(FacilitatorError::Internal(format!(
            "the settlement task failed: {e}"
        ))),
    }
}

async fn release(State(f): State<Arc<dyn Facilitator>>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match f.release(&request).await {
        Ok(()) => axum::Json(json!({"released": true})).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn supported(State(f): State<Arc<dyn Facilitator>>) -> Response {
    match f.supported().await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_only_themselves_and_short_ones_are_refused() {
        let key = ApiKey::new("0123456789abcdef0123\n").unwrap();
        assert!(key.matches("0123456789abcdef0123"));
        assert!(!key.matches("0123456789abcdef012"));
        assert!(!key.matches("0123456789abcdef01234"));
        assert!(!key.matches(""));
        assert!(!format!("{key:?}").contains("0123"));
        let err = ApiKey::new("  hunter2  ").unwrap_err().to_string();
        assert!(
            err.contains("openssl rand -hex 32") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
