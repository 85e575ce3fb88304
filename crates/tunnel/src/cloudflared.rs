//! cloudflared as a child process: a quick tunnel (a random `*.trycloudflare.com`
//! name) or a named tunnel (a token and the hostname routed to it). The public URL
//! comes from cloudflared's metrics server (`/quicktunnel`), with its stderr banner as
//! a fallback; `/ready` says when the edge connection is up. Only the process is
//! managed here; restarts belong to the supervisor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::log::TunnelLog;

/// Overrides where cloudflared is looked for.
pub const BINARY_ENV: &str = "AGORA_CLOUDFLARED";

/// How long cloudflared has to report a URL and readiness.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Quick or named.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A throwaway `*.trycloudflare.com` URL; no account.
    Quick,
    /// A tunnel made in the Cloudflare dashboard: its connector token and the
    /// hostname routed to it.
    Named {
        /// Passed as `TUNNEL_TOKEN` in the environment, never on the command line
        /// (where `ps` would show it).
        token: String,
        /// The public hostname, e.g. `api.example.com`.
        hostname: String,
    },
}

/// Why cloudflared cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// `AGORA_CLOUDFLARED` names something that cannot be run.
    #[error("{BINARY_ENV}={} is not an executable file; point it at cloudflared or unset it", .0.display())]
    NotExecutable(PathBuf),
    /// Neither `AGORA_CLOUDFLARED` nor `PATH` has it.
    #[error(
        "cloudflared is not installed: get it from https://github.com/cloudflare/cloudflared/releases (or your package manager, e.g. `brew install cloudflared`), or set {BINARY_ENV}=/path/to/cloudflared"
    )]
    NotInstalled,
}

/// Finds cloudflared: `AGORA_CLOUDFLARED`, else `cloudflared` on `PATH`.
pub fn locate() -> Result<PathBuf, LocateError> {
    locate_in(std::env::var_os(BINARY_ENV), std::env::var_os("PATH"))
}

fn locate_in(
    configured: Option<std::ffi::OsString>,
    search: Option<std::ffi::OsString>,
) -> Result<PathBuf, LocateError> {
    if let Some(path) = configured.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(LocateError::NotExecutable(path))
        };
    }
    search
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("cloudflared"))
        .find(|p| is_executable(p))
        .ok_or(LocateError::NotInstalled)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running cloudflared whose URL is known and whose edge connection is ready.
pub struct Running {
    child: Child,
    /// `https://<hostname>`.
    pub url: String,
    /// The process id, for the state file.
    pub pid: Option<u32>,
}

impl Running {
    /// Waits for the process to end and says how.
    pub async fn wait(mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!("cloudflared exited ({status})"),
            Err(e) => format!("cannot wait for cloudflared: {e}"),
        }
    }
}

/// The first public tunnel URL in a cloudflared log line (`api.trycloudflare.com`
/// appears in error lines and is not one).
pub fn banner_url(line: &str) -> Option<String> {
    line.match_indices("https://").find_map(|(at, _)| {
        let rest = &line[at + "https://".len()..];
        let host: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .collect();
        let host = host.trim_end_matches('.');
        (host.ends_with(".trycloudflare.com") && host != "api.trycloudflare.com")
            .then(|| format!("https://{host}"))
    })
}

fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts cloudflared for `local` and waits until it is ready with a URL.
pub async fn start(
    binary: &Path,
    mode: &Mode,
    local: SocketAddr,
    log: &TunnelLog,
) -> Result<Running, String> {
    let metrics_port =
        free_loopback_port().map_err(|e| format!("cannot pick a metrics port: {e}"))?;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut command = Command::new(binary);
    command.args(["tunnel", "--no-autoupdate", "--metrics", &metrics]);
    command.args(["--url", &format!("http://{local}")]);
    if let Mode::Named { token, .. } = mode {
        command.arg("run").env("TUNNEL_TOKEN", token);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id();
    log.line(&format!(
        "cloudflared started (pid {}, metrics {metrics})",
        pid.map_or_else(|| "?".into(), |p| p.to_string())
    ));
    let (banner_tx, banner) = watch::channel(None::<String>);
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        let banner_tx = banner_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = banner_url(&line) {
                    banner_tx.send_if_modified(|seen| {
                        let fresh = seen.is_none();
                        if fresh {
                            *seen = Some(url);
                        }
                        fresh
                    });
                }
                log.line(&format!("cloudflared: {line}"));
            }
        });
    }
    let url = wait_ready(&mut child, mode, &metrics, &banner)
        .await
        .map_err(|e| format!("{e}; see the tunnel log {}", log.path().display()))?;
    log.line(&format!("cloudflared ready at {url}"));
    Ok(Running { child, url, pid })
}

/// Polls the metrics server until the URL is known and `/ready` answers 200.
async fn wait_ready(
    child: &mut Child,
    mode: &Mode,
    metrics: &str,
    banner: &watch::Receiver<Option<String>>,
) -> Result<String, String> {
    let http = x402::http::direct()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut url = match mode {
        Mode::Named { hostname, .. } => Some(format!("https://{hostname}")),
        Mode::Quick => None,
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("cloudflared exited at startup ({status})"));
        }
        if url.is_none() {
            url = quick_hostname(&http, metrics)
                .await
                .or_else(|| banner.borrow().clone());
        }
        if let Some(found) = &url
            && http
                .get(format!("http://{metrics}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        {
            return Ok(found.clone());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "cloudflared was not ready within {READY_WITHIN:?}{}",
                if url.is_none() {
                    " and reported no *.trycloudflare.com URL"
                } else {
                    ""
                }
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `https://` + the hostname `/quicktunnel` reports, once it reports one.
async fn quick_hostname(http: &reqwest::Client, metrics: &str) -> Option<String> {
    let answer: serde_json::Value = http
        .get(format!("http://{metrics}/quicktunnel"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let hostname = answer["hostname"].as_str()?.trim();
    (!hostname.is_empty()).then(|| format!("https://{hostname}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_gives_the_tunnel_url_but_not_the_api_host() {
        let banner = "2026-11-26T04:00:00Z INF |  https://calm-river-words-here.trycloudflare.com                                  |";
        assert_eq!(
            banner_url(banner).as_deref(),
            Some("https://calm-river-words-here.trycloudflare.com")
        );
        let error =
            "ERR Error unmarshaling QuickTunnel response: url=https://api.trycloudflare.com/tunnel";
        assert_eq!(banner_url(error), None);
        assert_eq!(
            banner_url("INF Starting metrics server on 127.0.0.1:1234/metrics"),
            None
        );
    }

    #[test]
    fn a_missing_cloudflared_names_the_install_and_the_alternatives() {
        let dir = std::env::temp_dir();
        let err = locate_in(None, Some(dir.clone().into_os_string())).unwrap_err();
        assert_eq!(err, LocateError::NotInstalled);
        let text = err.to_string();
        assert!(text.contains("not installed"), "{text}");
        assert!(text.contains("AGORA_CLOUDFLARED"), "{text}");
        assert!(
            !text.contains("--"),
            "no CLI flag in a library error: {text}"
        );
        let err = locate_in(Some(dir.join("no-such-cloudflared").into()), None).unwrap_err();
        assert!(err.to_string().contains("not an executable"), "{err}");
    }
}
