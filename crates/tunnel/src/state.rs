//! The tunnel's state as the operator and other commands read it: provider, state,
//! public URL, restarts, last error. Kept in $AGORA_HOME/tunnel.json (mode 0600: it
//! names the relay and the process) so `agora tunnel status` answers even while the
//! daemon is down.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the tunnel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not wanted: no offer needs it, or it was stopped.
    Off,
    /// Being opened.
    Starting,
    /// Carrying traffic at `url`.
    Up,
    /// Wanted but broken; being retried with backoff.
    Down,
}

/// A snapshot of the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `bore` or `cloudflared`.
    pub provider: String,
    /// Off, starting, up or down.
    pub state: State,
    /// The public URL while up (and the last one while down).
    pub url: Option<String>,
    /// The cloudflared process, when one runs.
    pub pid: Option<u32>,
    /// Restarts after a crash since the daemon started.
    pub restarts: u32,
    /// Why the last attempt or session ended.
    pub last_error: Option<String>,
    /// When `state` last changed (Unix seconds).
    pub since: u64,
}

impl Status {
    /// The state before anything was tried.
    pub fn off(provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            state: State::Off,
            url: None,
            pid: None,
            restarts: 0,
            last_error: None,
            since: x402::time::unix_now(),
        }
    }
}

/// Writes `status` to `path` atomically, mode 0600 from creation.
pub fn save(path: &Path, status: &Status) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The saved status, `None` when no tunnel ever ran here.
pub fn load(path: &Path) -> std::io::Result<Option<Status>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_state_file_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.json");
        assert_eq!(load(&path).unwrap(), None);
        let mut status = Status::off("bore");
        status.state = State::Up;
        status.url = Some("http://relay.example:4000".into());
        save(&path, &status).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap(), Some(status));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"state\": \"up\""), "{text}");
    }
}
