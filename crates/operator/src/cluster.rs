//! `agora gateway --from-kubernetes`: a gateway replica whose route table comes from
//! the cluster.
//!
//! It watches every `ServiceOffer` and every `Service` (two reflectors), and runs the
//! same reconciler `agora serve` runs, over [`ClusterOffers`]: each pass probes the
//! upstreams from this replica, so a route this replica cannot reach answers 503
//! here, and installs the whole table at once. It writes nothing back; the operator
//! owns the status. Any change in either watch runs a pass at once, and the periodic
//! pass still catches upstreams going down or coming back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gateway::{Gateway, Site};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use offers::{Reconciler, ReconcilerConfig};
use x402::Facilitator;

use crate::crd::ServiceOffer;
use crate::policy::Policy;
use crate::store::ClusterOffers;

/// Knobs of a cluster-fed gateway.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Cluster DNS suffix of Services.
    pub cluster_domain: String,
    /// Storefront title and public base URL.
    pub site: Site,
    /// Timeout of the health and model probes.
    pub probe_timeout: Duration,
    /// Route offers whose upstream is outside their namespace (`policy.rs`); off
    /// unless the cluster admin trusts every offer writer.
    pub allow_cross_namespace_upstreams: bool,
}

/// Why the gateway cannot follow the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRD is missing or the ServiceAccount may not read offers or Services.
    #[error(
        "cannot list {what}: {source}; install the CRD (`agora crd | kubectl apply -f -`) and the gateway's RBAC from deploy/kubernetes/"
    )]
    List {
        /// `ServiceOffers` or `Services`.
        what: &'static str,
        /// What the API server said.
        source: kube::Error,
    },
    /// The reconciler could not be built.
    #[error(transparent)]
    Build(#[from] offers::reconcile::BuildError),
}

/// Feeds `gateway` from the cluster until `shutdown` resolves.
pub async fn follow(
    client: Client,
    gateway: Gateway,
    facilitator: Arc<dyn Facilitator>,
    config: ClusterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let offers: Api<ServiceOffer> = Api::all(client.clone());
    let services: Api<Service> = Api::all(client);
    let one = ListParams::default().limit(1);
    offers.list(&one).await.map_err(|source| Error::List {
        what: "ServiceOffers",
        source,
    })?;
    services.list(&one).await.map_err(|source| Error::List {
        what: "Services",
        source,
    })?;

    let (offer_cache, offer_writer) = reflector::store();
    let (service_cache, service_writer) = reflector::store();
    let store = Arc::new(ClusterOffers::new(
        offer_cache.clone(),
        service_cache.clone(),
        Policy {
            cluster_domain: config.cluster_domain.clone(),
            allow_cross_namespace_upstreams: config.allow_cross_namespace_upstreams,
        },
    ));
    let reconciler = Reconciler::new(
        store,
        gateway,
        facilitator,
        ReconcilerConfig {
            site: config.site,
            probe_timeout: config.probe_timeout,
            ..ReconcilerConfig::default()
        },
    )?;

    let wake = reconciler.waker();
    let offer_events = reflector(
        offer_writer,
        watcher(offers, watcher::Config::default()).default_backoff(),
    )
    .map(|e| e.err().map(|e| format!("ServiceOffers: {e}")));
    let service_events = reflector(
        service_writer,
        watcher(services, watcher::Config::default()).default_backoff(),
    )
    .map(|e| e.err().map(|e| format!("Services: {e}")));
    let watching = tokio::spawn(async move {
        let events = futures_util::stream::select(offer_events, service_events);
        tokio::pin!(events);
        while let Some(failed) = events.next().await {
            if let Some(e) = failed {
                tracing::warn!("watch: {e} (retrying with backoff)");
            }
            wake.notify_one();
        }
    });

    tokio::pin!(shutdown);
    // No table before both caches hold the cluster's state: an empty first table
    // would answer 404 for offers that exist.
    let caches = async {
        let _ = offer_cache.wait_until_ready().await;
        let _ = service_cache.wait_until_ready().await;
    };
    tokio::select! {
        () = &mut shutdown => {}
        () = caches => reconciler.run(&mut shutdown).await,
    }
    watching.abort();
    Ok(())
}
