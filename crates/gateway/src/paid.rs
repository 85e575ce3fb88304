//! The request path of a route: challenge, check, verify, proxy, settle, deliver.
//!
//! The order is what keeps buyers whole. Before anything is held for a payment, its
//! signature must recover to its payer (forgeries cost a hash, nothing more). The
//! upstream is called only after the facilitator verified the payment, and its
//! answer is read whole before settlement, which happens only for a status below
//! 400. Before the settle is sent, the replay guard records it durably; an outcome
//! that is not known (slow receipt, timeout, ambiguous error) is answered 503
//! `settlement_pending`, never a fresh 402, and the same header sent again settles
//! again and learns it. A buyer charged but not answered (hung up, broken stream)
//! gets the answer again for the same header with the original receipt: the
//! upstream is called again, since a cached answer could not survive a crash anyway.
//! Work after the checks runs in its own task, so a client hanging up cannot cut a
//! settlement in half.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use x402::eip3009::{self, AuthorizationKey, VALID_AFTER_SKEW_SECONDS, unix_now};
use x402::header::{
    PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT, X_PAYMENT_RESPONSE,
};
use x402::reason::{ErrorReason, Invalid};
use x402::wire::{
    FacilitatorRequest, PaymentPayload, PaymentRequirements, SettleResponse, X402Version,
};

use crate::answer::Answer;
use crate::guard::{Hold, Refusal, Stage};
use crate::limits::{self, Limiter};
use crate::metrics::{Outcome, Stage as Timing};
use crate::route::{Route, check_path};
use crate::{Gatekeeper, GatewayConfig, InFlightToken, challenge, payment, proxy, respond};

/// Extra validity asked of an authorization beyond the upstream and settle timeouts,
/// for clock skew and the time the request spent reaching us.
pub const VALIDITY_MARGIN_SECONDS: u64 = 30;

/// Every request that is not a published document or an operations endpoint.
pub(crate) async fn handle(State(inner): State<Arc<Gatekeeper>>, request: Request) -> Response {
    let mut response = dispatch(&inner, request).await;
    respond::cors(response.headers_mut());
    response
}

/// Seconds an authorization must still be valid when a paid call starts: the
/// upstream's deadline plus the settle's.
pub(crate) fn required_validity(config: &GatewayConfig, route: &Route) -> u64 {
    route
        .upstream_timeout
        .saturating_add(config.settle_timeout)
        .as_secs()
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
    if !inner.is_loaded() {
        // Right after a (re)start, before the first route table: "not sold here"
        // would be a lie to a buyer retrying a payment.
        return respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "routes_not_loaded",
            "the gateway is starting; retry in a moment (a payment you are retrying is safe to send again)",
            1,
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

    let required = required_validity(&inner.config, &route);
    let floor = required.saturating_add(VALIDITY_MARGIN_SECONDS);
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
            floor,
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
    let offered = challenge::offered(&route, &resource_url, floor);
    let refuse = |invalid: &Invalid| {
        metrics.count(&route.name, Outcome::Rejected);
        refused(&route, &resource_url, floor, invalid)
    };
    let chosen = match payment::select(&payment, &offered) {
        Ok(c) => c.clone(),
        Err(invalid) => return refuse(&invalid),
    };
    if let Err(invalid) = eip3009::verify_signature(&payment, &chosen) {
        return refuse(&invalid);
    }
    let Some(key) = AuthorizationKey::of(&payment, &chosen) else {
        return refuse(&Invalid::new(
            ErrorReason::InvalidNetwork,
            format!("{} is not an EVM network", chosen.network),
        ));
    };
    let body = match read_body(body, &inner.config).await {
        Ok(body) => body,
        Err(response) => {
            metrics.count(&route.name, Outcome::Rejected);
            return response;
        }
    };
    let now = unix_now();
    let hold = match inner
        .guard
        .begin(key, retain_until(&payment, &chosen, now), now)
    {
        Ok(hold) => hold,
        Err(Refusal::Served) => {
            return refuse(&Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "this authorization already paid for an answer, which was delivered; sign a new one",
            ));
        }
        Err(Refusal::InFlight) => {
            metrics.count(&route.name, Outcome::Limited);
            return respond::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_in_use",
                "settlement_pending",
                "another request is using this payment right now; retry with the same payment header shortly (it is charged at most once), do not sign a new one",
                1,
            );
        }
    };
    if *hold.stage() == Stage::Fresh {
        let authorization = &payment.payload.authorization;
        if let Err(invalid) = eip3009::check_validity(authorization, now) {
            return refuse(&invalid);
        }
        let needed = now.saturating_add(required);
        if authorization.valid_before < alloy::primitives::U256::from(needed) {
            return refuse(&Invalid::new(
                ErrorReason::ExpiresTooSoon,
                format!(
                    "the authorization is valid until {}, but this service may take {}s to answer and settle, so it must be valid until at least {needed}; sign one with validBefore >= {needed} (now + {floor}s is safe)",
                    authorization.valid_before, required
                ),
            ));
        }
    }
    let permit = match limiter.as_deref().map(Limiter::enter).transpose() {
        Ok(permit) => permit.flatten(),
        Err(limits::Full) => {
            metrics.count(&route.name, Outcome::Limited);
            return at_capacity(&route.name, "; you were not charged");
        }
    };
    let job = PaidCall {
        inner: inner.clone(),
        route,
        rest,
        parts,
        body,
        request: facilitator_request(payment, chosen),
        resource_url,
        floor,
        permit,
        _token: inner.track(),
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let response = job.run(hold, &tx).await;
        if let Some(response) = response {
            let _ = tx.send(response);
        }
    });
    rx.await.unwrap_or_else(|_| {
        respond::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "paid_call_aborted",
            "the gateway lost this request; retry with the same payment header (it is charged at most once)",
        )
    })
}

