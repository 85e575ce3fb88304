//! The request path of a route: challenge, check, verify, proxy, settle, stream.
//!
//! The order is what keeps buyers whole: the upstream is called only after the
//! facilitator verified the payment, settlement happens only once the upstream's
//! status is known and below 400, and the body is streamed only after the money
//! moved. Every other outcome gives the authorization back so the buyer can retry
//! with it. Work after verification runs in its own task, so a client hanging up
//! cannot cut a settlement in half (and a client gone before settlement is not
//! charged).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use x402::eip3009::unix_now;
use x402::header::{
    PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT, X_PAYMENT_RESPONSE,
};
use x402::reason::{ErrorReason, Invalid};
use x402::wire::{
    FacilitatorRequest, PaymentPayload, PaymentRequirements, SettleResponse, X402Version,
};

use crate::guard::{GuardKey, Refusal};
use crate::limits::{self, Limiter};
use crate::metrics::{Outcome, Stage};
use crate::route::{Route, check_path};
use crate::{Gatekeeper, GatewayConfig, InFlightToken, challenge, payment, proxy, respond};

/// Every request that is not a published document or an operations endpoint.
pub(crate) async fn handle(State(inner): State<Arc<Gatekeeper>>, request: Request) -> Response {
    let mut response = dispatch(&inner, request).await;
    respond::cors(response.headers_mut());
    response
}

async fn dispatch(inner: &Arc<Gatekeeper>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    if let Err(e) = check_path(&path) {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "path_traversal",
            e.to_string(),
        );
    }
    let snapshot = inner.snapshot();
    let Some((route, rest)) = snapshot.table.find(&path) else {
        return respond::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no_route",
            format!("nothing is sold at {path}; the services are listed at /api/services.json"),
        );
    };
    let (route, rest) = (route.clone(), rest.to_string());
    let limiter = snapshot.limiters.get(&route.name).cloned();
    drop(snapshot);

    if request.method() == Method::OPTIONS {
        return respond::preflight();
    }
    let metrics = &inner.metrics;
    if let Some(reason) = &route.unavailable {
        metrics.count(&route.name, Outcome::Unavailable);
        return respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "not_ready",
            format!(
                "{} is not being sold right now: {reason}; you were not charged",
                route.name
            ),
            30,
        );
    }
    if let Some(l) = &limiter
        && !l.admit()
    {
        metrics.count(&route.name, Outcome::Limited);
        return respond::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rps_limit",
            format!(
                "{} accepts at most {} requests per second",
                route.name,
                l.limits().rps.unwrap_or(0)
            ),
            1,
        );
    }
    let (parts, body) = request.into_parts();
    if route.is_free(&rest) {
        return free(inner, &route, &rest, parts, body, limiter.as_deref()).await;
    }

    let resource_url = resource_url(&inner.config, &parts);
    let header = parts
        .headers
        .get(PAYMENT_SIGNATURE)
        .or_else(|| parts.headers.get(X_PAYMENT));
    let Some(header) = header else {
        metrics.count(&route.name, Outcome::Challenged);
        return challenge_response(
            &route,
            &resource_url,
            "payment required",
            None,
            wants_html(&parts.headers),
        );
    };
    let payment = match header
        .to_str()
        .map_err(|_| x402::header::HeaderError::NotBase64("non-ASCII bytes".into()))
        .and_then(x402::header::decode_payment)
    {
        Ok(p) => p,
        Err(e) => {
            metrics.count(&route.name, Outcome::Malformed);
            return respond::error(
                StatusCode::BAD_REQUEST,
                "invalid_payment_header",
                e.code(),
                format!(
                    "{e}; request the resource without a payment header to get the requirements"
                ),
            );
        }
    };
    let offered = challenge::offered(&route, &resource_url);
    let now = unix_now();
    let chosen = match payment::select(&payment, &offered, now) {
        Ok(c) => c.clone(),
        Err(invalid) => {
            metrics.count(&route.name, Outcome::Rejected);
            return refused(&route, &resource_url, &invalid);
        }
    };
    let authorization = &payment.payload.authorization;
    let key = GuardKey {
        chain_id: chosen.network.chain_id().unwrap_or_default(),
        asset: chosen.asset,
        payer: authorization.from,
        nonce: authorization.nonce,
    };
    if let Err(refusal) = inner.guard.begin(&key, now) {
        metrics.count(&route.name, Outcome::Rejected);
        let message = match refusal {
            Refusal::InFlight => {
                "this authorization is being used by another request; sign a new one"
            }
            Refusal::Settled => "this authorization already paid for a call; sign a new one",
        };
        return refused(
            &route,
            &resource_url,
            &Invalid::new(ErrorReason::NonceAlreadyUsed, message),
        );
    }
    let permit = match limiter.as_deref().map(Limiter::enter).transpose() {
        Ok(permit) => permit.flatten(),
        Err(limits::Full) => {
            inner.guard.release(&key);
            metrics.count(&route.name, Outcome::Limited);
            return at_capacity(&route.name, "; you were not charged");
        }
    };
    let body = match axum::body::to_bytes(body, inner.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            inner.guard.release(&key);
            metrics.count(&route.name, Outcome::Rejected);
            return body_too_large(inner.config.max_body_bytes);
        }
    };
    let facilitator_request = facilitator_request(payment, chosen);
    let job = PaidCall {
        inner: inner.clone(),
        route,
        rest,
        parts,
        body,
        request: facilitator_request,
        key,
        resource_url,
        permit,
        _token: inner.track(),
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        if let Some(response) = job.run(&tx).await {
            let _ = tx.send(response);
        }
    });
    rx.await.unwrap_or_else(|_| {
        respond::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "paid_call_aborted",
            "the gateway lost this request; you were not charged",
        )
    })
}

