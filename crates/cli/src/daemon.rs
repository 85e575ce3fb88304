//! The seller daemon: the offer store, the reconciler, the gateway and the admin API
//! in one process.
//!
//! `agora serve --foreground` runs it for service managers, `agora sell ...` talks to
//! it over a Unix socket (mode 0600, so only this user can change what is sold), and
//! `agora demo` runs it in-process. Metrics are not on the buyers' listener (they show
//! revenue per route): [`Daemon::start_with`] serves them on a separate operator
//! listener when `agora serve --metrics-listen` asks for one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway::{Gateway, GatewayConfig, Site};
use offers::{Reconciler, ReconcilerConfig, ServiceOffer, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use x402::Facilitator;

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
    /// How the facilitator is described in status output.
    pub facilitator_label: String,
    /// Seller name on the storefront.
    pub title: String,
    /// Whether ModelReady may pull missing Ollama models.
    pub pull_models: bool,
    /// On-chain ERC-8004 registration, when a registry key is configured.
    pub registry: Option<offers::RegistryConfig>,
    /// The tunnel kept up while something is sold (`agora serve --tunnel`).
    pub tunnel: Option<tunnel::Provider>,
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

#[derive(Clone)]
struct Admin {
    store: Arc<Store>,
    reconciler: Arc<Reconciler>,
    wake: Arc<Notify>,
    info: Value,
    /// The public URL now (a tunnel moves it).
    public: crate::tunnel_cmd::follow::PublicUrl,
    tunnel: Option<Arc<crate::tunnel_cmd::follow::TunnelControl>>,
}

impl Daemon {
    /// Opens the store, binds the gateway and the admin socket, starts reconciling.
    pub async fn start(config: DaemonConfig) -> anyhow::Result<Self> {
        Self::start_with(config, None).await
    }

    /// [`Daemon::start`], also serving the operator's `/metrics` on `operator` (bound
    /// by the caller, so a taken port fails before anything starts). It is a separate
    /// listener because the metrics carry per-route revenue that buyers must not read.
    pub async fn start_with(
        config: DaemonConfig,
        operator: Option<tokio::net::TcpListener>,
    ) -> anyhow::Result<Self> {
        wallet::home::create_private_dir(&config.home)?;
        wallet::home::refuse_shared_home(&config.home)?;
        let store = Arc::new(Store::open(&config.home.join("agora.db")).with_context(|| {
            format!(
                "cannot open the offer database in {}",
                config.home.display()
            )
        })?);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (in use? pass --listen 127.0.0.1:0 for a free port)",
                    config.listen
                )
            })?;
        let bound: SocketAddr = listener
            .local_addr()
            .context("cannot read the bound address")?;
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
                .context("cannot read the metrics listener's address")?;
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
        // `agora sell research` offers: their workers run as children of the daemon.
        tasks.push(tokio::spawn(crate::sell::research::supervise(
            store.clone(),
            reconciler.waker(),
            config.home.clone(),
            stop.clone(),
        )));
        let public = Arc::new(std::sync::RwLock::new(public_url.clone()));
        let mut tunnel = None;
        if let Some(provider) = config.tunnel.clone() {
            let (control, task) = crate::tunnel_cmd::follow::spawn(
                provider,
                bound,
                &config.home,
                crate::tunnel_cmd::follow::Targets {
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
            info: json!({
                "gatewayUrl": gateway_url,
                "publicUrl": public_url,
                "facilitator": config.facilitator_label,
                "metricsUrl": metrics_url,
                "registry": config.registry.is_some(),
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
            }),
        };
        let stopped = stop.clone();
        let app = admin_router(admin);
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
async fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "an agora daemon is already running (socket {}); stop it first or use another AGORA_HOME",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = bind_private(path)
        .with_context(|| format!("cannot create the admin socket {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
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

fn admin_router(admin: Admin) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/offers", get(list))
        .route("/v1/offers/{name}", get(show).put(put).delete(delete))
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/registration", get(registration))
        .route("/v1/settings", get(settings).put(put_settings))
        .route("/v1/tunnel", get(tunnel_status))
        .route("/v1/tunnel/{action}", post(tunnel_steer))
        .with_state(admin)
}

fn fail(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    fail(StatusCode::INTERNAL_SERVER_ERROR, e)
}

async fn status(State(admin): State<Admin>) -> Response {
    let mut info = admin.info.clone();
    info["publicUrl"] = json!(*admin.public.read().unwrap_or_else(|e| e.into_inner()));
    info["tunnel"] = admin.tunnel.as_ref().map_or(Value::Null, |t| t.describe());
    Json(info).into_response()
}

async fn tunnel_status(State(admin): State<Admin>) -> Response {
    match &admin.tunnel {
        Some(t) => Json(t.describe()).into_response(),
        None => Json(json!({ "configured": false, "state": "off" })).into_response(),
    }
}

/// `agora tunnel start|stop`: holds the tunnel up or down.
async fn tunnel_steer(State(admin): State<Admin>, UrlPath(action): UrlPath<String>) -> Response {
    let Some(tunnel) = &admin.tunnel else {
        return fail(
            StatusCode::CONFLICT,
            "this daemon runs with --tunnel none; restart it with agora serve --tunnel bore --bore-server HOST (or --tunnel cloudflared)",
        );
    };
    match action.as_str() {
        "start" => tunnel.hold(Some(true)),
        "stop" => tunnel.hold(Some(false)),
        other => {
            return fail(
                StatusCode::NOT_FOUND,
                format!("no tunnel action {other:?}; use start or stop"),
            );
        }
    }
    Json(tunnel.describe()).into_response()
}

async fn list(State(admin): State<Admin>) -> Response {
    match admin.store.list() {
        Ok(offers) => Json(offers).into_response(),
        Err(e) => internal(e),
    }
}

async fn show(State(admin): State<Admin>, UrlPath(name): UrlPath<String>) -> Response {
    match (admin.store.get(&name), admin.store.events(&name, 20)) {
        (Ok(Some(offer)), Ok(events)) => {
            Json(json!({ "offer": offer, "events": events })).into_response()
        }
        (Ok(None), _) => not_found(&name),
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

fn not_found(name: &str) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        format!("no offer named {name:?}; list them with: agora sell list"),
    )
}

async fn put(
    State(admin): State<Admin>,
    UrlPath(name): UrlPath<String>,
    Json(mut offer): Json<ServiceOffer>,
) -> Response {
    offer.metadata.name = name;
    if let Err(e) = offers::validate::resolve(&offer) {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    match admin.store.put(&offer) {
        Ok((stored, change)) => {
            admin.wake.notify_one();
            Json(json!({ "offer": stored, "change": change })).into_response()
        }
        Err(offers::StoreError::Invalid(e)) => fail(StatusCode::BAD_REQUEST, e),
        Err(e) => internal(e),
    }
}

async fn delete(State(admin): State<Admin>, UrlPath(name): UrlPath<String>) -> Response {
    match admin.store.delete(&name) {
        Ok(true) => match admin.reconciler.pass().await {
            Ok(_) => Json(json!({ "deleted": name })).into_response(),
            Err(e) => internal(e),
        },
        Ok(false) => not_found(&name),
        Err(e) => internal(e),
    }
}

async fn reconcile(State(admin): State<Admin>) -> Response {
    match admin.reconciler.pass().await {
        Ok(summary) => {
            Json(json!({ "offers": summary.offers, "ready": summary.ready })).into_response()
        }
        Err(e) => internal(e),
    }
}

/// The seller's ERC-8004 registration as the last pass left it.
async fn registration(State(admin): State<Admin>) -> Response {
    if let Err(e) = admin.reconciler.pass().await {
        return internal(e);
    }
    let mut out = serde_json::Map::new();
    for key in offers::registry::RECORD_KEYS {
        match admin.store.setting(key) {
            Ok(value) => {
                out.insert(key.to_string(), json!(value));
            }
            Err(e) => return internal(e),
        }
    }
    out.insert(
        "onChain".into(),
        json!(admin.info["registry"].as_bool().unwrap_or(false)),
    );
    Json(Value::Object(out)).into_response()
}

/// Selling defaults kept by the daemon (`agora sell pricing`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Default recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// Default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Default facilitator URL for daemons started later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator: Option<String>,
}

const SETTING_KEYS: [&str; 3] = ["payTo", "network", "facilitator"];

fn read_settings(store: &Store) -> Result<Settings, offers::StoreError> {
    Ok(Settings {
        pay_to: store.setting(SETTING_KEYS[0])?,
        network: store.setting(SETTING_KEYS[1])?,
        facilitator: store.setting(SETTING_KEYS[2])?,
    })
}

async fn settings(State(admin): State<Admin>) -> Response {
    match read_settings(&admin.store) {
        Ok(s) => Json(s).into_response(),
        Err(e) => internal(e),
    }
}

async fn put_settings(State(admin): State<Admin>, Json(next): Json<Settings>) -> Response {
    if let Some(pay_to) = &next.pay_to
        && let Err(e) = offers::validate::parse_wallet(pay_to)
    {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    if let Some(network) = &next.network
        && let Err(e) = x402::Network::parse(network)
    {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    let values = [&next.pay_to, &next.network, &next.facilitator];
    for (key, value) in SETTING_KEYS.iter().zip(values) {
        if let Some(v) = value
            && let Err(e) = admin.store.set_setting(key, v)
        {
            return internal(e);
        }
    }
    settings(State(admin)).await
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
            facilitator_label: "test".into(),
            title: "test".into(),
            pull_models: false,
            registry: None,
            tunnel: None,
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