/// How long a served authorization is remembered: until it expires, but no longer
/// than its requirement's window (plus skew), after which a replay meets the token's
/// own record of the nonce at verification. Long-lived authorizations (obol's buyer
/// signs 30 days out) so cost no memory past that.
fn retain_until(payment: &PaymentPayload, chosen: &PaymentRequirements, now: u64) -> u64 {
    let valid_before =
        u64::try_from(payment.payload.authorization.valid_before).unwrap_or(u64::MAX);
    let cap = now
        .saturating_add(chosen.max_timeout_seconds)
        .saturating_add(VALID_AFTER_SKEW_SECONDS);
    valid_before.min(cap)
}

/// The request body, read under the gateway's body deadline and size limit before
/// anything is held for the payment, so a slow or huge upload holds nothing.
async fn read_body(body: Body, config: &GatewayConfig) -> Result<Bytes, Response> {
    match tokio::time::timeout(
        config.body_timeout,
        axum::body::to_bytes(body, config.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(body_too_large(config.max_body_bytes)),
        Err(_) => Err(respond::error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request_body_timeout",
            format!(
                "the request body did not arrive within {:?}; you were not charged",
                config.body_timeout
            ),
        )),
    }
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

/// What a settle told us about the money.
enum Settled {
    /// Charged; the answer must carry this receipt.
    Charged(SettleResponse),
    /// Not charged, for this reason.
    NotCharged(Invalid),
    /// Not known yet; the transaction if one was named.
    Unknown(Option<alloy::primitives::B256>, String),
}

/// One paid call past the checks, owned by its own task.
struct PaidCall {
    inner: Arc<Gatekeeper>,
    route: Arc<Route>,
    rest: String,
    parts: Parts,
    body: Bytes,
    request: FacilitatorRequest,
    resource_url: String,
    floor: u64,
    permit: Option<OwnedSemaphorePermit>,
    _token: InFlightToken,
}

impl PaidCall {
    async fn run(self, mut hold: Hold, client: &oneshot::Sender<Response>) -> Option<Response> {
        match hold.stage().clone() {
            Stage::Fresh => self.first_use(hold, client).await,
            Stage::Settling { transaction } => {
                let settled = self.settle(transaction).await;
                match settled {
                    Settled::Charged(receipt) => {
                        hold.paid(receipt.clone());
                        Some(self.redeem(hold, receipt).await)
                    }
                    Settled::NotCharged(invalid) => {
                        hold.not_charged();
                        Some(self.refused(&invalid))
                    }
                    Settled::Unknown(tx, why) => Some(self.pending(&mut hold, tx, why).await),
                }
            }
            Stage::Paid { receipt } => Some(self.redeem(hold, receipt).await),
            Stage::Served => Some(self.refused(&Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "this authorization already paid for an answer; sign a new one",
            ))),
        }
    }

    /// Verify, call the upstream, settle, deliver.
    async fn first_use(
        self,
        mut hold: Hold,
        client: &oneshot::Sender<Response>,
    ) -> Option<Response> {
        let inner = &self.inner;
        let name = self.route.name.as_str();
        let verified = self
            .timed(
                Timing::Verify,
                inner.config.verify_timeout,
                inner.facilitator.verify(&self.request),
            )
            .await;
        let verified = match verified {
            Err(_) => {
                let why = format!("it did not answer within {:?}", inner.config.verify_timeout);
                return Some(self.facilitator_down(&why).await);
            }
            Ok(Err(e)) => {
                tracing::warn!(route = name, "facilitator verify failed: {e}");
                return Some(self.facilitator_down("it could not be reached").await);
            }
            Ok(Ok(v)) if !v.is_valid => {
                let invalid = Invalid::new(
                    reason_from_wire(v.invalid_reason.as_deref()),
                    v.invalid_message
                        .or(v.invalid_reason)
                        .unwrap_or_else(|| "the facilitator refused the payment".into()),
                );
                return Some(self.refused(&invalid));
            }
            Ok(Ok(v)) => v,
        };
        let payer = verified
            .payer
            .unwrap_or(self.request.payment_payload.payload.authorization.from);
        inner.metrics.count(name, Outcome::Paid);

        let answer = match self.call_upstream(payer).await {
            Ok(answer) => answer,
            Err(response) => {
                self.give_back().await;
                return Some(response);
            }
        };
        if client.is_closed() {
            self.give_back().await;
            inner.metrics.count(name, Outcome::UpstreamFailed);
            return None;
        }
        if let Err(e) = hold.settling(None).await {
            tracing::error!("cannot record a settlement before sending it: {e}");
            self.give_back().await;
            return Some(respond::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "ledger_write_failed",
                "the gateway cannot record payments right now; you were not charged, retry later",
                5,
            ));
        }
        match self.settle(None).await {
            Settled::Charged(receipt) => {
                hold.paid(receipt.clone());
                Some(self.deliver(answer, hold, receipt))
            }
            Settled::NotCharged(invalid) => {
                hold.not_charged();
                Some(self.refused(&invalid))
            }
            Settled::Unknown(tx, why) => Some(self.pending(&mut hold, tx, why).await),
        }
    }

    /// The buyer paid before but has no answer: call the upstream again and answer
    /// with the original receipt; if the upstream fails now, the payment stays
    /// redeemable.
    async fn redeem(self, hold: Hold, receipt: SettleResponse) -> Response {
        let payer = receipt
            .payer
            .unwrap_or(self.request.payment_payload.payload.authorization.from);
        match self.call_upstream(payer).await {
            Ok(answer) => self.deliver(answer, hold, receipt),
            Err(failed) => {
                let mut response = respond::retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "paid_not_served",
                    "upstream_failed_after_payment",
                    format!(
                        "you already paid for this call (transaction {}), but the service failed to answer ({}); retry with the same payment header to get the answer, it is not charged again",
                        receipt.transaction.unwrap_or_default(),
                        failed.status()
                    ),
                    5,
                );
                receipt_headers(response.headers_mut(), &receipt, self.request.x402_version);
                response
            }
        }
    }

    /// Calls the upstream and reads its answer; any failure is the upstream's answer
    /// or a 5xx of ours, and nothing was charged for it.
    async fn call_upstream(&self, payer: alloy::primitives::Address) -> Result<Answer, Response> {
        let inner = &self.inner;
        let name = self.route.name.as_str();
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
            .observe(name, Timing::Upstream, started.elapsed());
        let upstream = match upstream {
            Err(e) => {
                inner.metrics.count(name, Outcome::UpstreamFailed);
                return Err(respond::error(
                    e.status(),
                    "upstream_failed",
                    "upstream_unreachable",
                    format!("{e}; you were not charged, retry with the same payment"),
                ));
            }
            Ok(r) if r.status().as_u16() >= 400 => {
                inner.metrics.count(name, Outcome::UpstreamFailed);
                return Err(proxy::relay(r, HeaderMap::new(), ()));
            }
            Ok(r) => r,
        };
        Answer::read(upstream, self.route.upstream_timeout)
            .await
            .map_err(|cut| {
                inner.metrics.count(name, Outcome::UpstreamFailed);
                respond::error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    "upstream_body_cut",
                    format!("{cut}; you were not charged, retry with the same payment"),
                )
            })
    }

    /// Settles; settling again is how an earlier, unknown outcome is learned
    /// (`earlier` is the transaction that settle named, if any).
    async fn settle(&self, earlier: Option<alloy::primitives::B256>) -> Settled {
        let inner = &self.inner;
        let settled = self
            .timed(
                Timing::Settle,
                inner.config.settle_timeout,
                inner.facilitator.settle(&self.request),
            )
            .await;
        let receipt = match settled {
            Ok(Ok(receipt)) => receipt,
            Ok(Err(e)) => {
                tracing::warn!(route = %self.route.name, "settle failed: {e}");
                return Settled::Unknown(earlier, "the facilitator failed while settling".into());
            }
            Err(_) => {
                return Settled::Unknown(
                    earlier,
                    format!(
                        "the facilitator did not settle within {:?}",
                        inner.config.settle_timeout
                    ),
                );
            }
        };
        if receipt.success {
            return Settled::Charged(receipt);
        }
        let reason = reason_from_wire(receipt.error_reason.as_deref());
        if let Some(tx) = receipt.transaction {
            // A transaction went out: until the chain says otherwise, money may move.
            return Settled::Unknown(
                Some(tx),
                receipt
                    .error_message
                    .unwrap_or_else(|| "the settlement is not confirmed yet".into()),
            );
        }
        if reason == ErrorReason::NonceAlreadyUsed {
            // The token spent this authorization, and it pays this seller exactly
            // this price: whoever submitted it (our earlier settle, whose answer was
            // lost, or someone who front-ran it), the buyer was charged and is
            // served. A facilitator that keeps no journal can only say "used".
            let authorization = &self.request.payment_payload.payload.authorization;
            return Settled::Charged(SettleResponse {
                success: true,
                error_reason: None,
                error_message: None,
                payer: Some(authorization.from),
                transaction: earlier,
                network: self.request.payment_requirements.network.clone(),
                amount: Some(authorization.value),
                extensions: None,
            });
        }
        let message = receipt
            .error_message
            .unwrap_or_else(|| "settlement failed".into());
        Settled::NotCharged(Invalid::new(reason, message))
    }

    fn deliver(self, answer: Answer, hold: Hold, receipt: SettleResponse) -> Response {
        let name = self.route.name.as_str();
        self.inner.metrics.count(name, Outcome::Settled);
        self.inner
            .metrics
            .settled(name, self.request.payment_requirements.amount);
        let mut extra = HeaderMap::new();
        receipt_headers(&mut extra, &receipt, self.request.x402_version);
        answer.deliver(extra, hold, self.permit)
    }

    /// 503 `settlement_pending`: the settle may have moved the money; the same header
    /// sent again finds out and answers.
    async fn pending(
        &self,
        hold: &mut Hold,
        transaction: Option<alloy::primitives::B256>,
        why: String,
    ) -> Response {
        if let Err(e) = hold.settling(transaction).await {
            tracing::error!("cannot record a pending settlement: {e}");
        }
        self.inner
            .metrics
            .count(&self.route.name, Outcome::SettlePending);
        let shown = transaction.map_or_else(|| "not known yet".to_string(), |t| t.to_string());
        let mut response = respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "settlement_pending",
            "settlement_pending",
            format!(
                "{why}; the outcome of your payment is not known yet (transaction {shown}). Do not sign a new payment: retry with the same payment header, and you get the answer if it was charged, or a 402 if it was not; it is charged at most once"
            ),
            5,
        );
        let receipt = SettleResponse {
            success: false,
            error_reason: Some("settlement_pending".to_string()),
            error_message: Some(why),
            payer: Some(self.request.payment_payload.payload.authorization.from),
            transaction,
            network: self.request.payment_requirements.network.clone(),
            amount: None,
            extensions: None,
        };
        receipt_headers(response.headers_mut(), &receipt, self.request.x402_version);
        if let Some(tx) = transaction
            && let Ok(v) = HeaderValue::from_str(&tx.to_string())
        {
            response.headers_mut().insert("x-settlement-transaction", v);
        }
        response
    }

    /// Runs `work` under `limit`, recording its latency.
    async fn timed<T>(
        &self,
        stage: Timing,
        limit: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, tokio::time::error::Elapsed> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, work).await;
        self.inner
            .metrics
            .observe(&self.route.name, stage, started.elapsed());
        outcome
    }

    /// Nothing will be settled: the facilitator frees its reservation too.
    async fn give_back(&self) {
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

    fn refused(&self, invalid: &Invalid) -> Response {
        self.inner
            .metrics
            .count(&self.route.name, Outcome::Rejected);
        refused(&self.route, &self.resource_url, self.floor, invalid)
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
fn refused(route: &Route, resource_url: &str, floor: u64, invalid: &Invalid) -> Response {
    let failure = json!({ "reason": invalid.reason.as_str(), "message": invalid.message });
    let mut response = challenge_response(
        route,
        resource_url,
        floor,
        &invalid.message,
        Some(failure),
        false,
    );
    if let Ok(v) = HeaderValue::from_str(invalid.reason.as_str()) {
        response.headers_mut().insert("x-payment-invalid-reason", v);
    }
    response
}

fn challenge_response(
    route: &Route,
    resource_url: &str,
    floor: u64,
    error: &str,
    failure: Option<Value>,
    html: bool,
) -> Response {
    let challenge = match challenge::build(route, resource_url, floor, error, failure) {
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
