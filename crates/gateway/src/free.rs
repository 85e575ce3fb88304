//! Free routes and free paths (a route's `/health`, a route with no price): proxied
//! as they are, with no payment headers touched but stripped of forged payer
//! identity, and still under the route's in-flight limit.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;

use crate::admission::Admitted;
use crate::metrics::Outcome;
use crate::{Gatekeeper, proxy, respond};

/// Proxies one admitted request to the route's upstream and relays the answer,
/// holding the in-flight slot until its body ends.
pub(crate) async fn serve(
    inner: &Arc<Gatekeeper>,
    admitted: &Admitted,
    parts: Parts,
    body: Body,
) -> Response {
    let route = &admitted.route;
    let permit = match admitted.slot(&inner.metrics, "") {
        Ok(permit) => permit,
        Err(busy) => return *busy,
    };
    let Ok(body) = axum::body::to_bytes(body, inner.config.max_body_bytes).await else {
        return respond::body_too_large(inner.config.max_body_bytes);
    };
    inner.metrics.count(&route.name, Outcome::Free);
    let url = route.upstream_url(&admitted.rest, parts.uri.query());
    let headers = proxy::upstream_headers(&parts.headers, None, &route.prefix);
    match proxy::send(
        &inner.http,
        parts.method,
        url,
        headers,
        body,
        route.upstream_timeout,
    )
    .await
    {
        Ok(upstream) => proxy::relay(upstream, HeaderMap::new(), permit),
        Err(e) => respond::error(
            e.status(),
            "upstream_failed",
            "upstream_unreachable",
            e.to_string(),
        ),
    }
}
