//! The paid call: from a payment header to a delivered, charged answer.
//!
//! The order is what keeps buyers whole. Before anything is held for a payment, its
//! signature must recover to its payer (forgeries cost a hash, nothing more). The
//! upstream is called only after the facilitator verified the payment, and its
//! answer is read whole before settlement, which happens only for a status below
//! 400. Before the settle is sent, the replay guard records it durably; an outcome
//! that is not known (slow receipt, timeout, ambiguous error) is answered 503
//! `settlement_pending`, never a fresh 402, and the same header sent again settles
//! again and learns it. A buyer charged but not answered (a whole answer cut on its
//! way, a stream the upstream broke off) gets the answer again for the same request
//! and header with the original receipt: the upstream is called again, since a
//! cached answer could not survive a crash anyway. A payment redeems only the
//! request it paid for (method, path, query, body), at most `MAX_REDEMPTIONS` times.
//! Work after the checks runs in its own task, so a client hanging up cannot cut a
//! settlement in half.
//!
//! A route marked `settle_first` (long or costly jobs) settles right after verify and
//! before the upstream is called, so a buyer who moves the funds away during the job
//! gets nothing; if the upstream then fails, the charged payment stays redeemable for
//! the same request.
//!
//! Each authorization is used under a [`Hold`], an RAII guard: dropped on any early
//! return, it gives the authorization back. The 402s are built in `challenge.rs`, the
//! payment is matched in `matching.rs`, and receipts are in `receipt.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use x402::eip3009::VALID_AFTER_SKEW_SECONDS;
use x402::header::{PAYMENT_SIGNATURE, X_PAYMENT};
use x402::reason::{ErrorReason, Invalid};
use x402::time::unix_now;
use x402::wire::{
    FacilitatorRequest, PaymentPayload, PaymentRequirements, SettleResponse, X402Version,
};

use crate::admission::Admitted;
use crate::answer::Answer;
use crate::guard::{Hold, MAX_REDEMPTIONS, Refusal, RequestDigest, Stage};
use crate::metrics::{Outcome, Stage as Timing};
use crate::receipt::{self, Settled};
use crate::route::Route;
use crate::{
    Gatekeeper, GatewayConfig, InFlightToken, challenge, free, matching, proxy, public_url, respond,
};

/// Extra validity asked of an authorization beyond the upstream and settle timeouts,
/// for clock skew and the time the request spent reaching us.
pub const VALIDITY_MARGIN_SECONDS: u64 = 30;

/// The 402 reason for a payment header sent with a request other than the one it
/// paid for.
pub const BOUND_TO_ANOTHER_REQUEST: &str = "payment_bound_to_another_request";

/// Every admitted request (see `admission.rs`): free ones are proxied as they are,
/// the rest go through the gate.
pub(crate) async fn handle(
    State(inner): State<Arc<Gatekeeper>>,
    Extension(admitted): Extension<Admitted>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if admitted.route.is_free(&admitted.rest) {
        return free::serve(&inner, &admitted, parts, body).await;
    }
    paid(&inner, admitted, parts, body).await
}

/// Seconds an authorization must still be valid when a paid call starts: the
/// upstream's deadline plus the settle's.
pub(crate) fn required_validity(config: &GatewayConfig, route: &Route) -> u64 {
    route
        .upstream_timeout
        .saturating_add(config.settle_timeout)
        .as_secs()
}

