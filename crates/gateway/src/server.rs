//! The HTTP surface: published documents, operations endpoints, and everything else
//! handed through admission (a tower layer) to the paid path; plus serving with a graceful shutdown that lets in-flight
//! settlements finish.
//!
//! Two routers, because buyers and the operator must not see the same things. The
//! public one ([`Gateway::router`]) serves the catalog, `/healthz`, `/readyz` and the
//! paid routes. `/metrics` is only on the operator router ([`Gateway::operator_router`],
//! mounted by `agora serve --metrics-listen ADDR` on a separate, loopback-by-default
//! listener): per-route settled amounts are the seller's revenue, and even the
//! per-route request counts and settle-latency counts give it away (settled calls times
//! the public price), so no part of the metrics is safe to publish. The public
//! `/metrics` answers 404 with the flag to use instead.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::{Gatekeeper, Gateway, Snapshot, admission, paid, respond};

pub(crate) fn router(inner: Arc<Gatekeeper>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_elsewhere))
        .route("/", get(storefront))
        .route("/skill.md", get(skill_md))
        .route("/api/services.json", get(services_json))
        .route("/openapi.json", get(openapi_json))
        .route("/.well-known/x402", get(x402_well_known))
        .route(
            "/.well-known/agent-registration.json",
            get(agent_registration),
        )
        .fallback(
            paid::handle
                .layer(axum::middleware::from_fn_with_state(
                    inner.clone(),
                    admission::admit,
                ))
                .layer(axum::middleware::map_response(respond::with_cors)),
        )
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

/// The operator-only surface: `/metrics` with per-route counts, settled amounts and
/// latencies.
pub(crate) fn operator_router(inner: Arc<Gatekeeper>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(inner)
}

impl Gateway {
    /// The operator's router (`/metrics`), kept off the public listener because the
    /// per-route settled amounts are the seller's revenue. Serve it only where buyers
    /// cannot reach it: `agora serve --metrics-listen 127.0.0.1:9402` mounts it on
    /// loopback; it has no authentication of its own.
    pub fn operator_router(&self) -> Router {
        operator_router(self.inner.clone())
    }
}

/// The public `/metrics`: not here, and how the operator gets it.
async fn metrics_elsewhere() -> Response {
    respond::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "operator_only",
        "metrics are served to the operator only: start agora serve with --metrics-listen 127.0.0.1:9402 and read http://127.0.0.1:9402/metrics",
    )
}

async fn metrics(State(inner): State<Arc<Gatekeeper>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        inner.metrics.render() + &inner.facilitator.metrics(),
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
/// lets open requests finish and waits for every settlement in progress. Served with
/// each connection's peer address, which is appended to `X-Forwarded-For` on the way
/// to the upstream ([`crate::proxy::forwarded_for`]).
pub async fn serve(
    gateway: &Gateway,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = gateway
        .router()
        .layer(axum::middleware::from_fn(crate::proxy::forwarded_for));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    gateway.inner.drained().await;
    if let Err(e) = gateway.inner.guard.flush().await {
        tracing::error!("{e}");
    }
    Ok(())
}