/// The facilitator gets the requirement in the buyer's version: v2 exactly as offered
/// in the header (remote facilitators deep-compare it with `accepted`), v1 with its
/// per-entry resource fields.
fn facilitator_request(payment: PaymentPayload, chosen: PaymentRequirements) -> FacilitatorRequest {
    let requirement = match payment.x402_version {
        X402Version::V1 => chosen,
        X402Version::V2 => PaymentRequirements {
            resource: None,
            description: None,
            mime_type: None,
            output_schema: None,
            ..chosen
        },
    };
    FacilitatorRequest {
        x402_version: payment.x402_version,
        payment_payload: payment,
        payment_requirements: requirement,
    }
}

/// One verified-or-about-to-be-verified paid call, owned by its own task.
struct PaidCall {
    inner: Arc<Gatekeeper>,
    route: Arc<Route>,
    rest: String,
    parts: Parts,
    body: Bytes,
    request: FacilitatorRequest,
    key: GuardKey,
    resource_url: String,
    permit: Option<OwnedSemaphorePermit>,
    _token: InFlightToken,
}

impl PaidCall {
    async fn run(self, client: &oneshot::Sender<Response>) -> Option<Response> {
        let inner = &self.inner;
        let name = self.route.name.as_str();
        let verified = self
            .timed(
                Stage::Verify,
                inner.config.verify_timeout,
                inner.facilitator.verify(&self.request),
            )
            .await;
        let verified = match verified {
            Err(_) => {
                let why = format!("it did not answer within {:?}", inner.config.verify_timeout);
                return Some(self.facilitator_down(&why).await);
            }
            Ok(Err(e)) => return Some(self.facilitator_down(&e.to_string()).await),
            Ok(Ok(v)) if !v.is_valid => {
                inner.guard.release(&self.key);
                inner.metrics.count(name, Outcome::Rejected);
                let invalid = Invalid::new(
                    reason_from_wire(v.invalid_reason.as_deref()),
                    v.invalid_message
                        .or(v.invalid_reason)
                        .unwrap_or_else(|| "the facilitator refused the payment".into()),
                );
                return Some(refused(&self.route, &self.resource_url, &invalid));
            }
            Ok(Ok(v)) => v,
        };
        let payer = verified
            .payer
            .unwrap_or(self.request.payment_payload.payload.authorization.from);
        inner.metrics.count(name, Outcome::Paid);

        let url = self.route.upstream_url(&self.rest, self.parts.uri.query());
        let headers = proxy::upstream_headers(&self.parts.headers, Some(payer), &self.route.prefix);
        let started = Instant::now();
        let upstream = proxy::send(
            &inner.http,
            self.parts.method.clone(),
            url,
            headers,
            self.body.clone(),
            self.route.upstream_timeout,
        )
        .await;
        inner
            .metrics
            .observe(name, Stage::Upstream, started.elapsed());
        let upstream = match upstream {
            Err(e) => {
                self.give_back().await;
                inner.metrics.count(name, Outcome::UpstreamFailed);
                return Some(respond::error(
                    e.status(),
                    "upstream_failed",
                    "upstream_unreachable",
                    format!("{e}; you were not charged, retry with the same payment"),
                ));
            }
            Ok(r) if r.status().as_u16() >= 400 => {
                self.give_back().await;
                inner.metrics.count(name, Outcome::UpstreamFailed);
                return Some(proxy::relay(r, HeaderMap::new(), ()));
            }
            Ok(r) => r,
        };
        if client.is_closed() {
            self.give_back().await;
            inner.metrics.count(name, Outcome::UpstreamFailed);
            return None;
        }

        let settled = self
            .timed(
                Stage::Settle,
                inner.config.settle_timeout,
                inner.facilitator.settle(&self.request),
            )
            .await;
        let version = self.request.x402_version;
        let receipt = match settled {
            Ok(Ok(receipt)) => receipt,
            Ok(Err(e)) => return Some(self.settle_unknown(e.to_string())),
            Err(_) => {
                let why = format!(
                    "the facilitator did not settle within {:?}",
                    inner.config.settle_timeout
                );
                return Some(self.settle_unknown(why));
            }
        };
        if !receipt.success {
            inner.guard.release(&self.key);
            inner.metrics.count(name, Outcome::SettleFailed);
            let invalid = Invalid::new(
                reason_from_wire(receipt.error_reason.as_deref()),
                receipt
                    .error_message
                    .clone()
                    .unwrap_or_else(|| "settlement failed".into()),
            );
            let mut response = refused(&self.route, &self.resource_url, &invalid);
            receipt_headers(response.headers_mut(), &receipt, version);
            return Some(response);
        }
        let valid_before = self
            .request
            .payment_payload
            .payload
            .authorization
            .valid_before;
        inner.guard.settle(&self.key, valid_before);
        inner.metrics.count(name, Outcome::Settled);
        inner
            .metrics
            .settled(name, self.request.payment_requirements.amount);
        let mut extra = HeaderMap::new();
        receipt_headers(&mut extra, &receipt, version);
        Some(proxy::relay(upstream, extra, self.permit))
    }

