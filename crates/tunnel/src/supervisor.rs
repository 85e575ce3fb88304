//! The supervisor: one task that keeps the tunnel in the wanted state. Told "wanted"
//! or "not wanted" (by the daemon, from the offers or the operator), it opens the
//! provider, publishes the public URL, and when the session ends on its own (relay
//! gone, cloudflared crashed) opens it again after a backoff that doubles up to 15 s.
//! Every change is written to tunnel.json and the tunnel log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::bore::{self, BoreError, BoreServer, Secret};
use crate::cloudflared;
use crate::log::TunnelLog;
use crate::state::{self, State, Status};

/// First pause after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// A session that lasted this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(30);

/// Where the tunnel comes from.
#[derive(Debug, Clone)]
pub enum Provider {
    /// A bore relay.
    Bore {
        /// The relay's control address.
        server: BoreServer,
        /// Its shared secret.
        secret: Option<Secret>,
    },
    /// cloudflared, quick or named.
    Cloudflared {
        /// The executable.
        binary: PathBuf,
        /// Quick or named.
        mode: cloudflared::Mode,
    },
}

impl Provider {
    /// `bore` or `cloudflared`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bore { .. } => "bore",
            Self::Cloudflared { .. } => "cloudflared",
        }
    }
}

/// Where the supervisor keeps its state and log.
#[derive(Debug, Clone)]
pub struct Files {
    /// tunnel.json.
    pub state: PathBuf,
    /// The tunnel log.
    pub log: TunnelLog,
}

type Ended = Pin<Box<dyn Future<Output = String> + Send>>;

/// An open tunnel and the future that resolves with why it ended.
struct Session {
    url: String,
    pid: Option<u32>,
    port: u16,
    ended: Ended,
}

/// Handle to the supervising task.
pub struct Supervisor {
    wanted: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising `provider` for the gateway at `local`, not wanted yet.
    pub fn spawn(provider: Provider, local: SocketAddr, files: Files) -> Self {
        let (wanted, wanted_rx) = watch::channel(false);
        let first = Status::off(provider.name());
        let (status_tx, status) = watch::channel(first.clone());
        let task = tokio::spawn(async move {
            let mut keeper = Keeper {
                provider,
                local,
                files,
                status: status_tx,
                wanted: wanted_rx,
                port: 0,
            };
            keeper.publish(first);
            keeper.run().await;
        });
        Self {
            wanted,
            status,
            task,
        }
    }

    /// Asks for the tunnel up (`true`) or down.
    pub fn set_wanted(&self, wanted: bool) {
        self.wanted.send_if_modified(|w| {
            let changed = *w != wanted;
            *w = wanted;
            changed
        });
    }

    /// Whether the tunnel is asked to be up.
    pub fn wanted(&self) -> bool {
        *self.wanted.borrow()
    }

    /// The current status, and changes to it.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Takes the tunnel down and ends the task (waiting at most 5 s).
    pub async fn shutdown(self) {
        self.set_wanted(false);
        let mut status = self.status.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            status.wait_for(|s| s.state == State::Off),
        )
        .await;
        self.task.abort();
    }
}

struct Keeper {
    provider: Provider,
    local: SocketAddr,
    files: Files,
    status: watch::Sender<Status>,
    wanted: watch::Receiver<bool>,
    /// The public port bore last gave, asked for again on reconnect.
    port: u16,
}

impl Keeper {
    fn publish(&self, next: Status) {
        if let Err(e) = state::save(&self.files.state, &next) {
            tracing::warn!(
                "cannot write the tunnel state {}: {e}",
                self.files.state.display()
            );
        }
        self.status.send_replace(next);
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut next = self.status.borrow().clone();
        let before = next.state;
        change(&mut next);
        if next.state != before {
            next.since = x402::time::unix_now();
        }
        self.publish(next);
    }

    async fn run(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut unwanted = self.wanted.clone();
        loop {
            if self.wanted.wait_for(|w| *w).await.is_err() {
                return;
            }
            self.update(|s| s.state = State::Starting);
            let opened = tokio::select! {
                opened = self.open() => Some(opened),
                _ = unwanted.wait_for(|w| !*w) => None,
            };
            let failure = match opened {
                None => {
                    self.stopped();
                    continue;
                }
                Some(Err(e)) => e,
                Some(Ok(session)) => {
                    let started = Instant::now();
                    self.port = session.port;
                    self.files
                        .log
                        .line(&format!("{} up at {}", self.provider.name(), session.url));
                    self.update(|s| {
                        s.state = State::Up;
                        s.url = Some(session.url.clone());
                        s.pid = session.pid;
                        s.last_error = None;
                    });
                    let reason = tokio::select! {
                        reason = session.ended => Some(reason),
                        _ = unwanted.wait_for(|w| !*w) => None,
                    };
                    let Some(reason) = reason else {
                        self.stopped();
                        backoff = FIRST_BACKOFF;
                        continue;
                    };
                    if started.elapsed() >= HEALTHY {
                        backoff = FIRST_BACKOFF;
                    }
                    self.update(|s| s.restarts += 1);
                    reason
                }
            };
            self.files.log.line(&format!(
                "{} down: {failure}; retrying in {backoff:?}",
                self.provider.name()
            ));
            self.update(|s| {
                s.state = State::Down;
                s.pid = None;
                s.last_error = Some(failure);
            });
            let slept = tokio::select! {
                () = tokio::time::sleep(backoff) => true,
                _ = unwanted.wait_for(|w| !*w) => false,
            };
            if slept {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                self.stopped();
                backoff = FIRST_BACKOFF;
            }
        }
    }

    /// The session was dropped (its process killed, its relay connection closed).
    fn stopped(&self) {
        self.files
            .log
            .line(&format!("{} stopped", self.provider.name()));
        self.update(|s| {
            s.state = State::Off;
            s.url = None;
            s.pid = None;
        });
    }

    async fn open(&self) -> Result<Session, String> {
        match &self.provider {
            Provider::Bore { server, secret } => {
                let config = bore::ClientConfig {
                    server: server.clone(),
                    secret: secret.clone(),
                    local: self.local,
                    port: self.port,
                };
                let connected = match bore::connect(config.clone()).await {
                    // The old port is taken or outside the relay's range now: any port.
                    Err(BoreError::Refused(_)) if config.port != 0 => {
                        bore::connect(bore::ClientConfig { port: 0, ..config }).await
                    }
                    other => other,
                }
                .map_err(|e| e.to_string())?;
                Ok(Session {
                    url: connected.public_url(),
                    pid: None,
                    port: connected.remote_port(),
                    ended: Box::pin(async move { connected.serve().await.to_string() }),
                })
            }
            Provider::Cloudflared { binary, mode } => {
                let running = cloudflared::start(binary, mode, self.local, &self.files.log).await?;
                Ok(Session {
                    url: running.url.clone(),
                    pid: running.pid,
                    port: 0,
                    ended: Box::pin(running.wait()),
                })
            }
        }
    }
}
