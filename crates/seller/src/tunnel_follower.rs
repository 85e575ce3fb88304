//! The daemon's side of the tunnel: keeps it up while something is sold and moves
//! every published URL to wherever it points.
//!
//! Up when the first offer turns Ready, down when no offer has a route any more
//! (deleted or stopped), unless the operator holds it up or down (the admin API's
//! `/v1/tunnel/start|stop`, until the daemon restarts). Whenever the tunnel's URL changes the
//! gateway's 402 `resource` base and the reconciler's base URL (catalog, registration
//! file, `setAgentURI` through the Registered stage) move with it; a tunnel that is
//! down keeps its last URL published while it is retried, and a stopped one gives the
//! gateway's own URL back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use gateway::Gateway;
use offers::Reconciler;
use tokio::sync::{Notify, watch};
use tunnel::{Files, Provider, Supervisor, TunnelLog};

use crate::admin::{Control, TunnelStatus};

/// `$AGORA_HOME/tunnel.json`: the tunnel's last state, read while the daemon is down.
pub fn state_path(home: &Path) -> std::path::PathBuf {
    home.join("tunnel.json")
}

/// `$AGORA_HOME/logs/tunnel.log`: what the tunnel process said.
pub fn log_path(home: &Path) -> std::path::PathBuf {
    home.join("logs").join("tunnel.log")
}

/// The public URL as it is now, shared with the admin API.
pub type PublicUrl = Arc<RwLock<String>>;

/// What the admin API needs to show and steer the tunnel.
pub struct TunnelControl {
    status: watch::Receiver<tunnel::Status>,
    hold: watch::Sender<Option<bool>>,
    provider: &'static str,
}

impl TunnelControl {
    /// Holds the tunnel up (`Some(true)`), down, or lets it follow the offers (`None`).
    pub fn hold(&self, hold: Option<bool>) {
        self.hold.send_replace(hold);
    }

    /// The tunnel's status and who steers it, as the admin API answers it.
    pub fn describe(&self) -> TunnelStatus {
        let mut status = self.status.borrow().clone();
        status.provider = self.provider.to_string();
        let control = match *self.hold.borrow() {
            Some(true) => Control::HeldUp,
            Some(false) => Control::HeldDown,
            None => Control::FollowsOffers,
        };
        TunnelStatus { status, control }
    }
}

/// Everything the follower moves when the URL changes.
pub struct Targets {
    /// The 402s' resource base.
    pub gateway: Gateway,
    /// Catalog, registration file and on-chain URI.
    pub reconciler: Arc<Reconciler>,
    /// What `/v1/status` reports as `publicUrl` (so probes go through the tunnel).
    pub public: PublicUrl,
    /// The URL to give back when the tunnel stops: the gateway's own.
    pub fallback: String,
}

/// Starts supervising `provider` for the gateway at `local` and following the
/// offers; the task ends (taking the tunnel down) when `stop` fires.
pub fn spawn(
    provider: Provider,
    local: SocketAddr,
    home: &Path,
    targets: Targets,
    stop: Arc<Notify>,
) -> (Arc<TunnelControl>, tokio::task::JoinHandle<()>) {
    let name = provider.name();
    let supervisor = Supervisor::spawn(
        provider,
        local,
        Files {
            state: state_path(home),
            log: TunnelLog::new(log_path(home)),
        },
    );
    let (hold, held) = watch::channel(None);
    let control = Arc::new(TunnelControl {
        status: supervisor.status(),
        hold,
        provider: name,
    });
    let task = tokio::spawn(follow(supervisor, held, targets, stop));
    (control, task)
}

async fn follow(
    supervisor: Supervisor,
    mut held: watch::Receiver<Option<bool>>,
    targets: Targets,
    stop: Arc<Notify>,
) {
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    let mut passes = targets.reconciler.passes();
    let mut status = supervisor.status();
    let mut current = targets.fallback.clone();
    loop {
        let wanted = held.borrow().unwrap_or_else(|| {
            let summary = passes.borrow();
            if supervisor.wanted() {
                summary.routed > 0
            } else {
                summary.ready > 0
            }
        });
        supervisor.set_wanted(wanted);
        let url = status
            .borrow()
            .url
            .clone()
            .unwrap_or_else(|| targets.fallback.clone());
        if url != current {
            tracing::info!("public URL now {url}");
            let tunnelled = url != targets.fallback;
            targets
                .gateway
                .set_public_base_url(tunnelled.then(|| url.clone()));
            *targets.public.write().unwrap_or_else(|e| e.into_inner()) = url.clone();
            targets.reconciler.set_base_url(&url);
            current = url;
        }
        tokio::select! {
            changed = passes.changed() => if changed.is_err() { break },
            changed = status.changed() => if changed.is_err() { break },
            changed = held.changed() => if changed.is_err() { break },
            () = &mut stopped => break,
        }
    }
    supervisor.shutdown().await;
}
