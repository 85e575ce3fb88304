//! The reconciler: brings every offer through the six stages, continuously.
//!
//! ModelReady -> UpstreamHealthy -> PaymentGateReady -> RoutePublished -> Registered
//! -> Ready, one function each. Every pass looks at every offer, Ready or not, so a
//! spec edit, an upstream going down or coming back is noticed; the result of a pass
//! is one atomic swap of the gateway's route table and documents. A route whose
//! upstream is unhealthy stays in the table marked unavailable, so buyers get 503
//! and are never charged for a call that cannot be served.
//!
//! Two audiences read why a route is unavailable. The operator reads the conditions
//! (`agora sell status`), which keep every detail: URLs, status codes, errors. Buyers
//! read the route's `unavailable` reason (the 503, the storefront), which names only
//! the stage that failed, because the detail carries upstream, health-check and RPC
//! URLs.
//!
//! The stages live in [`stages`] (the four probes), [`route`] (RoutePublished and
//! draining) and [`verdict`] (Registered, Ready, and the conditions they become).
//! The reconciler reads and writes through [`OfferStore`], so the same stages run over
//! SQLite here and over Kubernetes resources in an operator.

mod route;
mod stages;
mod verdict;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gateway::{Documents, Gateway, Site};
use tokio::sync::Notify;
use x402::Facilitator;

pub(crate) use self::verdict::Verdict;
use self::verdict::{Checked, Probes, Staged};
use crate::condition::{Condition, Stage};
use crate::offer_store::OfferStore;
use crate::registry::{self, RegistryConfig};
use crate::spec::ServiceOffer;
use crate::store::StoreError;
use crate::validate::{ResolvedOffer, resolve};

/// Knobs of the reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Seller identity and public base URL for the documents.
    pub site: Site,
    /// Timeout of health and model probes.
    pub probe_timeout: Duration,
    /// Pause between passes while everything is Ready.
    pub ready_interval: Duration,
    /// First pause while something is not Ready; doubles up to `ready_interval`.
    pub pending_interval: Duration,
    /// Whether ModelReady may ask Ollama to pull a missing model.
    pub pull_models: bool,
    /// On-chain ERC-8004 registration; without it the registration file is only
    /// published.
    pub registry: Option<RegistryConfig>,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            site: Site::default(),
            probe_timeout: Duration::from_secs(2),
            ready_interval: Duration::from_secs(10),
            pending_interval: Duration::from_millis(500),
            pull_models: false,
            registry: None,
        }
    }
}

/// What one pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Offers seen.
    pub offers: usize,
    /// Offers Ready.
    pub ready: usize,
    /// Offers with a route in the gateway (everything not stopped or invalid): what a
    /// tunnel is kept up for.
    pub routed: usize,
}

/// Drives offers from the store into the gateway.
pub struct Reconciler {
    store: Arc<dyn OfferStore>,
    gateway: Gateway,
    facilitator: Arc<dyn Facilitator>,
    http: reqwest::Client,
    config: ReconcilerConfig,
    wake: Arc<Notify>,
    /// The public base URL of the documents and the registration; a tunnel changes it
    /// while serving ([`Reconciler::set_base_url`]).
    base_url: std::sync::RwLock<String>,
    /// The last pass's summary, for whoever follows the offers (the tunnel).
    passes: tokio::sync::watch::Sender<PassSummary>,
    /// One pass at a time, so a pass asked for by the admin API and the periodic one
    /// never install their tables out of order.
    passing: tokio::sync::Mutex<()>,
}

/// Why the reconciler could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the reconciler's HTTP client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

