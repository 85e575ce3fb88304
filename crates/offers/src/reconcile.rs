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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gateway::{Documents, Gateway, Route, Site};
use serde_json::Value;
use tokio::sync::Notify;
use x402::Facilitator;
use x402::wire::SCHEME_EXACT;

use crate::registry::{self, Listing, RegistryConfig};
use crate::spec::{Condition, OfferStatus, OfferType, ServiceOffer};
use crate::store::{Store, StoreError};
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::validate::{ResolvedOffer, parse_duration, resolve};

/// The six condition types, in stage order.
pub const STAGES: [&str; 6] = [
    "ModelReady",
    "UpstreamHealthy",
    "PaymentGateReady",
    "RoutePublished",
    "Registered",
    "Ready",
];

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

/// One stage's outcome before it becomes a [`Condition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
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

/// What one pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Offers seen.
    pub offers: usize,
    /// Offers Ready.
    pub ready: usize,
}

/// Drives offers from the store into the gateway.
pub struct Reconciler {
    store: Arc<Store>,
    gateway: Gateway,
    facilitator: Arc<dyn Facilitator>,
    http: reqwest::Client,
    config: ReconcilerConfig,
    wake: Arc<Notify>,
    /// One pass at a time, so a pass asked for by the admin API and the periodic one
    /// never install their tables out of order.
    passing: tokio::sync::Mutex<()>,
}

/// Why the reconciler could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the reconciler's HTTP client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

