//! The seller's data plane: every buyer request lands here.
//!
//! Routes and published documents arrive as values ([`Gateway::install`]) and are
//! swapped atomically while serving; the facilitator is a trait object (embedded or
//! remote). The gate never charges for a failed call and never lets one authorization
//! buy twice: see [`paid`] for the request path.

mod admission;
pub mod allowed;
mod answer;
pub mod catalog;
pub mod challenge;
mod free;
pub mod guard;
pub mod matching;
pub mod metrics;
pub mod paid;
mod paywall;
pub mod proxy;
mod public_url;
mod receipt;
pub mod replicas;
mod respond;
pub mod route;
mod server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use x402::facilitator::Facilitator;

pub use catalog::{Documents, Site};
pub use route::{Limits, Route, RouteTable};
pub use server::serve;

use admission::Limiter;
use guard::ReplayGuard;
use metrics::Metrics;

/// Knobs of the gate itself (routes carry their own).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Public base URL (e.g. a tunnel) for resource URLs in 402s; without it the
    /// request's `Host` is used.
    pub public_base_url: Option<String>,
    /// How long the facilitator has to verify.
    pub verify_timeout: Duration,
    /// How long the facilitator has to settle; keep it above the facilitator's own
    /// receipt wait, or slow settlements come back as pending.
    pub settle_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive; read before anything is held.
    pub body_timeout: Duration,
    /// The payment ledger (SQLite), which keeps pending, paid-but-unanswered and
    /// answered authorizations across restarts; `None` keeps them in memory only.
    pub ledger: Option<std::path::PathBuf>,
    /// The replica set this gateway belongs to (a cluster): each payment is served by
    /// its home replica, whose ledger holds it (`replicas.rs`). `None`: one gateway.
    pub replicas: Option<replicas::Replicas>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            public_base_url: None,
            verify_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(60),
            max_body_bytes: 8 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            ledger: None,
            replicas: None,
        }
    }
}

/// What is being served right now: swapped whole, never edited in place.
pub(crate) struct Snapshot {
    pub(crate) table: RouteTable,
    pub(crate) documents: Documents,
    pub(crate) limiters: HashMap<String, Arc<Limiter>>,
}

/// Counts settlements in progress so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held while one paid request is being processed; dropping it lets shutdown proceed.
pub(crate) struct InFlightToken(Arc<Gatekeeper>);

impl Drop for InFlightToken {
    fn drop(&mut self) {
        if self.0.in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.in_flight.idle.notify_waiters();
        }
    }
}

/// Shared state behind every request.
pub(crate) struct Gatekeeper {
    pub(crate) config: GatewayConfig,
    /// Starts as `config.public_base_url`; a tunnel replaces it while serving.
    pub(crate) public_base: public_url::PublicBase,
    pub(crate) facilitator: Arc<dyn Facilitator>,
    snapshot: RwLock<Arc<Snapshot>>,
    loaded: AtomicBool,
    pub(crate) guard: Arc<ReplayGuard>,
    pub(crate) metrics: Metrics,
    pub(crate) http: reqwest::Client,
    in_flight: InFlight,
}

impl Gatekeeper {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    pub(crate) fn track(self: &Arc<Self>) -> InFlightToken {
        self.in_flight.count.fetch_add(1, Ordering::SeqCst);
        InFlightToken(self.clone())
    }

    /// Resolves once no paid request is being processed.
    pub(crate) async fn drained(&self) {
        loop {
            let idle = self.in_flight.idle.notified();
            if self.in_flight.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// The gateway: cheap to clone, shared by the server and whoever installs routes.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Gatekeeper>,
}

/// The gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// TLS setup of the upstream client.
    #[error("cannot build the gateway's HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The payment ledger.
    #[error(transparent)]
    Ledger(#[from] guard::LedgerError),
}

impl Gateway {
    /// A gateway with no routes yet (`/readyz` answers 503 until [`Gateway::install`]).
    pub fn new(
        config: GatewayConfig,
        facilitator: Arc<dyn Facilitator>,
    ) -> Result<Self, BuildError> {
        let empty = Snapshot {
            table: RouteTable::default(),
            documents: Documents::default(),
            limiters: HashMap::new(),
        };
        let guard = match &config.ledger {
            Some(path) => ReplayGuard::open(path, x402::time::unix_now())?,
            None => ReplayGuard::in_memory(),
        };
        Ok(Self {
            inner: Arc::new(Gatekeeper {
                public_base: public_url::PublicBase::new(config.public_base_url.clone()),
                config,
                facilitator,
                snapshot: RwLock::new(Arc::new(empty)),
                loaded: AtomicBool::new(false),
                guard: Arc::new(guard),
                metrics: Metrics::default(),
                http: proxy::client()?,
                in_flight: InFlight::default(),
            }),
        })
    }

    /// Replaces the routes and documents at once; requests already in flight finish
    /// on the old ones. Rate and in-flight budgets carry over for routes whose limits
    /// did not change.
    pub fn install(&self, routes: Vec<Route>, documents: Documents) {
        let previous = self.inner.snapshot();
        let limiters = routes
            .iter()
            .map(|r| {
                let kept = previous
                    .limiters
                    .get(&r.name)
                    .filter(|l| l.limits() == r.limits)
                    .cloned();
                (
                    r.name.clone(),
                    kept.unwrap_or_else(|| Arc::new(Limiter::new(r.limits))),
                )
            })
            .collect();
        let next = Arc::new(Snapshot {
            table: RouteTable::new(routes),
            documents,
            limiters,
        });
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = next;
        self.inner.loaded.store(true, Ordering::SeqCst);
    }

    /// Replaces the public base URL of the 402s' resource URLs (a tunnel came up or
    /// changed its URL); `None` goes back to what each request says.
    pub fn set_public_base_url(&self, base: Option<String>) {
        self.inner.public_base.set(base);
    }

    /// The routes being served.
    pub fn routes(&self) -> Vec<Route> {
        self.inner
            .snapshot()
            .table
            .routes()
            .iter()
            .map(|r| (**r).clone())
            .collect()
    }

    /// Where one authorization stands in the replay guard, if it is remembered: for
    /// diagnostics, and for tests that must wait until a stream counts as delivered.
    pub fn payment_stage(&self, key: &x402::eip3009::AuthorizationKey) -> Option<guard::Stage> {
        self.inner.guard.stage(key)
    }

    /// Request and settlement counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The axum router serving the gate, the catalog and the operations endpoints.
    pub fn router(&self) -> axum::Router {
        server::router(self.inner.clone())
    }
}
