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
            .and_then(|mut f| writeln!(f, "{} {line}", utc(crate::state::unix_now())));
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

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Shift to eras of 400 years starting on 0000-03-01, where leap days fall last.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn times_are_written_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_668_773), "2026-11-26T04:52:53Z");
        assert_eq!(utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }

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
