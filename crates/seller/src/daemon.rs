//! The seller daemon: the offer store, the reconciler, the gateway and the admin API
//! in one process.
//!
//! `agora serve --foreground` runs it for service managers, `agora sell ...` talks to
//! it over a Unix socket (mode 0600, so only this user can change what is sold), and
//! `agora demo` runs it in-process. Metrics are not on the buyers' listener (they show
//! revenue per route): [`Daemon::start_with`] serves them on a separate operator
//! listener when the caller binds one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::{Gateway, GatewayConfig, Site};
use offers::{Reconciler, ReconcilerConfig, Store};
use tokio::sync::Notify;
use x402::Facilitator;

use crate::admin::server::{Admin, router};
use crate::admin::{AdminClient, FacilitatorInfo, Info};
use crate::research_supervisor::{WorkerLauncher, supervise};
use crate::tunnel_follower::{self, Targets};

/// The offer database's file name under the home.
pub(crate) const OFFER_DB: &str = "agora.db";

/// Everything the daemon needs to start.
pub struct DaemonConfig {
    /// `$AGORA_HOME`: database and socket live here.
    pub home: PathBuf,
    /// Gateway listen address.
    pub listen: SocketAddr,
    /// Public base URL buyers use; default the gateway's own address.
    pub public_url: Option<String>,
    /// Who verifies and settles.
    pub facilitator: Arc<dyn Facilitator>,
    /// The same facilitator described for status output.
    pub facilitator_info: FacilitatorInfo,
    /// Seller name on the storefront.
    pub title: String,
    /// Whether ModelReady may pull missing Ollama models.
    pub pull_models: bool,
    /// On-chain ERC-8004 registration, when a registry key is configured.
    pub registry: Option<offers::RegistryConfig>,
    /// The tunnel kept up while something is sold.
    pub tunnel: Option<tunnel::Provider>,
    /// How research offers' workers are run; without one, research offers are
    /// served but no worker is started for them.
    pub workers: Option<Arc<dyn WorkerLauncher>>,
}

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The home is missing and cannot be made, or others can write it.
    #[error("{0}")]
    Home(String),
    /// The offer database does not open.
    #[error("cannot open the offer database in {}", .home.display())]
    Store {
        /// The home.
        home: PathBuf,
        /// Why.
        #[source]
        source: offers::StoreError,
    },
    /// The gateway's address is taken or not ours.
    #[error("cannot listen on {addr} (in use?)")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bound listener's address could not be read.
    #[error("cannot read the bound address of {what}")]
    Address {
        /// Which listener.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gateway (its payment ledger) did not open.
    #[error(transparent)]
    Gateway(#[from] gateway::BuildError),
    /// The reconciler's configuration is refused.
    #[error(transparent)]
    Reconciler(#[from] offers::reconcile::BuildError),
    /// Another daemon answers on the socket.
    #[error(
        "an agora daemon is already running (socket {}); stop it first or use another AGORA_HOME",
        .socket.display()
    )]
    AlreadyRunning {
        /// The socket.
        socket: PathBuf,
    },
    /// The admin socket could not be made private.
    #[error("cannot {what} {}", .path.display())]
    Socket {
        /// What was being done.
        what: &'static str,
        /// The socket's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running daemon.
pub struct Daemon {
    /// Where buyers reach the gateway locally.
    pub gateway_url: String,
    /// Public base URL.
    pub public_url: String,
    /// The admin socket.
    pub socket: PathBuf,
    /// Where the operator reads `/metrics`, when an operator listener was given.
    pub metrics_url: Option<String>,
    stop: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The admin socket's path under `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("agora.sock")
}

impl Daemon {
    /// Opens the store, binds the gateway and the admin socket, starts reconciling.
    pub async fn start(config: DaemonConfig) -> Result<Self, StartError> {
        Self::start_with(config, None).await
    }

    /// [`Daemon::start`], also serving the operator's `/metrics` on `operator` (bound
    /// by the caller, so a taken port fails before anything starts). It is a separate
    /// listener because the metrics carry per-route revenue that buyers must not read.
    pub async fn start_with(
        config: DaemonConfig,
        operator: Option<tokio::net::TcpListener>,
    ) -> Result<Self, StartError> {
        wallet::home::create_private_dir(&config.home)
            .map_err(|e| StartError::Home(format!("{e:#}")))?;
        wallet::home::refuse_shared_home(&config.home)
            .map_err(|e| StartError::Home(format!("{e:#}")))?;
        let store = Arc::new(Store::open(&config.home.join(OFFER_DB)).map_err(|source| {
            StartError::Store {
                home: config.home.clone(),
                source,
            }
        })?);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let bound: SocketAddr = listener
            .local_addr()
            .map_err(|source| StartError::Address {
                what: "the gateway",
                source,
            })?;
        let gateway_url = format!("http://{bound}");
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| gateway_url.clone())
            .trim_end_matches('/')
            .to_string();
        let gateway = Gateway::new(
            GatewayConfig {
                public_base_url: config.public_url.clone(),
                ledger: Some(config.home.join("payments.db")),
                ..GatewayConfig::default()
            },
            config.facilitator.clone(),
        )?;
        let reconciler = Arc::new(Reconciler::new(
            store.clone(),
            gateway.clone(),
            config.facilitator.clone(),
            ReconcilerConfig {
                site: Site {
                    title: config.title.clone(),
                    base_url: public_url.clone(),
                },
                pull_models: config.pull_models,
                registry: config.registry.clone(),
                ..ReconcilerConfig::default()
            },
        )?);
        let socket = socket_path(&config.home);
        let admin_listener = bind_socket(&socket).await?;
        let stop = Arc::new(Notify::new());
        let mut tasks = Vec::new();

        let mut metrics_url = None;
        if let Some(listener) = operator {
            let bound = listener
                .local_addr()
                .map_err(|source| StartError::Address {
                    what: "the metrics listener",
                    source,
                })?;
            metrics_url = Some(format!("http://{bound}/metrics"));
            let stopped = stop.clone();
            let app = gateway.operator_router();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stopped.notified().await })
                    .await
                {
                    tracing::error!("metrics listener stopped: {e}");
                }
            }));
        }

        let stopped = stop.clone();
        let served = gateway.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) =
                gateway::serve(&served, listener, async move { stopped.notified().await }).await
            {
                tracing::error!("gateway stopped: {e}");
            }
        }));
        let stopped = stop.clone();
        let running = reconciler.clone();
        tasks.push(tokio::spawn(async move {
            running.run(async move { stopped.notified().await }).await;
        }));
        // Research offers: their workers run as children of the daemon.
        if let Some(launcher) = config.workers.clone() {
            tasks.push(tokio::spawn(supervise(
                launcher,
                store.clone(),
                reconciler.waker(),
                config.home.clone(),
                stop.clone(),
            )));
        }
        let public = Arc::new(std::sync::RwLock::new(public_url.clone()));
        let mut tunnel = None;
        if let Some(provider) = config.tunnel.clone() {
            let (control, task) = tunnel_follower::spawn(
                provider,
                bound,
                &config.home,
                Targets {
                    gateway: gateway.clone(),
                    reconciler: reconciler.clone(),
                    public: public.clone(),
                    fallback: public_url.clone(),
                },
                stop.clone(),
            );
            tunnel = Some(control);
            tasks.push(task);
        }
        let admin = Admin {
            public,
            tunnel,
            store: store.clone(),
            wake: reconciler.waker(),
            reconciler,
            info: Info {
                facilitator: config.facilitator_info.label(),
                facilitator_detail: Some(config.facilitator_info.clone()),
                gateway_url: gateway_url.clone(),
                metrics_url: metrics_url.clone(),
                pid: Some(std::process::id()),
                public_url: public_url.clone(),
                registry: config.registry.is_some(),
                tunnel: None,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        };
        let stopped = stop.clone();
        let app = router(admin);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(admin_listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await
            {
                tracing::error!("admin API stopped: {e}");
            }
        }));
        Ok(Self {
            gateway_url,
            public_url,
            socket,
            metrics_url,
            stop,
            tasks,
        })
    }

    /// A client of this daemon's admin API.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.socket)
    }

    /// Stops accepting, lets paid calls in flight settle, removes the socket.
    pub async fn shutdown(self) {
        self.stop.notify_waiters();
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Binds the admin socket, replacing a stale one and refusing a live one; 0600.
async fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, StartError> {
    let failed = |what| {
        move |source| StartError::Socket {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(StartError::AlreadyRunning {
                socket: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(failed("remove the stale socket"))?;
    }
    let listener = bind_private(path).map_err(failed("create the admin socket"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(failed("set mode 0600 on the admin socket"))?;
    }
    Ok(listener)
}

/// Binds a Unix socket under umask 077, so it is created with no group or other
/// permissions instead of being reachable by anyone until the chmod that follows. The
/// umask is process-wide, so it is changed only around the bind itself.
fn bind_private(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use rustix::fs::Mode;
    let previous = rustix::process::umask(Mode::from_raw_mode(0o077));
    let bound = tokio::net::UnixListener::bind(path);
    rustix::process::umask(previous);
    bound
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[tokio::test]
    async fn a_home_others_can_write_is_refused_at_start() {
        let parent = tempfile::tempdir().unwrap();
        let home = parent.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let facilitator = x402::HttpFacilitator::new("http://127.0.0.1:9").unwrap();
        let config = DaemonConfig {
            home: home.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            facilitator: Arc::new(facilitator),
            facilitator_info: FacilitatorInfo::Remote {
                url: "http://127.0.0.1:9".into(),
            },
            title: "test".into(),
            pull_models: false,
            registry: None,
            tunnel: None,
            workers: None,
        };
        let err = match Daemon::start(config).await {
            Ok(_) => panic!("a world-writable home was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains(&format!("chmod 700 {}", home.display())),
            "{err}"
        );
        assert!(!home.join("agora.db").exists());
        assert!(!socket_path(&home).exists());
    }

    /// Runs `the_socket_is_private_from_its_creation` in a child test process, since it
    /// sets the process-wide umask to 0 (the worst a user could have).
    #[test]
    fn the_admin_socket_is_created_under_umask_077() {
        let module = module_path!().split_once("::").unwrap().1;
        let test = format!("{module}::the_socket_is_private_from_its_creation");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &test, "--ignored", "--test-threads=1"])
            .env("AGORA_TEST_UMASK_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    }

    #[tokio::test]
    #[ignore = "run by the_admin_socket_is_created_under_umask_077 in a child process"]
    async fn the_socket_is_private_from_its_creation() {
        assert!(
            std::env::var_os("AGORA_TEST_UMASK_CHILD").is_some(),
            "run the_admin_socket_is_created_under_umask_077 instead"
        );
        use rustix::fs::Mode;
        rustix::process::umask(Mode::empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agora.sock");
        // Straight after the bind, before any chmod: no group or other bits.
        let listener = bind_private(&path).unwrap();
        let mode = std::fs::symlink_metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "created with mode {mode:o}");
        // The umask the process had is back.
        assert_eq!(rustix::process::umask(Mode::empty()), Mode::empty());
        drop(listener);

        // The whole bind replaces the stale socket and ends at 0600.
        let _listener = bind_socket(&path).await.unwrap();
        let mode = std::fs::symlink_metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(rustix::process::umask(Mode::empty()), Mode::empty());
    }
}