    /// Runs `work` under `limit`, recording its latency as `stage`.
    async fn timed<T>(
        &self,
        stage: Stage,
        limit: std::time::Duration,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, tokio::time::error::Elapsed> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, work).await;
        self.inner
            .metrics
            .observe(&self.route.name, stage, started.elapsed());
        outcome
    }

    /// Returns the authorization to the buyer: nothing will be settled for it.
    async fn give_back(&self) {
        self.inner.guard.release(&self.key);
        if let Err(e) = self.inner.facilitator.release(&self.request).await {
            tracing::warn!("facilitator could not release an authorization: {e}");
        }
    }

    async fn facilitator_down(&self, why: &str) -> Response {
        self.give_back().await;
        self.inner
            .metrics
            .count(&self.route.name, Outcome::FacilitatorUnavailable);
        respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "facilitator_unavailable",
            "facilitator_unreachable",
            format!(
                "the payment could not be verified because the facilitator failed ({why}); the service was not called and you were not charged"
            ),
            5,
        )
    }

    /// The facilitator failed while settling: the outcome is unknown to us, so the
    /// body is withheld and the buyer is told to check before paying again.
    fn settle_unknown(&self, why: String) -> Response {
        self.inner.guard.release(&self.key);
        self.inner
            .metrics
            .count(&self.route.name, Outcome::SettleFailed);
        let receipt = SettleResponse {
            success: false,
            error_reason: Some(ErrorReason::UnexpectedSettleError.as_str().to_string()),
            error_message: Some(why.clone()),
            payer: Some(self.request.payment_payload.payload.authorization.from),
            transaction: None,
            network: self.request.payment_requirements.network.clone(),
            amount: None,
            extensions: None,
        };
        let mut response = respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "settlement_failed",
            ErrorReason::UnexpectedSettleError.as_str(),
            format!(
                "{why}; the answer was withheld; retrying with the same payment is safe (it is charged at most once)"
            ),
            5,
        );
        receipt_headers(response.headers_mut(), &receipt, self.request.x402_version);
        response
    }
}