async fn paid(inner: &Arc<Gatekeeper>, admitted: Admitted, parts: Parts, body: Body) -> Response {
    let route = &admitted.route;
    let metrics = &inner.metrics;
    let required = required_validity(&inner.config, route);
    let floor = required.saturating_add(VALIDITY_MARGIN_SECONDS);
    let resource_url = public_url::resource_url(inner.public_base.get().as_deref(), &parts);
    let header = parts
        .headers
        .get(PAYMENT_SIGNATURE)
        .or_else(|| parts.headers.get(X_PAYMENT));
    let Some(header) = header else {
        metrics.count(&route.name, Outcome::Challenged);
        return challenge::payment_required(route, &resource_url, floor, &parts.headers);
    };
    let payment = match matching::decode(header) {
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
    let refuse = |invalid: &Invalid| {
        metrics.count(&route.name, Outcome::Rejected);
        challenge::refused(route, &resource_url, floor, invalid)
    };
    let offered = challenge::offered(route, &resource_url, floor);
    let (chosen, key) = match matching::matched(&payment, &offered) {
        Ok(matched) => matched,
        Err(invalid) => return refuse(&invalid),
    };
    let body = match read_body(body, &inner.config).await {
        Ok(body) => body,
        Err(response) => {
            metrics.count(&route.name, Outcome::Rejected);
            return response;
        }
    };
    // In a cluster, the payment's home replica holds its ledger entry: serve it there.
    if let Some(replicas) = &inner.config.replicas
        && let Some(home) = replicas.elsewhere(&key, &parts.headers)
    {
        return crate::replicas::forward(inner, route, replicas.me(), home, parts, body).await;
    }
    let now = unix_now();
    let digest = RequestDigest::of(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &body,
    );
    let hold = match inner
        .guard
        .begin(key, digest, retain_until(&payment, &chosen, now), now)
    {
        Ok(hold) => hold,
        Err(Refusal::BoundToAnotherRequest) => {
            metrics.count(&route.name, Outcome::Rejected);
            return challenge::refused_because(
                route,
                &resource_url,
                floor,
                BOUND_TO_ANOTHER_REQUEST,
                "this payment already paid for a different request (method, path, query or body), and only that request can redeem it; sign a new payment for this request, or resend the original request with this header to get its answer",
            );
        }
        Err(Refusal::Exhausted) => {
            return refuse(&Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                format!(
                    "this payment's answer was already fetched again {MAX_REDEMPTIONS} times after its first delivery broke off; sign a new payment"
                ),
            ));
        }
        Err(Refusal::Served) => {
            return refuse(&Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "this authorization already paid for an answer, which was delivered; sign a new one",
            ));
        }
        Err(Refusal::InFlight) => {
            metrics.count(&route.name, Outcome::SettlePending);
            return respond::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_in_use",
                "settlement_pending",
                "another request is using this payment right now; retry with the same payment header shortly (it is charged at most once), do not sign a new one",
                1,
            );
        }
    };
    if *hold.stage() == Stage::Fresh
        && let Err(invalid) =
            matching::valid_long_enough(&payment.payload.authorization, now, required, floor)
    {
        return refuse(&invalid);
    }
    let permit = match admitted.slot(metrics, "; you were not charged") {
        Ok(permit) => permit,
        Err(busy) => return *busy,
    };
    let job = PaidCall {
        inner: inner.clone(),
        route: admitted.route.clone(),
        rest: admitted.rest,
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
        Ok(Err(_)) => Err(respond::body_too_large(config.max_body_bytes)),
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
                        Some(self.answer_paid(hold, receipt, true).await)
                    }
                    Settled::NotCharged(invalid) => Some(self.not_charged(hold, &invalid)),
                    Settled::Unknown(tx, why) => Some(self.pending(&mut hold, tx, why).await),
                }
            }
            Stage::Paid { receipt } => Some(self.answer_paid(hold, receipt, true).await),
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
                    receipt::reason_from_wire(v.invalid_reason.as_deref()),
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
        if self.route.settle_first {
            return self.settle_then_call(hold, client).await;
        }

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
        if let Err(refusal) = self
            .record_settling(&mut hold, "you were not charged")
            .await
        {
            return Some(refusal);
        }
        match self.settle(None).await {
            Settled::Charged(receipt) => {
                hold.paid(receipt.clone());
                Some(self.deliver(answer, hold, receipt))
            }
            Settled::NotCharged(invalid) => Some(self.not_charged(hold, &invalid)),
            Settled::Unknown(tx, why) => Some(self.pending(&mut hold, tx, why).await),
        }
    }

    /// Records `settling` durably before a settle is sent; when the ledger cannot
    /// write, the authorization is given back and the buyer is told `outcome` (what
    /// did not happen) with a 503 to retry later.
    async fn record_settling(&self, hold: &mut Hold, outcome: &str) -> Result<(), Response> {
        if let Err(e) = hold.settling(None).await {
            tracing::error!("cannot record a settlement before sending it: {e}");
            self.give_back().await;
            return Err(respond::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "ledger_write_failed",
                format!("the gateway cannot record payments right now; {outcome}, retry later"),
                5,
            ));
        }
        Ok(())
    }

    /// Settle-first: verified, now settle, and call the upstream only once charged.
    /// Not charged: 402, and the upstream is never called. Charged but the upstream
    /// failed: the payment stays `Paid`, bound to this request, for a later resend.
    async fn settle_then_call(
        self,
        mut hold: Hold,
        client: &oneshot::Sender<Response>,
    ) -> Option<Response> {
        if client.is_closed() {
            self.give_back().await;
            return None;
        }
        if let Err(refusal) = self
            .record_settling(
                &mut hold,
                "the service was not called and you were not charged",
            )
            .await
        {
            return Some(refusal);
        }
        match self.settle(None).await {
            Settled::Charged(receipt) => {
                hold.paid(receipt.clone());
                Some(self.answer_paid(hold, receipt, false).await)
            }
            Settled::NotCharged(invalid) => Some(self.not_charged(hold, &invalid)),
            Settled::Unknown(tx, why) => Some(self.pending(&mut hold, tx, why).await),
        }
    }

    /// Calls the upstream for a payment already charged (settle-first, or a buyer who
    /// paid before but has no answer: a `redemption`, which counts against the
    /// payment's redemptions once answered) and answers with the original `receipt`;
    /// if the upstream fails, the payment stays paid, for the same request later.
    async fn answer_paid(
        self,
        mut hold: Hold,
        receipt: SettleResponse,
        redemption: bool,
    ) -> Response {
        let payer = receipt
            .payer
            .unwrap_or(self.request.payment_payload.payload.authorization.from);
        match self.call_upstream(payer).await {
            Ok(answer) => {
                if redemption {
                    hold.redeemed();
                }
                self.deliver(answer, hold, receipt)
            }
            Err(failed) => {
                receipt::not_served(&receipt, self.request.x402_version, failed.status())
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
        receipt::read(receipt, earlier)
    }

    fn deliver(self, answer: Answer, hold: Hold, receipt: SettleResponse) -> Response {
        let name = self.route.name.as_str();
        self.inner.metrics.count(name, Outcome::Settled);
        self.inner
            .metrics
            .settled(name, self.request.payment_requirements.amount);
        let mut extra = HeaderMap::new();
        receipt::put(&mut extra, &receipt, self.request.x402_version);
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
        receipt::pending(&self.request, transaction, why)
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

    /// The settle said no and moved nothing: the authorization is forgotten (the buyer
    /// may use it again) and the 402 says why.
    fn not_charged(&self, hold: Hold, invalid: &Invalid) -> Response {
        hold.not_charged();
        self.inner
            .metrics
            .count(&self.route.name, Outcome::SettleFailed);
        challenge::refused(&self.route, &self.resource_url, self.floor, invalid)
    }

    fn refused(&self, invalid: &Invalid) -> Response {
        self.inner
            .metrics
            .count(&self.route.name, Outcome::Rejected);
        challenge::refused(&self.route, &self.resource_url, self.floor, invalid)
    }
}
