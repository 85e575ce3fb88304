//! Verdicts: each stage's outcome, named by its stage, and how an offer's verdicts
//! become the six conditions of its status.
//!
//! Stages 1 to 4 run per offer ([`Probes`]); Registered is decided once per pass for
//! the whole seller (the registry listing) and Ready follows from all of them, so an
//! offer waits as [`Staged`] between the two halves of a pass.

use gateway::Route;
use x402::time::format_rfc3339;

use crate::condition::{Condition, ConditionStatus, STAGES, Stage};
use crate::registry::Listing;
use crate::spec::{OfferStatus, ServiceOffer};
use crate::validate::ResolvedOffer;

/// One stage's outcome before it becomes a [`Condition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// True or False.
    pub ok: bool,
    /// Machine reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

impl Verdict {
    pub(crate) fn yes(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn no(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// The verdicts of stages 1 to 4, each under its stage's name.
pub(super) struct Probes {
    /// ModelReady.
    pub model: Verdict,
    /// UpstreamHealthy.
    pub upstream: Verdict,
    /// PaymentGateReady.
    pub gate: Verdict,
    /// RoutePublished.
    pub published: Verdict,
}

/// An offer after stages 1 to 4.
pub(super) enum Staged {
    /// The spec does not resolve; every condition says why.
    Invalid(Verdict),
    /// Resolved once for the pass and probed (boxed: an invalid offer is small).
    Checked(Box<Checked>),
}

/// A resolved offer after stages 1 to 4.
pub(super) struct Checked {
    /// Their verdicts.
    pub probes: Probes,
    /// The route to install, unless the offer is stopped.
    pub route: Option<Route>,
    /// The offer as this pass resolved it.
    pub resolved: ResolvedOffer,
}

impl Staged {
    /// Whether RoutePublished is True, which registration waits for.
    pub(super) fn published_ok(&self) -> bool {
        matches!(self, Staged::Checked(checked) if checked.probes.published.ok)
    }

    /// The offer as this pass resolved it, when it resolved.
    pub(super) fn resolved(&self) -> Option<&ResolvedOffer> {
        match self {
            Staged::Invalid(_) => None,
            Staged::Checked(checked) => Some(&checked.resolved),
        }
    }

    /// Adds Registered (from the seller-level `listing`) and Ready.
    pub(super) fn finish(
        self,
        offer: &ServiceOffer,
        listing: &Listing,
    ) -> (OfferStatus, Option<Route>) {
        let previous = &offer.status;
        let generation = offer.metadata.generation;
        let (probes, route, resolved) = match self {
            Staged::Invalid(invalid) => {
                let verdicts = STAGES.map(|stage| (stage, invalid.clone()));
                return (status(previous, generation, verdicts, None, None), None);
            }
            Staged::Checked(checked) => {
                let Checked {
                    probes,
                    route,
                    resolved,
                } = *checked;
                (probes, route, resolved)
            }
        };
        let published = probes.published.ok;
        let enabled = resolved.registration.enabled;
        let registered = if !enabled {
            Verdict::yes("Disabled", "registration is disabled for this offer")
        } else if !published {
            Verdict::no(
                "WaitingForRoute",
                "registration waits until the route is published",
            )
        } else {
            listing.verdict.clone()
        };
        let Probes {
            model,
            upstream,
            gate,
            published: route_verdict,
        } = probes;
        let before_ready = [
            (Stage::ModelReady, &model),
            (Stage::UpstreamHealthy, &upstream),
            (Stage::PaymentGateReady, &gate),
            (Stage::RoutePublished, &route_verdict),
            (Stage::Registered, &registered),
        ];
        let ready = match before_ready.iter().find(|(_, v)| !v.ok) {
            None => Verdict::yes("Reconciled", "all stages are True"),
            Some((stage, v)) => Verdict::no("Reconciling", format!("{stage}: {}", v.message)),
        };
        let endpoint = route.as_ref().map(|_| resolved.path.clone());
        let agent = (enabled && published).then_some(listing);
        let verdicts = [
            (Stage::ModelReady, model),
            (Stage::UpstreamHealthy, upstream),
            (Stage::PaymentGateReady, gate),
            (Stage::RoutePublished, route_verdict),
            (Stage::Registered, registered),
            (Stage::Ready, ready),
        ];
        (
            status(previous, generation, verdicts, endpoint, agent),
            route,
        )
    }
}

/// The conditions for `verdicts`, keeping each one's transition time while its
/// status stays the same.
fn status(
    previous: &OfferStatus,
    generation: u64,
    verdicts: [(Stage, Verdict); 6],
    endpoint: Option<String>,
    agent: Option<&Listing>,
) -> OfferStatus {
    let now = format_rfc3339(x402::time::unix_now());
    let conditions = verdicts
        .into_iter()
        .map(|(stage, v)| {
            let status = ConditionStatus::from(v.ok);
            let since = previous
                .conditions
                .iter()
                .find(|c| c.stage() == Some(stage) && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                kind: stage.as_str().to_string(),
                status,
                reason: v.reason.to_string(),
                message: v.message,
                last_transition_time: since,
            }
        })
        .collect();
    OfferStatus {
        conditions,
        endpoint,
        agent_id: agent.and_then(|l| l.agent_id.clone()),
        registration_tx_hash: agent.and_then(|l| l.tx.clone()),
        observed_generation: generation,
    }
}
