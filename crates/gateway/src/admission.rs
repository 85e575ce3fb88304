//! Admission: the tower layer in front of every sold route, deciding whether a
//! request may reach the gate at all before anything about payment is looked at.
//!
//! In order: the path must be canonical (a traversal could escape the route prefix at
//! the upstream), the gateway must have its first route table (before it, "not sold
//! here" would be a lie to a buyer retrying a payment), a route must sell the path,
//! CORS preflights are answered, a route marked unavailable answers 503 and one over
//! its rate answers 429. What passes carries an [`Admitted`] to the handler.
//!
//! The in-flight limit is admission too, but taken later and by the handler: a paid
//! call takes its slot only after its payment was matched and held (a forged payment
//! must not use up a slot), and the slot lives as long as the response body, which a
//! tower layer's future does not.
//!
//! The rate is `governor`'s GCRA (a token bucket of `rps` with a burst of `rps`,
//! checked without a lock). The in-flight slots stay a semaphore taken with
//! `try_acquire_owned`: tower's `ConcurrencyLimit` waits for a slot instead of
//! failing fast (it needs `LoadShed` in front to refuse) and gives its permit back
//! when the response future resolves, before a streamed body has ended.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultDirectRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Metrics, Outcome};
use crate::route::{Limits, Route, check_path};
use crate::{Gatekeeper, respond};

/// Live limit state for one route; kept across table swaps while its limits stay the
/// same, so a swap never resets a busy route's budget.
pub(crate) struct Limiter {
    limits: Limits,
    rate: Option<Rate>,
    in_flight: Option<Arc<Semaphore>>,
}

/// A route's request rate.
enum Rate {
    /// `rps: 0`: nothing is admitted.
    Closed,
    /// At most `rps` a second, in bursts of up to `rps`.
    Limited(DefaultDirectRateLimiter),
}

impl Limiter {
    /// State for `limits`, with a full burst and every slot free.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            rate: limits.rps.map(|rps| match NonZeroU32::new(rps) {
                None => Rate::Closed,
                Some(rps) => {
                    Rate::Limited(DefaultDirectRateLimiter::direct(Quota::per_second(rps)))
                }
            }),
            in_flight: limits
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n as usize))),
        }
    }

    /// The limits this state enforces.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one request from the rate; false when the route is over it.
    fn admit(&self) -> bool {
        match &self.rate {
            None => true,
            Some(Rate::Closed) => false,
            Some(Rate::Limited(gcra)) => gcra.check().is_ok(),
        }
    }

    /// A slot at the upstream, held until the returned permit drops; `None` inside
    /// `Ok` when the route has no in-flight limit, `Err` when every slot is taken.
    fn enter(&self) -> Result<Option<OwnedSemaphorePermit>, tokio::sync::TryAcquireError> {
        self.in_flight
            .as_ref()
            .map(|slots| slots.clone().try_acquire_owned())
            .transpose()
    }
}

/// A request the route's admission let through: its route, the path below the
/// route's prefix, and the route's limits for the slot taken later.
#[derive(Clone)]
pub(crate) struct Admitted {
    pub(crate) route: Arc<Route>,
    pub(crate) rest: String,
    limiter: Option<Arc<Limiter>>,
}

impl Admitted {
    /// A slot at the upstream, held until the returned permit drops (hand it to the
    /// response body); 503 `busy` when every slot is taken, never a queue. `tail` adds
    /// to the hint. (Boxed: a response is large and this is the rare path.)
    pub(crate) fn slot(
        &self,
        metrics: &Metrics,
        tail: &str,
    ) -> Result<Option<OwnedSemaphorePermit>, Box<Response>> {
        match self.limiter.as_deref().map(Limiter::enter).transpose() {
            Ok(permit) => Ok(permit.flatten()),
            Err(_) => {
                metrics.count(&self.route.name, Outcome::Limited);
                Err(Box::new(respond::retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "max_in_flight",
                    format!(
                        "{} is at its limit of concurrent calls{tail}",
                        self.route.name
                    ),
                    1,
                )))
            }
        }
    }
}

