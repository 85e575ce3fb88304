//! The reconciler's `OfferStore` over `ServiceOffer` resources.
//!
//! The reconciler's trait is synchronous and its stages are the same everywhere; the
//! Kubernetes API is asynchronous. So the stores here read what a watch already
//! holds (the one offer a controller reconciles, or a reflector's cache for the
//! gateway) and leave the writing to their caller: the operator patches the status
//! subresource with what [`OfferSlot`] caught, the gateway writes nothing (the
//! operator owns the status).

use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::runtime::reflector;
use offers::{AgentRecord, OfferStatus, OfferStore, StoreError};

use crate::crd::ServiceOffer;
use crate::policy::{self, Policy};

/// The cluster DNS suffix of Services, `svc.cluster.local` on most clusters.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The reference's default upstream port (Ollama's).
const DEFAULT_PORT: u16 = 11434;

/// A resource as the reconciler reads it: metadata copied over, and an upstream given
/// as `{service, namespace, port}` turned into the Service's in-cluster URL (agora
/// alone maps that form to loopback, which means nothing in a pod).
pub fn to_offer(resource: &ServiceOffer, cluster_domain: &str) -> offers::ServiceOffer {
    let namespace = resource.namespace().unwrap_or_else(|| "default".into());
    let mut offer = offers::ServiceOffer::new(&resource.name_any(), resource.spec.offer.clone());
    let meta = &resource.metadata;
    offer.metadata.namespace = Some(namespace.clone());
    offer.metadata.generation = meta
        .generation
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(0);
    offer.metadata.creation_timestamp = meta.creation_timestamp.as_ref().map(|t| t.0.to_string());
    offer.metadata.labels = resource.labels().clone();
    offer.metadata.annotations = resource.annotations().clone();
    if let Some(status) = &resource.status {
        offer.status = status.offer.clone();
    }
    let upstream = &mut offer.spec.upstream;
    if upstream.url.is_none()
        && let Some(service) = upstream.service.clone()
    {
        let service_namespace = upstream.namespace.clone().unwrap_or(namespace);
        let port = upstream.port.unwrap_or(DEFAULT_PORT);
        upstream.url = Some(format!(
            "http://{service}.{service_namespace}.svc.{cluster_domain}:{port}"
        ));
    }
    offer
}

/// The one offer a controller reconciles, and the status the reconciler wrote for it.
#[derive(Default)]
pub struct OfferSlot {
    offer: Mutex<Option<offers::ServiceOffer>>,
    status: Mutex<Option<OfferStatus>>,
    agent: Mutex<Option<AgentRecord>>,
}

impl OfferSlot {
    /// Puts `offer` in the slot for the next pass, forgetting the last pass's status.
    pub fn load(&self, offer: offers::ServiceOffer) {
        *lock(&self.offer) = Some(offer);
        *lock(&self.status) = None;
    }

