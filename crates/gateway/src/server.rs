//! The HTTP surface: published documents, operations endpoints, and everything else
//! handed to the paid path; plus serving with a graceful shutdown that lets in-flight
//! settlements finish.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::{Gatekeeper, Gateway, Snapshot, paid, respond};

pub(crate) fn router(inner: Arc<Gatekeeper>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(storefront))
        .route("/skill.md", get(skill_md))
        .route("/api/services.json", get(services_json))
        .route("/openapi.json", get(openapi_json))
        .route("/.well-known/x402", get(x402_well_known))
        .route(
            "/.well-known/agent-registration.json",
            get(agent_registration),
        )
        .fallback(paid::handle)
        .with_state(inner)
}

async fn readyz(State(inner): State<Arc<Gatekeeper>>) -> Response {
    if inner.is_loaded() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "routes_not_loaded",
            "the gateway has not received its route table yet",
            1,
        )
    }
}

async fn metrics(State(inner): State<Arc<Gatekeeper>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        inner.metrics.render(),
    )
        .into_response()
}

fn document(content_type: &'static str, body: String) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    respond::cors(response.headers_mut());
    response
}

fn json_document(value: &Value) -> Response {
    document(
        "application/json",
        serde_json::to_string_pretty(value).unwrap_or_default(),
    )
}

fn docs(inner: &Gatekeeper) -> Arc<Snapshot> {
    inner.snapshot()
}

async fn storefront(State(inner): State<Arc<Gatekeeper>>) -> Response {
    document(
        "text/html; charset=utf-8",
        docs(&inner).documents.storefront_html.clone(),
    )
}

async fn skill_md(State(inner): State<Arc<Gatekeeper>>) -> Response {
    document(
        "text/markdown; charset=utf-8",
        docs(&inner).documents.skill_md.clone(),
    )
}

async fn services_json(State(inner): State<Arc<Gatekeeper>>) -> Response {
    json_document(&docs(&inner).documents.services_json)
}

async fn openapi_json(State(inner): State<Arc<Gatekeeper>>) -> Response {
    json_document(&docs(&inner).documents.openapi_json)
}

async fn x402_well_known(State(inner): State<Arc<Gatekeeper>>) -> Response {
    json_document(&docs(&inner).documents.x402_well_known)
}

async fn agent_registration(State(inner): State<Arc<Gatekeeper>>) -> Response {
    match &docs(&inner).documents.agent_registration {
        Some(doc) => json_document(doc),
        None => {
            let mut response = respond::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "not_registered",
                "this seller has no ERC-8004 registration yet",
            );
            respond::cors(response.headers_mut());
            response
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops accepting,
/// lets open requests finish and waits for every settlement in progress.
pub async fn serve(
    gateway: &Gateway,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, gateway.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    gateway.inner.drained().await;
    Ok(())
}
