//! The tunnel's own log ($AGORA_HOME/logs/tunnel.log): what cloudflared printed and
//! what the supervisor decided, so `agora tunnel logs` works with or without the
//! daemon and after a crash.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends timestamped lines to one file; failures to write are ignored (a full disk
/// must not stop the tunnel), but reported once through tracing.
#[derive(Debug, Clone)]
pub struct TunnelLog {
    path: PathBuf,
}

impl TunnelLog {
    /// A log at `path` (its directory is created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the lines go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` with the current UTC time in seconds.
    pub fn line(&self, line: &str) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{} {line}", crate::state::unix_now()));
        if let Err(e) = written {
            tracing::warn!("cannot write the tunnel log {}: {e}", self.path.display());
        }
    }

    /// The last `lines` lines (all when the file is shorter).
    pub fn tail(&self, lines: usize) -> std::io::Result<Vec<String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        Ok(all[from..].iter().map(|l| (*l).to_string()).collect())
    }
}
