//! The signed payment itself, kept beside its ledger row (`spend_payment`), so
//! `agora pay --resume` can send the very same authorization again after a lost
//! answer instead of signing a new one, which could be charged a second time.
//!
//! It is written in the same transaction as the budget check and the ledger row: a
//! payment that was sent always has both its row and its bytes, and one that did not
//! fit the budget leaves neither.

use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::budget::BudgetRefusal;
use super::ledger::{Ledger, NewEntry};

impl Ledger {
    /// Checks the budget and records the ledger row together with `payment` (the
    /// serialized `x402::client::SignedPayment`) for a later `--resume`, in one
    /// transaction (see `Ledger::record_within_budget`).
    pub fn record_payment_within_budget(
        &self,
        entry: &NewEntry<'_>,
        payment: &str,
        now: u64,
    ) -> anyhow::Result<Result<i64, BudgetRefusal>> {
        self.record_within_budget(entry, now, |id| {
            self.conn
                .execute(
                    "INSERT INTO spend_payment (spend_id, payment) VALUES (?1, ?2)",
                    params![id, payment],
                )
                .context("cannot store the signed payment in the wallet ledger")?;
            Ok(())
        })
    }

    /// The newest payment of `wallet` for `url` that `--resume` may send again: one
    /// whose outcome is still open (signed, sent or unknown), or one that was charged
    /// but whose answer never arrived whole (settled, not marked delivered; the
    /// gateway serves a paid, undelivered answer again to the same header). Returns
    /// the row id, the stored payment and whether it is already settled.
    pub fn last_resumable_payment(
        &self,
        wallet: &str,
        url: &str,
    ) -> anyhow::Result<Option<(i64, String, bool)>> {
        self.conn
            .query_row(
                "SELECT s.id, p.payment, s.status = 'settled'
                 FROM spend s JOIN spend_payment p ON p.spend_id = s.id
                 WHERE s.wallet = ?1 AND s.url = ?2
                   AND (s.status IN ('signed', 'sent', 'unknown')
                        OR (s.status = 'settled'
                            AND NOT EXISTS (SELECT 1 FROM spend_delivered d WHERE d.spend_id = s.id)))
                 ORDER BY s.id DESC LIMIT 1",
                params![wallet, url],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .context("cannot read the wallet ledger")
    }

    /// The answer paid by row `id` reached the user whole, so `--resume` leaves it.
    pub fn mark_delivered(&self, id: i64, now: u64) -> anyhow::Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO spend_delivered (spend_id, delivered_at) VALUES (?1, ?2)",
                params![id, i64::try_from(now).unwrap_or(i64::MAX)],
            )
            .context("cannot update the wallet ledger")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, U256};

    use super::*;
    use crate::budget::Budget;

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "http://127.0.0.1:8402/services/echo/x";

    fn entry(nonce: u8, amount: u64) -> NewEntry<'static> {
        NewEntry {
            wallet: "default",
            payer: Address::repeat_byte(1),
            url: URL,
            network: "eip155:84532",
            asset: Address::repeat_byte(2),
            pay_to: Address::repeat_byte(3),
            amount: U256::from(amount),
            nonce: B256::repeat_byte(nonce),
            valid_before: NOW + 600,
        }
    }

    #[test]
    fn the_signed_header_is_kept_with_its_row_and_a_refusal_keeps_neither() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("wallet.db")).expect("open");
        ledger
            .set_budget(&Budget {
                daily: Some(U256::from(1500)),
                per_call: None,
            })
            .expect("budget");
        let id = ledger
            .record_payment_within_budget(&entry(1, 1000), "first", NOW)
            .expect("write")
            .expect("fits");
        assert_eq!(
            ledger.last_resumable_payment("default", URL).expect("read"),
            Some((id, "first".to_string(), false))
        );
        // 500 left: refused, and neither the row nor the payment is kept.
        let refused = ledger
            .record_payment_within_budget(&entry(2, 1000), "second", NOW)
            .expect("write");
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(ledger.entries_since(0).expect("rows").len(), 1);
        // Another wallet or URL finds nothing.
        assert_eq!(
            ledger.last_resumable_payment("other", URL).expect("read"),
            None
        );
        assert_eq!(
            ledger
                .last_resumable_payment("default", "http://x/")
                .expect("read"),
            None
        );
        ledger.mark_sent(id, NOW).expect("sent");
        ledger.mark_settled(id, "0xabc", NOW).expect("settled");
        // Charged but not delivered whole: still resumable, as settled.
        assert_eq!(
            ledger.last_resumable_payment("default", URL).expect("read"),
            Some((id, "first".to_string(), true))
        );
        ledger.mark_delivered(id, NOW).expect("delivered");
        assert_eq!(
            ledger.last_resumable_payment("default", URL).expect("read"),
            None
        );
    }
}