    /// The status the last pass wrote, if it wrote one.
    pub fn take_status(&self) -> Option<OfferStatus> {
        lock(&self.status).take()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OfferStore for OfferSlot {
    fn list(&self) -> Result<Vec<offers::ServiceOffer>, StoreError> {
        Ok(lock(&self.offer).iter().cloned().collect())
    }

    fn set_status(&self, name: &str, status: &OfferStatus) -> Result<(), StoreError> {
        if lock(&self.offer)
            .as_ref()
            .is_some_and(|o| o.metadata.name == name)
        {
            *lock(&self.status) = Some(status.clone());
        }
        Ok(())
    }

    /// The operator never signs (like the reference's current controller): without a
    /// registry the Registered stage only publishes the file, and no record is kept
    /// past the process.
    fn agent(&self) -> Result<Option<AgentRecord>, StoreError> {
        Ok(lock(&self.agent).clone())
    }

    fn save_agent(&self, record: &AgentRecord) -> Result<(), StoreError> {
        *lock(&self.agent) = Some(record.clone());
        Ok(())
    }
}

/// Every offer in the cluster, as the gateway's watches hold them.
pub struct ClusterOffers {
    offers: reflector::Store<ServiceOffer>,
    services: reflector::Store<Service>,
    policy: Policy,
}

impl ClusterOffers {
    /// A store over the two reflectors' caches, serving only what `policy` allows
    /// (its cluster domain also names the Services).
    pub fn new(
        offers: reflector::Store<ServiceOffer>,
        services: reflector::Store<Service>,
        policy: Policy,
    ) -> Self {
        Self {
            offers,
            services,
            policy,
        }
    }

    /// Whether the upstream Service of `offer` is known to the watch (always, for an
    /// offer whose upstream is a URL).
    fn service_exists(&self, offer: &offers::ServiceOffer) -> bool {
        let upstream = &offer.spec.upstream;
        let (Some(name), namespace) = (&upstream.service, &upstream.namespace) else {
            return true;
        };
        let namespace = namespace
            .clone()
            .or_else(|| offer.metadata.namespace.clone())
            .unwrap_or_default();
        self.services
            .get(&reflector::ObjectRef::new(name).within(&namespace))
            .is_some()
    }
}

impl OfferStore for ClusterOffers {
    /// Every cached offer, ordered by namespace then name; an offer whose Service is
    /// not (yet) in the cache is left out, so buyers get 404 rather than a route to a
    /// name that resolves nowhere, and so is one the tenancy rules refuse (another
    /// namespace's upstream, a path an older offer holds: see `policy.rs`), whatever
    /// its status says.
    fn list(&self) -> Result<Vec<offers::ServiceOffer>, StoreError> {
        let mut all: Vec<Arc<ServiceOffer>> = self.offers.state();
        all.sort_by_key(|o| (o.namespace(), o.name_any()));
        Ok(all
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .filter(|o| match policy::refusal(o, &all, &self.policy) {
                None => true,
                Some(refused) => {
                    tracing::debug!(
                        "not routing ServiceOffer {}/{}: {}",
                        o.namespace().unwrap_or_default(),
                        o.name_any(),
                        refused.message()
                    );
                    false
                }
            })
            .map(|o| to_offer(o, &self.policy.cluster_domain))
            .filter(|o| self.service_exists(o))
            .collect())
    }

    /// The operator owns the status subresource; gateway replicas only read it.
    fn set_status(&self, _name: &str, _status: &OfferStatus) -> Result<(), StoreError> {
        Ok(())
    }

    fn agent(&self) -> Result<Option<AgentRecord>, StoreError> {
        Ok(None)
    }

    /// Gateways publish the registration file but never sign; nothing to keep.
    fn save_agent(&self, _record: &AgentRecord) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(upstream: &str) -> ServiceOffer {
        let mut offer: ServiceOffer = serde_norway::from_str(&format!(
            "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata: {{name: qwen, namespace: llm, generation: 3}}\nspec:\n  upstream: {upstream}\n  payment: {{network: base-sepolia, payTo: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', price: {{perRequest: '0.001'}}}}\n"
        ))
        .unwrap();
        offer.metadata.generation = Some(3);
        offer
    }

    #[test]
    fn a_service_upstream_becomes_its_cluster_url_and_metadata_carries_over() {
        let offer = to_offer(&resource("{service: ollama, port: 11434}"), "cluster.local");
        assert_eq!(
            offer.spec.upstream.url.as_deref(),
            Some("http://ollama.llm.svc.cluster.local:11434")
        );
        assert_eq!(offer.metadata.generation, 3);
        assert_eq!(offer.metadata.namespace.as_deref(), Some("llm"));
        let other = to_offer(&resource("{service: vllm, namespace: gpu}"), "k8s.example");
        assert_eq!(
            other.spec.upstream.url.as_deref(),
            Some("http://vllm.gpu.svc.k8s.example:11434")
        );
        let url = to_offer(&resource("{url: 'http://10.0.0.7:8080'}"), "cluster.local");
        assert_eq!(
            url.spec.upstream.url.as_deref(),
            Some("http://10.0.0.7:8080")
        );
    }

    #[test]
    fn the_slot_keeps_only_its_own_offers_status() {
        let slot = OfferSlot::default();
        slot.load(to_offer(&resource("{service: ollama}"), "cluster.local"));
        let status = OfferStatus {
            observed_generation: 3,
            ..OfferStatus::default()
        };
        slot.set_status("someone-else", &status).unwrap();
        assert_eq!(slot.take_status(), None);
        slot.set_status("qwen", &status).unwrap();
        assert_eq!(slot.take_status(), Some(status));
        assert_eq!(slot.list().unwrap().len(), 1);
    }
}
