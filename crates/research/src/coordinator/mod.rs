//! The coordinator: the buying side of autoresearch. It finds workers on the ERC-8004
//! registry by OASF skill and x402 support ([`workers`]), asks an idle one its price,
//! pays one run through the buyer's wallet (the CLI does that with `agora pay`'s
//! flow), records what came back ([`store`]) and ranks workers by what they claim
//! beside what it saw itself ([`board`]). [`price`] holds the per-hour → per-run rule
//! sellers price with.
//!
//! Unlike the reference coordinator, the experiment id it makes is sent to the
//! worker, so both sides file the run under the same id.

pub mod board;
pub mod price;
pub mod store;
pub mod workers;

use alloy::primitives::B256;

/// A fresh experiment id, `exp-YYYYMMDD-<6 hex>` (the reference coordinator's shape,
/// within the worker's `^[A-Za-z0-9_-]+$`).
pub fn experiment_id(unix: u64) -> String {
    let date: String = x402::time::format_rfc3339(unix)
        .chars()
        .take(10)
        .filter(char::is_ascii_digit)
        .collect();
    let random = B256::random();
    let suffix: String = random[..3].iter().map(|b| format!("{b:02x}")).collect();
    format!("exp-{date}-{suffix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn experiment_ids_carry_the_date_and_fit_the_workers_rule() {
        let a = super::experiment_id(1_764_115_200);
        assert!(a.starts_with("exp-20251126-"), "{a}");
        assert_eq!(a.len(), "exp-20251126-abcdef".len());
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, super::experiment_id(1_764_115_200), "random suffix");
    }
}
