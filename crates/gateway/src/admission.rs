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

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::OwnedSemaphorePermit;

use crate::limits::{self, Limiter};
use crate::metrics::{Metrics, Outcome};
use crate::route::{Route, check_path};
use crate::{Gatekeeper, respond};

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
            Err(limits::Full) => {
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
