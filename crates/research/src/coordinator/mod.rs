//! The coordinator: the buying side of autoresearch. It finds workers on the ERC-8004
//! registry by OASF skill and x402 support ([`workers`], and the [`Registry`] it asks
//! through `market`), asks the idle ones their price, [`pick`]s one, pays one run from
//! a `buyer::Buyer` ([`Coordinator::submit`], as `agora pay` pays: the wallet's limits,
//! the ledger row written before the payment is sent), records what came back
//! ([`store`]) and ranks workers by what they claim beside what it saw itself
//! ([`board`]). [`price`] holds the per-hour → per-run rule sellers price with.
//!
//! Finding and paying need the `coordinator` feature (on by default); a GPU worker
//! built without it has the records, the board and the price rule, not the buyer's
//! wallet or the registry client.
//!
//! Unlike the reference coordinator, the experiment id it makes is sent to the
//! worker, so both sides file the run under the same id.

pub mod board;
#[cfg(feature = "coordinator")]
mod find;
#[cfg(feature = "coordinator")]
mod pick;
pub mod price;
pub mod store;
#[cfg(feature = "coordinator")]
mod submit;
pub mod workers;

#[cfg(feature = "coordinator")]
pub use find::{Coordinator, LookupError, Note, Registry, Worker, http_client, search};
#[cfg(feature = "coordinator")]
pub use pick::{PickError, pick};
#[cfg(feature = "coordinator")]
pub use submit::{Order, SubmitError};

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