/// Free routes and free paths: proxied as they are, no payment headers touched but
/// stripped of forged payer identity.
async fn free(
    inner: &Arc<Gatekeeper>,
    route: &Route,
    rest: &str,
    parts: Parts,
    body: Body,
    limiter: Option<&Limiter>,
) -> Response {
    let permit = match limiter.map(Limiter::enter).transpose() {
        Ok(p) => p.flatten(),
        Err(limits::Full) => {
            inner.metrics.count(&route.name, Outcome::Limited);
            return at_capacity(&route.name, "");
        }
    };
    let Ok(body) = axum::body::to_bytes(body, inner.config.max_body_bytes).await else {
        return body_too_large(inner.config.max_body_bytes);
    };
    inner.metrics.count(&route.name, Outcome::Free);
    let url = route.upstream_url(rest, parts.uri.query());
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

/// 503 while every in-flight slot of the route is taken; `tail` adds to the hint.
fn at_capacity(route: &str, tail: &str) -> Response {
    respond::retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "max_in_flight",
        format!("{route} is at its limit of concurrent calls{tail}"),
        1,
    )
}

/// 413 for a request body over the gateway's limit.
fn body_too_large(limit: usize) -> Response {
    respond::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "max_body_bytes",
        format!("request bodies are limited to {limit} bytes"),
    )
}

/// A 402 that says why the payment was refused, with fresh requirements.
fn refused(route: &Route, resource_url: &str, invalid: &Invalid) -> Response {
    let failure = json!({ "reason": invalid.reason.as_str(), "message": invalid.message });
    let mut response =
        challenge_response(route, resource_url, &invalid.message, Some(failure), false);
    if let Ok(v) = HeaderValue::from_str(invalid.reason.as_str()) {
        response.headers_mut().insert("x-payment-invalid-reason", v);
    }
    response
}

fn challenge_response(
    route: &Route,
    resource_url: &str,
    error: &str,
    failure: Option<Value>,
    html: bool,
) -> Response {
    let challenge = match challenge::build(route, resource_url, error, failure) {
        Ok(c) => c,
        Err(e) => {
            return respond::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "challenge_encoding",
                e.to_string(),
            );
        }
    };
    let mut response = if html {
        (
            StatusCode::PAYMENT_REQUIRED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            challenge::html_page(route, &challenge),
        )
            .into_response()
    } else {
        (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(challenge.body.clone()),
        )
            .into_response()
    };
    respond::put(response.headers_mut(), PAYMENT_REQUIRED, &challenge.header);
    response.headers_mut().insert(
        header::LINK,
        HeaderValue::from_static("</api/services.json>; rel=\"catalog\""),
    );
    response
}

fn receipt_headers(headers: &mut HeaderMap, receipt: &SettleResponse, version: X402Version) {
    match x402::header::encode(&receipt.to_wire(version)) {
        Ok(encoded) => {
            respond::put(headers, PAYMENT_RESPONSE, &encoded);
            respond::put(headers, X_PAYMENT_RESPONSE, &encoded);
        }
        Err(e) => tracing::error!("cannot encode a payment receipt: {e}"),
    }
}

/// Maps a facilitator's reason string back to ours; unknown codes become "invalid
/// payload" (the facilitator's message is kept beside it).
fn reason_from_wire(reason: Option<&str>) -> ErrorReason {
    reason
        .and_then(ErrorReason::from_wire)
        .unwrap_or(ErrorReason::InvalidPayload)
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The URL a buyer pays for: the public base URL if configured, else what the request
/// itself says (`Host`, `X-Forwarded-Proto`).
fn resource_url(config: &GatewayConfig, parts: &Parts) -> String {
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    if let Some(base) = &config.public_base_url {
        return format!("{}{path}", base.trim_end_matches('/'));
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let scheme = header("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host = header("host").unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_reasons_map_back() {
        assert_eq!(
            reason_from_wire(Some("invalid_exact_evm_nonce_already_used")),
            ErrorReason::NonceAlreadyUsed
        );
        assert_eq!(
            reason_from_wire(Some("made_up")),
            ErrorReason::InvalidPayload
        );
        assert_eq!(reason_from_wire(None), ErrorReason::InvalidPayload);
    }
}
