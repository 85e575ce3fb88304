//! Stage 4, RoutePublished: the offer's gateway route, served, answering 503 while an
//! earlier stage fails, or removed once the offer has drained.
//!
//! A route whose upstream is unhealthy stays in the table marked unavailable, so
//! buyers get 503 and are never charged for a call that cannot be served; what they
//! read names only the stage that failed (see [`buyer_reason`]).

use gateway::Route;
use x402::time::format_rfc3339;

use super::{Reconciler, Verdict};
use crate::condition::Stage;
use crate::spec::OfferType;
use crate::validate::ResolvedOffer;

impl Reconciler {
    /// RoutePublished, given the verdicts of the three stages before it: the route to
    /// install (none once the offer is stopped) and its verdict.
    pub(super) fn route_published(
        &self,
        offer: &ResolvedOffer,
        before: [(Stage, &Verdict); 3],
    ) -> (Verdict, Option<Route>) {
        let drain = drain_state(offer);
        if let Drain::Stopped = drain {
            let stopped = Verdict::no("Paused", "stopped (its drain ended); the route is removed");
            return (stopped, None);
        }
        let mut route = self.route_for(offer);
        let verdict = match before.iter().find(|(_, v)| !v.ok) {
            None => Verdict::yes("Reconciled", format!("serving at {}", offer.path)),
            Some((failed, why)) => {
                let why = &why.message;
                tracing::debug!(
                    "{} answers 503 until this clears: {why}",
                    offer.name.as_str()
                );
                route.unavailable = Some(buyer_reason(*failed).to_string());
                // Waiting on the payment gate only when the probes before it passed.
                let reason = if *failed == Stage::PaymentGateReady {
                    "WaitingForPaymentGate"
                } else {
                    "WaitingForUpstream"
                };
                Verdict::no(
                    reason,
                    format!("route answers 503 until this clears: {why}"),
                )
            }
        };
        if let Drain::Draining { until } = drain {
            route.price_note = Some(format!(
                "{} · draining, ends {}",
                route.price_note.clone().unwrap_or_default(),
                format_rfc3339(until)
            ));
        }
        (verdict, Some(route))
    }

    /// The gateway route for `offer`: its path, upstream, price and free paths.
    fn route_for(&self, offer: &ResolvedOffer) -> Route {
        let mut route = Route::new(
            offer.name.as_str(),
            offer.path.clone(),
            offer.upstream.clone(),
            vec![offer.requirement()],
        );
        route.description = offer
            .registration
            .description
            .clone()
            .unwrap_or_else(|| match &offer.model {
                Some(m) => format!("{} inference ({})", m.name, offer.name),
                None => format!("{} service {}", offer.offer_type.as_str(), offer.name),
            });
        route.price_note = Some(offer.price_text());
        route.limits = offer.limits;
        route.upstream_timeout = offer.upstream_timeout;
        if offer.health_path != "/" {
            route.free_paths.push(offer.health_path.clone());
        }
        if offer.offer_type == OfferType::Inference {
            route.free_paths.push("/v1/models".to_string());
        }
        route.allowed = offer.allowed.clone();
        route.settle_first = offer.settle_first;
        route
    }
}

/// What buyers read while a route is unavailable (in its 503 and on the storefront),
/// by the first stage that failed. Never the stage's message: that names the upstream,
/// health-check, facilitator or RPC URL (a seller's private network, a provider's API
/// key), so it stays in the condition the operator reads with `agora sell status`.
fn buyer_reason(failed: Stage) -> &'static str {
    match failed {
        Stage::ModelReady => "the model is not ready",
        Stage::UpstreamHealthy => "the service is not healthy",
        _ => "payments cannot be settled right now",
    }
}

/// Where a stopping offer stands.
enum Drain {
    Serving,
    Draining { until: u64 },
    Stopped,
}

fn drain_state(offer: &ResolvedOffer) -> Drain {
    match offer.drain_until {
        None => Drain::Serving,
        Some(until) if x402::time::unix_now() >= until => Drain::Stopped,
        Some(until) => Drain::Draining { until },
    }
}
