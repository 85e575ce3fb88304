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

use super::ledger::Ledger;

/// USDC's decimals: budgets are in USDC on every network.
pub const USDC_DECIMALS: u8 = 6;

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
}
