//! The standard x402 facilitator HTTP API over any [`Facilitator`]: `POST /verify`,
//! `POST /settle`, `GET /supported`, `GET /health`.
//!
//! Invalid payments answer 200 with `isValid:false` / `success:false` (spec style);
//! requests that cannot be parsed answer 400 with a JSON error; a facilitator that
//! cannot answer (chain RPC down) answers 503.

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
        .route("/supported", get(supported))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "5")],
        axum::Json(json!({"error": e.to_string(), "reason": "facilitator_unavailable"})),
    )
        .into_response()
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
    match f.settle(&request).await {
        Ok(answer) => axum::Json(answer.to_wire(request.x402_version)).into_response(),
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
