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
    /// [`Ledger::record_signed_within_budget`] that also stores `payment` (the
    /// serialized `x402::client::SignedPayment`) for a later `--resume`.
    pub fn record_payment_within_budget(
        &self,
        entry: &NewEntry<'_>,
        payment: &str,
        now: u64,
    ) -> anyhow::Result<Result<i64, BudgetRefusal>> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("cannot lock the wallet ledger")?;
        let done = self
            .check_budget(entry.amount, now)
            .and_then(|fits| match fits {
                Ok(()) => {
                    let id = self.record_signed(entry, now)?;
                    self.conn
                        .execute(
                            "INSERT INTO spend_payment (spend_id, payment) VALUES (?1, ?2)",
                            params![id, payment],
                        )
                        .context("cannot store the signed payment in the wallet ledger")?;
                    Ok(Ok(id))
                }
                Err(refusal) => Ok(Err(refusal)),
            });
        let end = match &done {
            Ok(Ok(_)) => "COMMIT",
            _ => "ROLLBACK",
        };
        if let Err(e) = self.conn.execute_batch(end) {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e).context("cannot commit the wallet ledger");
        }
        done
    }

    /// The newest payment of `wallet` for `url` whose outcome is still open
    /// (signed, sent or unknown): its row id and the stored payment.
    pub fn last_open_payment(
        &self,
        wallet: &str,
        url: &str,
    ) -> anyhow::Result<Option<(i64, String)>> {
        self.conn
            .query_row(
                "SELECT s.id, p.payment FROM spend s JOIN spend_payment p ON p.spend_id = s.id
                 WHERE s.wallet = ?1 AND s.url = ?2 AND s.status IN ('signed', 'sent', 'unknown')
                 ORDER BY s.id DESC LIMIT 1",
                params![wallet, url],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .context("cannot read the wallet ledger")
    }
}
