//! The tunnel's own log ($AGORA_HOME/logs/tunnel.log): what cloudflared printed and
//! what the supervisor decided, so `agora tunnel logs` works with or without the
//! daemon and after a crash.

use std::io::Write;
use std::path::{Path, PathBuf};

use x402::time::now_rfc3339;

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

    /// Appends `line` after the current UTC time.
    pub fn line(&self, line: &str) {
        // Private like the rest of $AGORA_HOME: it names the relay and the processes.
        if let Some(dir) = self.path.parent() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            let _ = builder.create(dir);
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{} {line}", now_rfc3339()));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_tail_is_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = TunnelLog::new(dir.path().join("logs").join("tunnel.log"));
        assert!(log.tail(5).unwrap().is_empty());
        for i in 0..4 {
            log.line(&format!("line {i}"));
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(log.path()), 0o600);
        assert_eq!(mode(log.path().parent().unwrap()), 0o700);
        let tail = log.tail(2).unwrap();
        assert_eq!(tail.len(), 2);
        assert!(
            tail[0].ends_with("Z line 2") && tail[1].ends_with("Z line 3"),
            "{tail:?}"
        );
    }
}
