//! `agora operator`: a kube-rs `Controller` that runs the reconciler's six stages for
//! every `ServiceOffer` and writes where each one stands to its status subresource.
//!
//! One reconcile of one resource: make sure the finalizer is on, load the offer into
//! an [`OfferSlot`], run one reconciler pass over it (ModelReady, UpstreamHealthy,
//! PaymentGateReady, RoutePublished, Registered, Ready: the same functions `agora
//! serve` runs over SQLite), then server-side apply the status when it changed, with
//! `observedGeneration`, and one Event for each condition whose status or reason
//! changed. A not-Ready offer is looked at again after 5 s, a Ready one after 10 s,
//! so an upstream going down or coming back is noticed without a spec change; errors
//! back off exponentially per offer. The operator never signs anything: no key, no
//! on-chain registration (the reference's current controller does not either).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use gateway::{Gateway, GatewayConfig};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use offers::{
    Condition, ConditionStatus, OfferStatus, Reconciler, ReconcilerConfig, STAGES, StoreError,
};
use x402::Facilitator;

use crate::crd::ServiceOffer;
use crate::policy::{self, Policy, Refusal};
use crate::store::{DEFAULT_CLUSTER_DOMAIN, OfferSlot, to_offer};

/// The finalizer the operator puts on every offer, so a deletion waits for its
/// cleanup.
pub const FINALIZER: &str = "agora.obol.org/cleanup";

/// The field manager of the status the operator applies, and its Events' reporter.
pub const MANAGER: &str = "agora-operator";

/// Knobs of the operator.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Cluster DNS suffix for `{service, namespace, port}` upstreams.
    pub cluster_domain: String,
    /// Timeout of the health and model probes.
    pub probe_timeout: Duration,
    /// When to look at a Ready offer again.
    pub ready_requeue: Duration,
    /// When to look at an offer that is not Ready again.
    pub pending_requeue: Duration,
    /// How failing reconciles back off.
    pub backoff: Backoff,
    /// Accept offers whose upstream is outside their namespace (see `policy.rs`).
    pub allow_cross_namespace_upstreams: bool,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            probe_timeout: Duration::from_secs(2),
            ready_requeue: Duration::from_secs(10),
            pending_requeue: Duration::from_secs(5),
            backoff: Backoff::default(),
            allow_cross_namespace_upstreams: false,
        }
    }
}

/// Exponential backoff of a failing offer: `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Pause after the first failure.
    pub first: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The pause after `failures` failures in a row (1 for the first).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Why a reconcile failed; each names what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cluster-scoped ServiceOffer cannot exist; kept for a clear message.
    #[error(
        "ServiceOffer {0} has no namespace; ServiceOffers are namespaced: apply it with -n <namespace>"
    )]
    NoNamespace(String),
    /// The status patch failed.
    #[error(
        "cannot write the status of ServiceOffer {name}: {source} (the operator's ServiceAccount needs patch on serviceoffers/status; see deploy/kubernetes/rbac.yaml)"
    )]
    Status {
        /// The offer.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// The reconciler's store seam failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Adding or removing the finalizer failed, or a stage inside it did.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
    /// The CRD is not installed, or the operator may not list offers.
    #[error(
        "cannot list ServiceOffers: {0}; install the CRD (`agora crd | kubectl apply -f -`) and the RBAC in deploy/kubernetes/"
    )]
    NoCrd(kube::Error),
}