impl Reconciler {
    /// A reconciler feeding `gateway` from `store` (the SQLite
    /// [`Store`](crate::store::Store), or any other [`OfferStore`]).
    pub fn new(
        store: Arc<dyn OfferStore>,
        gateway: Gateway,
        facilitator: Arc<dyn Facilitator>,
        config: ReconcilerConfig,
    ) -> Result<Self, BuildError> {
        let http = x402::http::direct()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            gateway,
            facilitator,
            http,
            base_url: std::sync::RwLock::new(config.site.base_url.clone()),
            config,
            wake: Arc::new(Notify::new()),
            passes: tokio::sync::watch::Sender::new(PassSummary::default()),
            passing: tokio::sync::Mutex::new(()),
        })
    }

    /// Notified after a change to run a pass at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Moves the documents and the registration to a new public base URL (a tunnel
    /// came up, changed or went away) and runs a pass soon, which re-registers the
    /// agent URI on chain when it changed.
    pub fn set_base_url(&self, base_url: &str) {
        *self.base_url.write().unwrap_or_else(|e| e.into_inner()) =
            base_url.trim_end_matches('/').to_string();
        self.wake.notify_one();
    }

    /// Each pass's summary as it completes.
    pub fn passes(&self) -> tokio::sync::watch::Receiver<PassSummary> {
        self.passes.subscribe()
    }

    /// Reconciles until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pause = self.config.pending_interval;
        loop {
            let all_ready = match self.pass().await {
                Ok(summary) => summary.ready == summary.offers,
                Err(e) => {
                    tracing::error!("reconcile pass failed: {e}");
                    false
                }
            };
            pause = if all_ready {
                self.config.ready_interval
            } else {
                (pause * 2)
                    .min(self.config.ready_interval)
                    .max(self.config.pending_interval)
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.wake.notified() => pause = self.config.pending_interval / 2,
                () = &mut shutdown => return,
            }
        }
    }

    /// One pass over every offer, then one swap of the gateway's table.
    pub async fn pass(&self) -> Result<PassSummary, StoreError> {
        let _one_at_a_time = self.passing.lock().await;
        let site = Site {
            base_url: self
                .base_url
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            ..self.config.site.clone()
        };
        let offers = self.store.list()?;
        let mut staged = Vec::with_capacity(offers.len());
        for offer in &offers {
            staged.push(self.stage(offer).await);
        }
        let listed: Vec<&ResolvedOffer> = staged
            .iter()
            .filter(|s| s.published_ok())
            .filter_map(Staged::resolved)
            .filter(|r| r.registration.enabled)
            .collect();
        let listing = registry::list(
            self.config.registry.as_ref(),
            self.store.as_ref(),
            &site,
            &listed,
        )
        .await;
        let mut routes = Vec::new();
        let mut summary = PassSummary {
            offers: offers.len(),
            ready: 0,
            routed: 0,
        };
        for (offer, staged) in offers.iter().zip(staged) {
            let (status, route) = staged.finish(offer, &listing);
            if status.conditions.last().is_some_and(Condition::is_true) {
                summary.ready += 1;
            }
            self.store.set_status(&offer.metadata.name, &status)?;
            summary.routed += usize::from(route.is_some());
            routes.extend(route);
        }
        let documents = Documents::build(&site, &routes, listing.document.clone());
        self.gateway.install(routes, documents);
        self.passes.send_replace(summary.clone());
        Ok(summary)
    }

    /// Resolves `offer` once, then runs stages 1 to 4 on the resolved offer; Registered
    /// and Ready follow once the seller-level registration is known.
    async fn stage(&self, offer: &ServiceOffer) -> Staged {
        let resolved = match resolve(offer) {
            Ok(r) => r,
            Err(e) => return Staged::Invalid(Verdict::no("InvalidSpec", e.to_string())),
        };
        let model = self.model_ready(&resolved).await;
        let upstream = self.upstream_healthy(&resolved).await;
        let gate = if model.ok && upstream.ok {
            self.payment_gate_ready(&resolved).await
        } else {
            Verdict::no(
                "WaitingForUpstream",
                if model.ok {
                    upstream.message.clone()
                } else {
                    model.message.clone()
                },
            )
        };
        let (published, route) = self.route_published(
            &resolved,
            [
                (Stage::ModelReady, &model),
                (Stage::UpstreamHealthy, &upstream),
                (Stage::PaymentGateReady, &gate),
            ],
        );
        Staged::Checked(Box::new(Checked {
            probes: Probes {
                model,
                upstream,
                gate,
                published,
            },
            route,
            resolved,
        }))
    }
}
