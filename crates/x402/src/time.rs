//! Unix time in seconds as its own type, so an authorization's `validAfter` and
//! `validBefore` (U256 on the wire) are compared with "now" in one unit and one width,
//! and a timestamp is never confused with a duration or an amount.

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
}