/// Why the operator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The stage runner.
    #[error(transparent)]
    Reconciler(#[from] offers::reconcile::BuildError),
    /// Its route-table sink.
    #[error(transparent)]
    Gateway(#[from] gateway::BuildError),
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    slot: Arc<OfferSlot>,
    reconciler: Reconciler,
    /// One offer through the stages at a time: the slot holds one offer.
    passing: tokio::sync::Mutex<()>,
    failures: Mutex<HashMap<ObjectRef<ServiceOffer>, u32>>,
    config: OperatorConfig,
    /// Every offer the controller watches, for the path rule (set by [`run`]; empty
    /// when reconciles are driven by hand, as in tests).
    offers: OnceLock<reflector::Store<ServiceOffer>>,
}

impl Context {
    /// The operator's shared state, probing payment networks through `facilitator`.
    pub fn new(
        client: Client,
        facilitator: Arc<dyn Facilitator>,
        config: OperatorConfig,
    ) -> Result<Self, BuildError> {
        let slot = Arc::new(OfferSlot::default());
        // The reconciler ends each pass by installing a route table; the operator's
        // is thrown away, since the gateways build theirs from the same resources.
        let sink = Gateway::new(GatewayConfig::default(), facilitator.clone())?;
        let reconciler = Reconciler::new(
            slot.clone(),
            sink,
            facilitator,
            ReconcilerConfig {
                probe_timeout: config.probe_timeout,
                ..ReconcilerConfig::default()
            },
        )?;
        // The instance is the host name, which in a pod is the pod's name.
        let reporter = Reporter::from(MANAGER);
        Ok(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            slot,
            reconciler,
            passing: tokio::sync::Mutex::new(()),
            failures: Mutex::new(HashMap::new()),
            config,
            offers: OnceLock::new(),
        })
    }

    /// Runs the six stages for `resource` and applies the status when it changed.
    async fn apply(
        &self,
        resource: &ServiceOffer,
        api: &Api<ServiceOffer>,
    ) -> Result<Action, Error> {
        let offer = to_offer(resource, &self.config.cluster_domain);
        let previous = offer.status.clone();
        let status = match self.refusal(resource) {
            // Refused offers never reach the stages: no probe of a forbidden URL.
            Some(refused) => refused_status(&previous, offer.metadata.generation, &refused),
            None => {
                let _one = self.passing.lock().await;
                self.slot.load(offer);
                self.reconciler.pass().await?;
                self.slot.take_status().unwrap_or_else(|| previous.clone())
            }
        };
        if status != previous {
            let name = resource.name_any();
            let patch = serde_json::json!({
                "apiVersion": offers::spec::API_VERSION,
                "kind": offers::spec::KIND,
                "status": status,
            });
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|source| Error::Status { name, source })?;
            self.announce(resource, &previous, &status).await;
        }
        let ready = status.conditions.last().is_some_and(Condition::is_true);
        Ok(Action::requeue(if ready {
            self.config.ready_requeue
        } else {
            self.config.pending_requeue
        }))
    }

    /// One Event per condition whose status or reason changed; best effort, since an
    /// Event lost must not hold the offer back.
    async fn announce(&self, resource: &ServiceOffer, previous: &OfferStatus, next: &OfferStatus) {
        let reference = resource.object_ref(&());
        for condition in changed(previous, next) {
            let event = Event {
                type_: if condition.is_true() {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: condition.reason.clone(),
                note: Some(note(condition)),
                action: condition.kind.clone(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(
                    "cannot record an Event for ServiceOffer {}: {e}",
                    resource.name_any()
                );
            }
        }
    }

    /// Deletion: gateways drop the route as soon as the resource is gone, so all
    /// that is left is to say so before the finalizer comes off.
    async fn cleanup(&self, resource: &ServiceOffer) -> Result<Action, Error> {
        let event = Event {
            type_: EventType::Normal,
            reason: "Deleted".to_string(),
            note: Some("offer deleted; gateways stop routing it".to_string()),
            action: "Cleanup".to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &resource.object_ref(&()))
            .await
        {
            tracing::warn!(
                "cannot record an Event for ServiceOffer {}: {e}",
                resource.name_any()
            );
        }
        Ok(Action::await_change())
    }

    /// Hands the path rule the cache of every offer: [`run`] gives it the
    /// controller's own; a reconcile driven by hand (tests) may give it one.
    pub fn watch_offers(&self, offers: reflector::Store<ServiceOffer>) {
        let _ = self.offers.set(offers);
    }

    /// Why the tenancy rules refuse `resource`, if they do (`policy.rs`).
    fn refusal(&self, resource: &ServiceOffer) -> Option<Refusal> {
        let all = self
            .offers
            .get()
            .map(reflector::Store::state)
            .unwrap_or_default();
        let policy = Policy {
            cluster_domain: self.config.cluster_domain.clone(),
            allow_cross_namespace_upstreams: self.config.allow_cross_namespace_upstreams,
        };
        policy::refusal(resource, &all, &policy)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<ServiceOffer>, u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The status of a refused offer: every condition False with the refusal's reason
/// and message (so `kubectl get so` shows it not Ready, and `describe` says why),
/// each keeping its transition time while it stays False.
fn refused_status(previous: &OfferStatus, generation: u64, refused: &Refusal) -> OfferStatus {
    let now = x402::time::now_rfc3339();
    let conditions = STAGES
        .into_iter()
        .map(|stage| {
            let since = previous
                .conditions
                .iter()
                .find(|c| c.stage() == Some(stage) && c.status == ConditionStatus::False)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                kind: stage.as_str().to_string(),
                status: ConditionStatus::False,
                reason: refused.reason().to_string(),
                message: refused.message(),
                last_transition_time: since,
            }
        })
        .collect();
    OfferStatus {
        conditions,
        observed_generation: generation,
        ..OfferStatus::default()
    }
}

/// The conditions of `next` that are new or changed status or reason since
/// `previous`.
fn changed<'a>(previous: &OfferStatus, next: &'a OfferStatus) -> Vec<&'a Condition> {
    next.conditions
        .iter()
        .filter(|c| {
            !previous
                .conditions
                .iter()
                .any(|p| p.kind == c.kind && p.status == c.status && p.reason == c.reason)
        })
        .collect()
}

