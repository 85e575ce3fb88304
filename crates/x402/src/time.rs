//! The workspace's one clock and its one RFC 3339 codec. Unix time in seconds is its
//! own type, so an authorization's `validAfter` and `validBefore` (U256 on the wire)
//! are compared with "now" in one unit and one width, and a timestamp is never
//! confused with a duration or an amount. RFC 3339 (`2026-11-22T05:14:00Z`, UTC,
//! second precision) is written and read here without a date library, for offers'
//! conditions and drain times, research runs and the wallet's ledger.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::U256;

/// Seconds since the Unix epoch.
///
/// ```rust
/// use alloy::primitives::U256;
/// use x402::UnixTimestamp;
///
/// let issued = UnixTimestamp::from_secs(1_700_000_000);
/// assert_eq!(issued.saturating_add(60).to_u256(), U256::from(1_700_000_060u64));
/// assert_eq!(issued.to_string(), "1700000000");
/// assert!(UnixTimestamp::now() > issued);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTimestamp(u64);

impl UnixTimestamp {
    /// The timestamp `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// The current time; a clock set before 1970 reads as the epoch.
    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// `secs` later, stopping at the largest timestamp rather than wrapping.
    pub const fn saturating_add(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// `secs` earlier, stopping at the epoch.
    pub const fn saturating_sub(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// The timestamp as EIP-3009 writes `validAfter`/`validBefore`.
    pub fn to_u256(self) -> U256 {
        U256::from(self.0)
    }
}

/// Callers that keep seconds as `u64` (`unix_now()`, stored columns) pass them as is.
impl From<u64> for UnixTimestamp {
    fn from(secs: u64) -> Self {
        Self(secs)
    }
}

/// Writes the seconds, as messages and logs have always shown "now".
impl fmt::Display for UnixTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The current unix time in seconds, for callers that keep seconds as `u64` (stored
/// columns, status files); the same clock as [`UnixTimestamp::now`].
pub fn unix_now() -> u64 {
    UnixTimestamp::now().as_secs()
}

/// The current time as RFC 3339 (`2026-11-22T05:14:00Z`), for records people read.
pub fn now_rfc3339() -> String {
    format_rfc3339(unix_now())
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX);
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS` with `Z` or a `+HH:MM`/`-HH:MM` offset (fractions of a
/// second are ignored) into unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid time {text:?}: use RFC 3339 such as 2026-01-31T12:00:00Z");
    let t = text.trim();
    if t.len() < 20 || !t.is_char_boundary(19) {
        return Err(bad());
    }
    let (main, zone) = t.split_at(19);
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        main.get(range).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    let sep = |i: usize, c: u8| main.as_bytes().get(i) == Some(&c);
    if !(sep(4, b'-')
        && sep(7, b'-')
        && (sep(10, b'T') || sep(10, b't'))
        && sep(13, b':')
        && sep(16, b':'))
    {
        return Err(bad());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let zone = match zone.find(['Z', 'z', '+', '-']) {
        Some(i) => &zone[i..],
        None => return Err(bad()),
    };
    let offset = match zone.as_bytes().first() {
        Some(b'Z' | b'z') => 0,
        Some(sign) => {
            let h: i64 = zone
                .get(1..3)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let m: i64 = zone
                .get(4..6)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        None => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(unix).map_err(|_| bad())
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let end = UnixTimestamp::from_secs(u64::MAX);
        assert_eq!(end.saturating_add(1), end);
        assert_eq!(UnixTimestamp::from_secs(5).saturating_sub(10).as_secs(), 0);
        assert_eq!(end.to_u256(), U256::from(u64::MAX));
        assert_eq!(UnixTimestamp::from(42), UnixTimestamp::from_secs(42));
    }

    #[test]
    fn now_is_after_this_code_was_written() {
        assert!(UnixTimestamp::now() > UnixTimestamp::from_secs(1_700_000_000));
    }

    #[test]
    fn round_trips_and_offsets() {
        for unix in [0, 951_782_400, 1_700_000_000, 1_795_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(unix)).unwrap(), unix);
        }
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13:20",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
