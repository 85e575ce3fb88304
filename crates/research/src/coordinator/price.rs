//! What one experiment costs when a worker is sold per hour of GPU time.
//!
//! x402's exact scheme charges one fixed amount per call, so an hourly price becomes
//! a per-run price for the worker's time budget: `per_hour × budget_seconds / 3600`.
//! That rarely lands on a whole atomic unit (0.50 USDC/h for the default 300 s budget
//! is 0.041666… USDC), and a fraction of an atomic unit cannot be charged.
//!
//! **Rounding rule: round UP to the next whole atomic unit.** 0.50 USDC/h × 300 s is
//! 41 666.67 atomic units, charged as 41 667 (0.041667 USDC). Rounding up keeps the
//! seller from selling below the hourly rate they set, and the buyer pays at most one
//! atomic unit (0.000001 USDC) more than the exact share. The buyer sees the per-run
//! amount in the 402 before signing anything, so nothing is hidden.

use x402::Money;
use x402::money::{Price, Rounding};

/// Why a per-run price cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// A zero budget would make every run free.
    #[error("the time budget is 0 seconds, so every run would be free")]
    ZeroBudget,
    /// The product does not fit in 256 bits.
    #[error("{0} per hour is too large to charge per run")]
    Overflow(String),
}

/// The per-run price of `per_hour` for a `budget_seconds` experiment, rounded up to
/// the next whole atomic unit (see the module docs for why up): x402's one per-hour
/// rule, [`Price::per_run`] with [`Rounding::Up`].
pub fn per_run(per_hour: Money, budget_seconds: u64) -> Result<Money, PriceError> {
    if budget_seconds == 0 {
        return Err(PriceError::ZeroBudget);
    }
    Price::PerHour(per_hour)
        .per_run(budget_seconds, Rounding::Up)
        // Rounding up never refuses a fraction, so an overflow is the only error.
        .map_err(|_| PriceError::Overflow(per_hour.to_string()))
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U256;

    use super::*;

    fn usdc(s: &str) -> Money {
        Money::parse(s, 6).expect("a USDC amount")
    }

    #[test]
    fn half_a_dollar_an_hour_for_five_minutes_rounds_up_to_41667_atomic() {
        let run = per_run(usdc("0.50"), 300).expect("price");
        // Exactly 0.041666…: one atomic unit above the truncated 41 666.
        assert_eq!(run.atomic, U256::from(41_667));
        assert_eq!(run.to_string(), "0.041667");
    }

    #[test]
    fn an_exact_share_is_not_rounded() {
        // obol's vector: 6.00/h × 5/60 = 0.5 exactly.
        assert_eq!(per_run(usdc("6.00"), 300).expect("price"), usdc("0.5"));
        assert_eq!(per_run(usdc("0.36"), 60).expect("price"), usdc("0.006"));
        assert_eq!(per_run(usdc("0"), 300).expect("price"), usdc("0"));
    }

    #[test]
    fn rounding_up_costs_the_buyer_less_than_one_atomic_unit() {
        for (hourly, budget) in [("0.50", 300), ("0.01", 7), ("1.234567", 59), ("3", 1)] {
            let hourly = usdc(hourly);
            let run = per_run(hourly, budget).expect("price").atomic;
            let exact_times_3600 = hourly.atomic * U256::from(budget);
            assert!(run * U256::from(3600) >= exact_times_3600, "never below");
            assert!(
                (run - U256::from(1)) * U256::from(3600) < exact_times_3600,
                "at most one unit above"
            );
        }
    }

    #[test]
    fn a_zero_budget_or_an_overflow_is_refused() {
        let e = per_run(usdc("0.5"), 0).expect_err("zero budget");
        assert_eq!(e, PriceError::ZeroBudget);
        assert!(e.to_string().contains("0 seconds"), "{e}");
        let top = Money::from_atomic(U256::MAX, 6);
        assert!(matches!(per_run(top, 300), Err(PriceError::Overflow(_))));
    }
}
