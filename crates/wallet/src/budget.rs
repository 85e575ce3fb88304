//! The buyer's spending limits: a daily budget (a rolling 24 hours) and a per-call cap,
//! both in USDC. They are typed as decimals at the edge (`--daily 1.00`) and kept as
//! atomic U256 everywhere else, so no rounding ever decides whether a payment fits.
//! They live in the wallet store beside the ledger they are checked against; what is
//! left of the daily budget is always computed from the ledger, never kept as a
//! counter that a crash could leave wrong.

use alloy::primitives::U256;
use anyhow::Context;
use serde::Serialize;
use x402::Money;
use x402::network::USDC_DECIMALS;

use super::ledger::{Ledger, NewEntry};

/// The daily budget window, in seconds.
pub const DAY_SECS: u64 = 24 * 60 * 60;

const DAILY: &str = "budget.daily";
const PER_CALL: &str = "budget.perCall";

/// The limits a buyer set; `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Most atomic USDC all payments signed in the last 24 hours may add up to.
    pub daily: Option<U256>,
    /// Most atomic USDC one payment may cost.
    pub per_call: Option<U256>,
}

/// The budget as `--json` prints it: decimal USDC.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    daily: Option<String>,
    per_call: Option<String>,
}

impl Budget {
    /// Decimal USDC for people and JSON.
    pub fn view(&self) -> BudgetView {
        BudgetView {
            daily: self.daily.map(usdc_text),
            per_call: self.per_call.map(usdc_text),
        }
    }
}

/// Parses a decimal USDC amount from flag `flag` exactly (finer than 0.000001 is an
/// error, never rounded).
pub fn parse_usdc(flag: &str, text: &str) -> anyhow::Result<U256> {
    Money::parse(text, USDC_DECIMALS)
        .map(|m| m.atomic)
        .map_err(|e| anyhow::anyhow!("{flag} {text:?}: {e}; write USDC like 1.00 or 0.05"))
}

/// Atomic USDC as a decimal string (`50000` → `0.05`).
pub fn usdc_text(atomic: U256) -> String {
    Money::from_atomic(atomic, USDC_DECIMALS).to_string()
}

fn read_limit(ledger: &Ledger, key: &str) -> anyhow::Result<Option<U256>> {
    ledger
        .setting(key)?
        .map(|text| {
            U256::from_str_radix(&text, 10).with_context(|| {
                format!("the wallet store holds a malformed {key}; set it again with agora wallet budget")
            })
        })
        .transpose()
}

impl Ledger {
    /// The limits set with `agora wallet budget`.
    pub fn budget(&self) -> anyhow::Result<Budget> {
        Ok(Budget {
            daily: read_limit(self, DAILY)?,
            per_call: read_limit(self, PER_CALL)?,
        })
    }

    /// Stores both limits (`None` removes one).
    pub fn set_budget(&self, budget: &Budget) -> anyhow::Result<()> {
        self.set_setting(DAILY, budget.daily.map(|v| v.to_string()).as_deref())?;
        self.set_setting(PER_CALL, budget.per_call.map(|v| v.to_string()).as_deref())
    }

    /// What may still be signed at `now` (Unix seconds) under the daily budget: the
    /// budget minus everything that counts as spent in the last 24 hours (see
    /// [`Ledger::spent_since`]), never below zero; `None` when no daily budget is set.
    pub fn remaining_daily_budget(&self, now: u64) -> anyhow::Result<Option<U256>> {
        let Some(daily) = self.budget()?.daily else {
            return Ok(None);
        };
        let spent = self.spent_since(now.saturating_sub(DAY_SECS), now)?;
        Ok(Some(daily.saturating_sub(spent)))
    }

    /// Whether a payment of `amount` atomic USDC fits the per-call cap and what is
    /// left of the daily budget at `now`; the refusal names the flag to change.
    pub fn check_budget(
        &self,
        amount: U256,
        now: u64,
    ) -> anyhow::Result<Result<(), BudgetRefusal>> {
        let budget = self.budget()?;
        if let Some(cap) = budget.per_call
            && amount > cap
        {
            return Ok(Err(BudgetRefusal::PerCall { amount, cap }));
        }
        if let (Some(daily), Some(left)) = (budget.daily, self.remaining_daily_budget(now)?)
            && amount > left
        {
            return Ok(Err(BudgetRefusal::Daily {
                amount,
                left,
                daily,
            }));
        }
        Ok(Ok(()))
    }

    /// [`Ledger::check_budget`] and [`Ledger::record_signed`] in one write
    /// transaction, so two `agora pay` running at once cannot both fit into the same
    /// remainder: the second sees the first one's row. A refused payment leaves no row;
    /// its signature must then be dropped unsent. (`agora pay` itself goes through
    /// `record_payment_within_budget`, which also keeps the signed header.)
    #[cfg(test)]
    pub fn record_signed_within_budget(
        &self,
        entry: &NewEntry<'_>,
        now: u64,
    ) -> anyhow::Result<Result<i64, BudgetRefusal>> {
        self.record_within_budget(entry, now, |_| Ok(()))
    }

    /// The transaction behind the `record_*_within_budget` methods: check, insert
    /// the row, run `also` with its id (a side table), commit; anything failing rolls
    /// all of it back, and a refusal comes before anything is written.
    pub(super) fn record_within_budget(
        &self,
        entry: &NewEntry<'_>,
        now: u64,
        also: impl FnOnce(i64) -> anyhow::Result<()>,
    ) -> anyhow::Result<Result<i64, BudgetRefusal>> {
        localdb::with_immediate(&self.conn, |_| {
            match self.check_budget(entry.amount, now)? {
                Ok(()) => {
                    let id = self.record_signed(entry, now)?;
                    also(id)?;
                    Ok(Ok(id))
                }
                Err(refusal) => Ok(Err(refusal)),
            }
        })
        .map_err(
            |e: anyhow::Error| match e.downcast::<localdb::TransactionError>() {
                Ok(localdb::TransactionError::Begin(e)) => {
                    anyhow::Error::new(e).context("cannot lock the wallet ledger")
                }
                Ok(localdb::TransactionError::Commit(e)) => {
                    anyhow::Error::new(e).context("cannot commit the wallet ledger")
                }
                Err(e) => e,
            },
        )
    }
}

/// Why a payment does not fit the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// Above `agora wallet budget --per-call`.
    PerCall {
        /// The price, atomic USDC.
        amount: U256,
        /// The cap.
        cap: U256,
    },
    /// Above what the last 24 hours left of `--daily`.
    Daily {
        /// The price, atomic USDC.
        amount: U256,
        /// What is left.
        left: U256,
        /// The daily budget.
        daily: U256,
    },
}

impl std::fmt::Display for BudgetRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BudgetRefusal::PerCall { amount, cap } => write!(
                f,
                "the price {} USDC is above the per-call budget of {} USDC; raise it with: agora wallet budget --per-call {}",
                usdc_text(amount),
                usdc_text(cap),
                usdc_text(amount)
            ),
            BudgetRefusal::Daily {
                amount,
                left,
                daily,
            } => write!(
                f,
                "the price {} USDC is above the {} USDC left of the daily budget ({} USDC per 24 h; see agora wallet spent); raise it with: agora wallet budget --daily N",
                usdc_text(amount),
                usdc_text(left),
                usdc_text(daily)
            ),
        }
    }
}