impl Reconciler {
    /// A reconciler feeding `gateway` from `store`.
    pub fn new(
        store: Arc<Store>,
        gateway: Gateway,
        facilitator: Arc<dyn Facilitator>,
        config: ReconcilerConfig,
    ) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            gateway,
            facilitator,
            http,
            config,
            wake: Arc::new(Notify::new()),
            passing: tokio::sync::Mutex::new(()),
        })
    }

    /// Notified after a change to run a pass at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
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
        let offers = self.store.list()?;
        let mut staged = Vec::with_capacity(offers.len());
        for offer in &offers {
            staged.push(self.stage(offer).await);
        }
        let listed: Vec<&ResolvedOffer> = staged
            .iter()
            .filter(|s| s.published_ok())
            .filter_map(|s| s.resolved.as_ref())
            .filter(|r| r.registration.enabled)
            .collect();
        let listing = registry::list(
            self.config.registry.as_ref(),
            &self.store,
            &self.config.site,
            &listed,
        )
        .await;
        let mut routes = Vec::new();
        let mut summary = PassSummary {
            offers: offers.len(),
            ready: 0,
        };
        for (offer, staged) in offers.iter().zip(staged) {
            let (status, route) = staged.finish(offer, &listing);
            if status.conditions.last().is_some_and(|c| c.status == "True") {
                summary.ready += 1;
            }
            self.store.set_status(&offer.metadata.name, &status)?;
            routes.extend(route);
        }
        let documents = Documents::build(&self.config.site, &routes, listing.document.clone());
        self.gateway.install(routes, documents);
        Ok(summary)
    }

    /// Stages 1 to 4 of one offer; Registered and Ready follow once the seller-level
    /// registration is known.
    async fn stage(&self, offer: &ServiceOffer) -> Staged {
        let resolved = match resolve(offer) {
            Ok(r) => r,
            Err(e) => {
                return Staged {
                    verdicts: None,
                    invalid: Some(Verdict::no("InvalidSpec", e.to_string())),
                    route: None,
                    resolved: None,
                };
            }
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
        let drain = drain_state(offer);
        let serving = model.ok && upstream.ok && gate.ok;
        let (published, route) = match &drain {
            Drain::Stopped => (
                Verdict::no(
                    "Paused",
                    "stopped with agora sell stop; the route is removed",
                ),
                None,
            ),
            _ => {
                let mut route = self.route_for(&resolved);
                let verdict = if serving {
                    Verdict::yes("Reconciled", format!("serving at {}", resolved.path))
                } else {
                    let stages = [&model, &upstream, &gate];
                    let failed = stages.iter().position(|v| !v.ok).unwrap_or(2);
                    let why = stages[failed].message.clone();
                    tracing::debug!(
                        "{} answers 503 until this clears: {why}",
                        resolved.name.as_str()
                    );
                    route.unavailable = Some(buyer_reason(failed).to_string());
                    let reason = if gate.ok || !upstream.ok || !model.ok {
                        "WaitingForUpstream"
                    } else {
                        "WaitingForPaymentGate"
                    };
                    Verdict::no(
                        reason,
                        format!("route answers 503 until this clears: {why}"),
                    )
                };
                if let Drain::Draining { until } = &drain {
                    route.price_note = Some(format!(
                        "{} · draining, ends {}",
                        route.price_note.clone().unwrap_or_default(),
                        format_rfc3339(*until)
                    ));
                }
                (verdict, Some(route))
            }
        };
        Staged {
            verdicts: Some([model, upstream, gate, published]),
            invalid: None,
            route,
            resolved: Some(resolved),
        }
    }

    /// ModelReady: inference offers must have their model listed by the upstream.
    async fn model_ready(&self, offer: &ResolvedOffer) -> Verdict {
        if offer.offer_type != OfferType::Inference {
            return Verdict::yes(
                "Skipped",
                format!("{} offers serve no model", offer.offer_type.as_str()),
            );
        }
        let Some(model) = offer.model.as_ref().map(|m| m.name.clone()) else {
            return Verdict::no("MissingModel", "inference offers need spec.model.name");
        };
        let listed = match self.list_models(offer).await {
            Ok(models) => models,
            Err(e) => return Verdict::no("UpstreamUnreachable", e),
        };
        if listed.contains(&model) {
            return Verdict::yes(
                "Available",
                format!("{model} is served by {}", offer.upstream),
            );
        }
        let ollama = offer.model.as_ref().and_then(|m| m.runtime.as_deref()) == Some("ollama");
        if ollama && self.config.pull_models {
            return self.pull(offer, &model).await;
        }
        let served = if listed.is_empty() {
            "nothing".to_string()
        } else {
            listed.join(", ")
        };
        Verdict::no(
            "ModelNotFound",
            format!(
                "model {model} is not served by {}; it serves {served} (load or pull the model, or pass --model with one of those)",
                offer.upstream
            ),
        )
    }

    /// The model ids an upstream lists: OpenAI `/v1/models`, else Ollama `/api/tags`.
    async fn list_models(&self, offer: &ResolvedOffer) -> Result<Vec<String>, String> {
        let openai = self.get_json(&offer.upstream, "/v1/models").await;
        if let Ok(Some(body)) = &openai
            && let Some(data) = body["data"].as_array()
        {
            return Ok(data
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect());
        }
        match self.get_json(&offer.upstream, "/api/tags").await {
            Ok(Some(body)) => Ok(body["models"]
                .as_array()
                .map(|models| {
                    models
                        .iter()
                        .filter_map(|m| {
                            m["name"]
                                .as_str()
                                .or(m["model"].as_str())
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default()),
            Ok(None) => Err(format!(
                "{} lists no models at /v1/models or /api/tags; is it an OpenAI-compatible or Ollama server?",
                offer.upstream
            )),
            Err(e) => Err(e),
        }
    }

    async fn get_json(&self, base: &reqwest::Url, path: &str) -> Result<Option<Value>, String> {
        let url = join(base, path);
        let response = self
            .http
            .get(url.clone())
            .timeout(self.config.probe_timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", transport_error(&e)))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        Ok(response.json::<Value>().await.ok())
    }

    async fn pull(&self, offer: &ResolvedOffer, model: &str) -> Verdict {
        let url = join(&offer.upstream, "/api/pull");
        let pulled = self
            .http
            .post(url)
            .json(&serde_json::json!({"name": model, "stream": false}))
            .timeout(Duration::from_secs(600))
            .send()
            .await;
        match pulled {
            Ok(r) if r.status().is_success() => {
                Verdict::yes("Pulled", format!("pulled {model} into Ollama"))
            }
            Ok(r) => Verdict::no(
                "PullFailed",
                format!("Ollama refused to pull {model}: HTTP {}", r.status()),
            ),
            Err(e) => Verdict::no(
                "PullFailed",
                format!("pulling {model}: {}", transport_error(&e)),
            ),
        }
    }

    /// UpstreamHealthy: the health path answers below 500.
    async fn upstream_healthy(&self, offer: &ResolvedOffer) -> Verdict {
        let url = join(&offer.upstream, &offer.health_path);
        match self
            .http
            .get(url.clone())
            .timeout(self.config.probe_timeout)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() < 500 => Verdict::yes(
                "Healthy",
                format!("GET {url} answered {}", r.status().as_u16()),
            ),
            Ok(r) => Verdict::no(
                "Unhealthy",
                format!("GET {url} answered {}", r.status().as_u16()),
            ),
            Err(e) => Verdict::no("Unhealthy", format!("GET {url}: {}", transport_error(&e))),
        }
    }

    /// PaymentGateReady: the facilitator answers and settles this network.
    async fn payment_gate_ready(&self, offer: &ResolvedOffer) -> Verdict {
        match self.facilitator.supported().await {
            Ok(supported) if supported.supports(SCHEME_EXACT, &offer.network) => Verdict::yes(
                "Reconciled",
                format!(
                    "the facilitator settles exact payments on {}",
                    offer.network.caip2()
                ),
            ),
            Ok(supported) => {
                let networks: Vec<String> =
                    supported.kinds.iter().map(|k| k.network.caip2()).collect();
                Verdict::no(
                    "NetworkNotSupported",
                    format!(
                        "the facilitator does not settle {}; it supports {} (change --network or the facilitator)",
                        offer.network.caip2(),
                        if networks.is_empty() {
                            "nothing".to_string()
                        } else {
                            networks.join(", ")
                        }
                    ),
                )
            }
            Err(e) => Verdict::no("WaitingForFacilitator", e.to_string()),
        }
    }

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
        if offer.health_path != "/" {
            route.free_paths.push(offer.health_path.clone());
        }
        if offer.offer_type == OfferType::Inference {
            route.free_paths.push("/v1/models".to_string());
        }
        route
    }
}

/// What buyers read while a route is unavailable (in its 503 and on the storefront),
/// by the first stage that failed. Never the stage's message: that names the upstream,
/// health-check, facilitator or RPC URL (a seller's private network, a provider's API
/// key), so it stays in the condition the operator reads with `agora sell status`.
fn buyer_reason(failed_stage: usize) -> &'static str {
    match failed_stage {
        0 => "the model is not ready",
        1 => "the service is not healthy",
        _ => "payments cannot be settled right now",
    }
}

/// An offer after stages 1 to 4.
struct Staged {
    verdicts: Option<[Verdict; 4]>,
    invalid: Option<Verdict>,
    route: Option<Route>,
    resolved: Option<ResolvedOffer>,
}

impl Staged {
    fn published_ok(&self) -> bool {
        self.verdicts.as_ref().is_some_and(|v| v[3].ok)
    }

    /// Adds Registered (from the seller-level `listing`) and Ready.
    fn finish(self, offer: &ServiceOffer, listing: &Listing) -> (OfferStatus, Option<Route>) {
        let previous = &offer.status;
        let generation = offer.metadata.generation;
        let published = self.published_ok();
        let (Some([model, upstream, gate, route_verdict]), Some(resolved)) =
            (self.verdicts, self.resolved)
        else {
            let invalid = self
                .invalid
                .unwrap_or_else(|| Verdict::no("InvalidSpec", "the offer could not be read"));
            let verdicts = STAGES.map(|_| invalid.clone());
            return (status(previous, generation, &verdicts, None, None), None);
        };
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
        let all = [&model, &upstream, &gate, &route_verdict, &registered];
        let ready = if all.iter().all(|v| v.ok) {
            Verdict::yes("Reconciled", "all stages are True")
        } else {
            let first = STAGES
                .iter()
                .zip(all)
                .find(|(_, v)| !v.ok)
                .map(|(s, v)| format!("{s}: {}", v.message))
                .unwrap_or_default();
            Verdict::no("Reconciling", first)
        };
        let endpoint = self.route.as_ref().map(|_| resolved.path.clone());
        let agent = (enabled && published).then_some(listing);
        let verdicts = [model, upstream, gate, route_verdict, registered, ready];
        (
            status(previous, generation, &verdicts, endpoint, agent),
            self.route,
        )
    }
}

enum Drain {
    Serving,
    Draining { until: u64 },
    Stopped,
}

fn drain_state(offer: &ServiceOffer) -> Drain {
    let Some(at) = offer
        .spec
        .drain_at
        .as_deref()
        .and_then(|a| parse_rfc3339(a).ok())
    else {
        return Drain::Serving;
    };
    let grace = offer
        .spec
        .drain_grace_period
        .as_deref()
        .and_then(|g| parse_duration(g).ok())
        .unwrap_or(Duration::from_secs(3600));
    let until = at.saturating_add(grace.as_secs());
    if x402::eip3009::unix_now() >= until {
        Drain::Stopped
    } else {
        Drain::Draining { until }
    }
}

fn join(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// The conditions for `verdicts`, keeping each one's transition time while its
/// status stays the same.
fn status(
    previous: &OfferStatus,
    generation: u64,
    verdicts: &[Verdict; 6],
    endpoint: Option<String>,
    agent: Option<&Listing>,
) -> OfferStatus {
    let now = format_rfc3339(x402::eip3009::unix_now());
    let conditions = STAGES
        .iter()
        .zip(verdicts)
        .map(|(kind, v)| {
            let status = if v.ok { "True" } else { "False" };
            let since = previous
                .conditions
                .iter()
                .find(|c| c.kind == *kind && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                kind: (*kind).to_string(),
                status: status.to_string(),
                reason: v.reason.to_string(),
                message: v.message.clone(),
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