/// An Event's note: `UpstreamHealthy is False: GET ... refused`, within the 1 kB
/// Kubernetes allows.
fn note(condition: &Condition) -> String {
    let mut note = format!(
        "{} is {}: {}",
        condition.kind, condition.status, condition.message
    );
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    note
}

/// Reconciles one offer: the finalizer first, then the stages or the cleanup.
pub async fn reconcile(resource: Arc<ServiceOffer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = resource
        .namespace()
        .ok_or_else(|| Error::NoNamespace(resource.name_any()))?;
    let api: Api<ServiceOffer> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(resource.as_ref());
    let action = finalizer(&api, FINALIZER, resource, |event| async {
        match event {
            finalizer::Event::Apply(resource) => ctx.apply(&resource, &api).await,
            finalizer::Event::Cleanup(resource) => ctx.cleanup(&resource).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.failures().remove(&key);
    Ok(action)
}

/// A failed reconcile is tried again after a pause that doubles with each failure
/// in a row.
pub fn error_policy(resource: Arc<ServiceOffer>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut all = ctx.failures();
        let count = all
            .entry(ObjectRef::from_obj(resource.as_ref()))
            .or_insert(0);
        *count += 1;
        *count
    };
    let pause = ctx.config.backoff.after(failures);
    tracing::warn!(
        "ServiceOffer {}/{}: {error}; retrying in {pause:?}",
        resource.namespace().unwrap_or_default(),
        resource.name_any()
    );
    Action::requeue(pause)
}

/// Watches every ServiceOffer in the cluster and reconciles each until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let offers: Api<ServiceOffer> = Api::all(ctx.client.clone());
    offers
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::NoCrd)?;
    let controller = Controller::new(offers, watcher::Config::default().any_semantic());
    // The controller's own cache of every offer feeds the path rule.
    ctx.watch_offers(controller.store());
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((offer, _)) => tracing::debug!("reconciled ServiceOffer {offer}"),
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use offers::ConditionStatus;

    #[test]
    fn backoff_doubles_from_the_first_pause_up_to_the_cap() {
        let backoff = Backoff::default();
        let pauses: Vec<u64> = [1, 2, 3, 9, 10, 100]
            .map(|n| backoff.after(n).as_secs())
            .to_vec();
        assert_eq!(pauses, [1, 2, 4, 256, 300, 300]);
    }

    fn condition(kind: &str, status: ConditionStatus, reason: &str) -> Condition {
        Condition {
            kind: kind.into(),
            status,
            reason: reason.into(),
            message: "m".repeat(2000),
            last_transition_time: String::new(),
        }
    }

    #[test]
    fn only_new_or_changed_conditions_become_events() {
        let previous = OfferStatus {
            conditions: vec![
                condition("ModelReady", ConditionStatus::True, "Skipped"),
                condition("UpstreamHealthy", ConditionStatus::True, "Healthy"),
            ],
            ..OfferStatus::default()
        };
        let next = OfferStatus {
            conditions: vec![
                condition("ModelReady", ConditionStatus::True, "Skipped"),
                condition("UpstreamHealthy", ConditionStatus::False, "Unhealthy"),
                condition("Ready", ConditionStatus::False, "Reconciling"),
            ],
            ..OfferStatus::default()
        };
        let kinds: Vec<&str> = changed(&previous, &next)
            .iter()
            .map(|c| c.kind.as_str())
            .collect();
        assert_eq!(kinds, ["UpstreamHealthy", "Ready"]);
        let text = note(changed(&previous, &next)[0]);
        assert!(text.starts_with("UpstreamHealthy is False: mmm"));
        assert_eq!(text.len(), 1000);
    }
}