/// The layer's work (mounted with `axum::middleware::from_fn_with_state`): admits the
/// request and hands it on with its [`Admitted`], or answers for it.
pub(crate) async fn admit(
    State(inner): State<Arc<Gatekeeper>>,
    mut request: Request,
    next: Next,
) -> Response {
    match check(&inner, &request) {
        Ok(admitted) => {
            request.extensions_mut().insert(admitted);
            next.run(request).await
        }
        Err(refusal) => *refusal,
    }
}

fn check(inner: &Gatekeeper, request: &Request) -> Result<Admitted, Box<Response>> {
    let path = request.uri().path();
    if let Err(e) = check_path(path) {
        return Err(Box::new(respond::error(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "path_traversal",
            e.to_string(),
        )));
    }
    if !inner.is_loaded() {
        return Err(Box::new(respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "routes_not_loaded",
            "the gateway is starting; retry in a moment (a payment you are retrying is safe to send again)",
            1,
        )));
    }
    let snapshot = inner.snapshot();
    let Some((route, rest)) = snapshot.table.find(path) else {
        return Err(Box::new(respond::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no_route",
            format!("nothing is sold at {path}; the services are listed at /api/services.json"),
        )));
    };
    let admitted = Admitted {
        route: route.clone(),
        rest: rest.to_string(),
        limiter: snapshot.limiters.get(&route.name).cloned(),
    };
    drop(snapshot);

    if request.method() == Method::OPTIONS {
        return Err(Box::new(respond::preflight()));
    }
    let route = &admitted.route;
    // A request the route never forwards (a model server's admin API) is answered
    // here, before any 402: nobody may pay for what would not be served.
    if !route.forwards(request.method().as_str(), &admitted.rest) {
        return Err(Box::new(not_forwarded(
            route,
            request.method(),
            &admitted.rest,
        )));
    }
    if let Some(reason) = &route.unavailable {
        inner.metrics.count(&route.name, Outcome::Unavailable);
        return Err(Box::new(respond::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "not_ready",
            format!(
                "{} is not being sold right now: {reason}; you were not charged",
                route.name
            ),
            30,
        )));
    }
    if let Some(l) = &admitted.limiter
        && !l.admit()
    {
        inner.metrics.count(&route.name, Outcome::Limited);
        return Err(Box::new(respond::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rps_limit",
            format!(
                "{} accepts at most {} requests per second",
                route.name,
                l.limits().rps.unwrap_or(0)
            ),
            1,
        )));
    }
    Ok(admitted)
}

/// The 404 for a request outside the route's allow-list: what is sold, and how the
/// seller opens more.
fn not_forwarded(route: &Route, method: &Method, rest: &str) -> Response {
    let sold: Vec<String> = route
        .allowed
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    let shown = if rest.is_empty() { "/" } else { rest };
    respond::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "path_not_sold",
        format!(
            "{} sells only {}; {method} {shown} is not forwarded and nothing was charged. The seller can open it with --allow-path '{method} {shown}' (agora sell inference)",
            route.name,
            sold.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_admits_its_burst_then_refuses() {
        let l = Limiter::new(Limits {
            rps: Some(3),
            max_in_flight: None,
        });
        assert!(l.admit() && l.admit() && l.admit());
        assert!(!l.admit());
        let closed = Limiter::new(Limits {
            rps: Some(0),
            max_in_flight: None,
        });
        assert!(!closed.admit(), "rps 0 admits nothing");
        assert!(Limiter::new(Limits::default()).admit());
    }

    #[test]
    fn in_flight_slots_fail_fast_and_come_back_when_dropped() {
        let l = Limiter::new(Limits {
            rps: None,
            max_in_flight: Some(1),
        });
        let first = l.enter().unwrap();
        assert!(l.enter().is_err());
        drop(first);
        assert!(l.enter().is_ok());
        assert!(Limiter::new(Limits::default()).enter().unwrap().is_none());
    }
}
