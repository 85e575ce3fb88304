//! Experiment ids: the reference's made-up form, and the check that keeps a buyer's
//! id from naming a path outside the results directory.

use std::time::{SystemTime, UNIX_EPOCH};

/// Whether `id` is a valid experiment id: `^[A-Za-z0-9_-]+$`, so it can never name a
/// path outside the results directory.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `exp-YYYYMMDD-<8 hex>`, the reference's form.
pub(super) fn generate_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{}",
        now.as_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let hash = crate::train_hash(seed.as_bytes());
    let date: String = x402::time::format_rfc3339(now.as_secs())
        .chars()
        .take(10)
        .filter(|c| *c != '-')
        .collect();
    format!("exp-{date}-{}", &hash["sha256:".len()..][..8])
}
