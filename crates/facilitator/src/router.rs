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

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use x402::{Facilitator, FacilitatorError, FacilitatorRequest};

/// Largest request body accepted; a real verify request is about 2 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The facilitator API as an axum router.
pub fn router(facilitator: Arc<dyn Facilitator>) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/release", post(release))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(facilitator)
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
