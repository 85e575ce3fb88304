//! Exact money: decimal strings at the edges, integer atomic units (U256) inside.
//!
//! Prices are typed by people as decimals ("0.001"), but every comparison, transfer and
//! ledger entry uses atomic units, so conversion is done once, exactly, with no floats.

use std::fmt;

use alloy::primitives::U256;

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Nothing was given.
    #[error("empty amount; give a decimal such as 0.001")]
    Empty,
    /// A minus sign.
    #[error("negative amount {0:?}; prices must be zero or more")]
    Negative(String),
    /// Not digits with at most one dot.
    #[error("{0:?} is not a decimal number; give digits with an optional dot, such as 0.001")]
    NotANumber(String),
    /// More fractional digits than the asset has.
    #[error(
        "{input:?} is finer than one atomic unit of a {decimals}-decimal token; the smallest price is {smallest}"
    )]
    TooPrecise {
        /// What was given.
        input: String,
        /// The asset's decimals.
        decimals: u8,
        /// One atomic unit, written as a decimal.
        smallest: String,
    },
    /// Does not fit in 256 bits.
    #[error("{0:?} is too large")]
    Overflow(String),
    /// A derived per-request price that is not a whole number of atomic units.
    #[error(
        "{price} works out to a fraction of an atomic unit per request; use a multiple of {step} (for example {below} or {above})"
    )]
    NotWholeAtomic {
        /// The price as the user gave it, with its unit.
        price: String,
        /// The smallest step that divides evenly.
        step: String,
        /// The nearest valid price below.
        below: String,
        /// The nearest valid price above.
        above: String,
    },
}

/// An amount of a token in atomic units, carrying the token's decimals so it can be shown.
///
/// ```rust
/// use alloy::primitives::U256;
/// use x402::{Money, MoneyError};
///
/// // People type decimals; the ledger keeps atomic units (USDC has 6 decimals).
/// let price = Money::parse("$0.001", 6)?;
/// assert_eq!(price.atomic, U256::from(1000));
/// assert_eq!(price.to_string(), "0.001");
///
/// // Anything finer than one atomic unit is refused, never rounded.
/// assert!(matches!(
///     Money::parse("0.0000001", 6),
///     Err(MoneyError::TooPrecise { .. })
/// ));
/// # Ok::<(), MoneyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money {
    /// Integer atomic units (for USDC, millionths).
    pub atomic: U256,
    /// The token's decimals.
    pub decimals: u8,
}

impl Money {
    /// Wraps atomic units.
    pub fn from_atomic(atomic: U256, decimals: u8) -> Self {
        Self { atomic, decimals }
    }

    /// Parses a decimal string such as `"0.001"` exactly; `"$0.001"` is accepted too.
    pub fn parse(input: &str, decimals: u8) -> Result<Self, MoneyError> {
        let trimmed = input.trim();
        let s = trimmed.strip_prefix('$').unwrap_or(trimmed);
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        if s.starts_with('-') {
            return Err(MoneyError::Negative(trimmed.to_string()));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
        let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits_only(whole)
            || !digits_only(fraction)
        {
            return Err(MoneyError::NotANumber(trimmed.to_string()));
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > usize::from(decimals) {
            return Err(MoneyError::TooPrecise {
                input: trimmed.to_string(),
                decimals,
                smallest: Money::from_atomic(U256::from(1), decimals).to_string(),
            });
        }
        let overflow = || MoneyError::Overflow(trimmed.to_string());
        let scale = pow10(decimals).ok_or_else(overflow)?;
        let whole_units = if whole.is_empty() {
            U256::ZERO
        } else {
            U256::from_str_radix(whole, 10).map_err(|_| overflow())?
        };
        let padded = format!("{fraction:0<width$}", width = usize::from(decimals));
        let fraction_units = if padded.is_empty() {
            U256::ZERO
        } else {
            U256::from_str_radix(&padded, 10).map_err(|_| overflow())?
        };
        let atomic = whole_units
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction_units))
            .ok_or_else(overflow)?;
        Ok(Self { atomic, decimals })
    }

    /// Whether this is nothing.
    pub fn is_zero(&self) -> bool {
        self.atomic.is_zero()
    }
}

/// 10^n, or None when it does not fit.
fn pow10(n: u8) -> Option<U256> {
    U256::from(10).checked_pow(U256::from(n))
}

/// Writes the shortest exact decimal (`1000` atomic at 6 decimals is `0.001`).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.atomic.to_string();
        let decimals = usize::from(self.decimals);
        if decimals == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = decimals + 1);
        let (whole, fraction) = padded.split_at(padded.len() - decimals);
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            f.write_str(whole)
        } else {
            write!(f, "{whole}.{fraction}")
        }
    }
}

/// Tokens assumed per inference request when the price is per million tokens.
pub const APPROX_TOKENS_PER_REQUEST: u64 = 1000;
/// Minutes assumed per request when the price is per hour.
pub const APPROX_MINUTES_PER_REQUEST: u64 = 5;
/// Seconds in an hour, the unit of a per-hour price.
pub const SECONDS_PER_HOUR: u64 = 3600;

/// What to do when a derived charge falls between two atomic units.
///
/// Per-hour pricing has one formula (`per hour × seconds / 3600`) and two honest
/// answers to a fraction, chosen by who can still change the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Refuse it, naming the nearest prices that divide evenly: a seller typing a
    /// per-hour price for requests can pick one of those instead.
    Exact,
    /// Round up to the next atomic unit: a research worker's hourly rate over its
    /// budget rarely divides evenly, and rounding up keeps the seller from selling
    /// below the rate they set while the buyer pays at most one atomic unit more.
    Up,
}

/// How a seller prices a service; x402's exact scheme needs one per-request amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Price {
    /// A fixed price per call.
    PerRequest(Money),
    /// Per million tokens, charged as `APPROX_TOKENS_PER_REQUEST` tokens per call.
    PerMTok(Money),
    /// Per hour, charged as `APPROX_MINUTES_PER_REQUEST` minutes per call.
    PerHour(Money),
}

impl Price {
    /// The per-request charge: perRequest, else perMTok/1000, else perHour*5/60, exactly.
    pub fn per_request(&self) -> Result<Money, MoneyError> {
        // Five minutes of an hour: `per_run(300 s)` in its smallest terms, so a huge
        // amount overflows no sooner than it always has.
        self.charge(APPROX_MINUTES_PER_REQUEST, 60, Rounding::Exact)
    }

    /// The charge for one call lasting `seconds`: a per-hour price is
    /// `per hour × seconds / 3600` settled by `rounding`; a per-request or per-MTok
    /// price does not depend on time (per MTok is `APPROX_TOKENS_PER_REQUEST` tokens).
    pub fn per_run(&self, seconds: u64, rounding: Rounding) -> Result<Money, MoneyError> {
        self.charge(seconds, SECONDS_PER_HOUR, rounding)
    }

    /// The one formula: the amount times the share of it one call uses (`part / whole`
    /// of an hour for a per-hour price), settled by `rounding`.
    fn charge(&self, part: u64, whole: u64, rounding: Rounding) -> Result<Money, MoneyError> {
        let (amount, numerator, denominator) = match self {
            Price::PerRequest(m) => return Ok(*m),
            Price::PerMTok(m) => (m, 1, 1_000_000 / APPROX_TOKENS_PER_REQUEST),
            Price::PerHour(m) => (m, part, whole),
        };
        let scaled = amount
            .atomic
            .checked_mul(U256::from(numerator))
            .ok_or_else(|| MoneyError::Overflow(amount.to_string()))?;
        let denominator = U256::from(denominator);
        let (quotient, remainder) = scaled.div_rem(denominator);
        if remainder.is_zero() {
            return Ok(Money::from_atomic(quotient, amount.decimals));
        }
        if rounding == Rounding::Up {
            // A remainder means the denominator is at least 2, so this cannot wrap.
            return Ok(Money::from_atomic(
                quotient + U256::from(1),
                amount.decimals,
            ));
        }
        let step = denominator / gcd(U256::from(numerator), denominator);
        let below = amount.atomic - amount.atomic % step;
        // Within one step of 2^256 there is no valid price above; U256 addition wraps,
        // so it is checked rather than shown as a tiny number.
        let above = below
            .checked_add(step)
            .ok_or_else(|| MoneyError::Overflow(amount.to_string()))?;
        let money = |atomic| Money::from_atomic(atomic, amount.decimals).to_string();
        Err(MoneyError::NotWholeAtomic {
            price: format!("{amount} {}", self.unit()),
            step: money(step),
            below: money(below),
            above: money(above),
        })
    }

    /// The per-MTok price that charges `per_request` per call: the exact inverse of
    /// [`Price::per_request`] for `PerMTok`. `None` when it does not fit in 256 bits.
    pub fn per_mtok_from_per_request(per_request: Money) -> Option<Money> {
        let tokens_per_mtok = U256::from(1_000_000 / APPROX_TOKENS_PER_REQUEST);
        let atomic = per_request.atomic.checked_mul(tokens_per_mtok)?;
        Some(Money::from_atomic(atomic, per_request.decimals))
    }

    /// The hourly rate that charges `per_run` for a call of `seconds`: the inverse of
    /// [`Price::per_run`] for `PerHour`, rounded down to a whole atomic unit (after
    /// [`Rounding::Up`] it can exceed the seller's rate by less than `3600 / seconds`
    /// atomic units). `None` for zero seconds or when it does not fit in 256 bits.
    pub fn per_hour_from_per_run(per_run: Money, seconds: u64) -> Option<Money> {
        if seconds == 0 {
            return None;
        }
        let (hour, seconds) = (U256::from(SECONDS_PER_HOUR), U256::from(seconds));
        let common = gcd(hour, seconds);
        let scaled = per_run.atomic.checked_mul(hour / common)?;
        Some(Money::from_atomic(
            scaled / (seconds / common),
            per_run.decimals,
        ))
    }

    /// The unit people read after the amount.
    pub fn unit(&self) -> &'static str {
        match self {
            Price::PerRequest(_) => "per request",
            Price::PerMTok(_) => "per million tokens",
            Price::PerHour(_) => "per hour",
        }
    }

    /// How the per-request charge was derived, for status output.
    pub fn approximation_note(&self, symbol: &str) -> Option<String> {
        match self {
            Price::PerRequest(_) => None,
            Price::PerMTok(m) => Some(format!(
                "approx from {m} {symbol}/MTok @ {APPROX_TOKENS_PER_REQUEST} tok/request"
            )),
            Price::PerHour(m) => Some(format!(
                "approx from {m} {symbol}/hour @ {APPROX_MINUTES_PER_REQUEST} min/request"
            )),
        }
    }
}

fn gcd(mut a: U256, mut b: U256) -> U256 {
    while !b.is_zero() {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc(s: &str) -> Money {
        Money::parse(s, 6).unwrap()
    }

    #[test]
    fn required_vectors_hold() {
        assert_eq!(usdc("0.001").atomic, U256::from(1000));
        let per_request = |p: Price| p.per_request().unwrap().to_string();
        assert_eq!(per_request(Price::PerMTok(usdc("0.50"))), "0.0005");
        assert_eq!(per_request(Price::PerMTok(usdc("1.25"))), "0.00125");
        assert_eq!(per_request(Price::PerHour(usdc("6.00"))), "0.5");
        assert_eq!(per_request(Price::PerRequest(usdc("0.001"))), "0.001");
    }

    #[test]
    fn decimal_forms_parse_exactly() {
        assert_eq!(usdc("1").atomic, U256::from(1_000_000));
        assert_eq!(usdc("1.").atomic, U256::from(1_000_000));
        assert_eq!(usdc(".5").atomic, U256::from(500_000));
        assert_eq!(usdc("$0.01").atomic, U256::from(10_000));
        assert_eq!(usdc(" 0.000001 ").atomic, U256::from(1));
        assert_eq!(usdc("0.0010000000").atomic, U256::from(1000));
        assert_eq!(usdc("0").atomic, U256::ZERO);
        assert_eq!(Money::parse("7", 0).unwrap().atomic, U256::from(7));
        let eighteen = Money::parse("1.5", 18).unwrap();
        assert_eq!(eighteen.atomic, U256::from(1_500_000_000_000_000_000u128));
    }

    #[test]
    fn display_is_the_shortest_exact_decimal() {
        for s in ["0.001", "1", "0.5", "123.456789", "0", "0.000001"] {
            assert_eq!(usdc(s).to_string(), s);
        }
        assert_eq!(Money::from_atomic(U256::from(7), 0).to_string(), "7");
    }

    #[test]
    fn bad_prices_are_refused_with_a_reason() {
        assert_eq!(Money::parse("", 6), Err(MoneyError::Empty));
        assert_eq!(Money::parse("  ", 6), Err(MoneyError::Empty));
        assert!(matches!(
            Money::parse("-0.1", 6),
            Err(MoneyError::Negative(_))
        ));
        for junk in ["abc", "1e3", "0x10", "1.2.3", ".", "1,5", "NaN", "0.1 USDC"] {
            assert!(
                matches!(Money::parse(junk, 6), Err(MoneyError::NotANumber(_))),
                "{junk}"
            );
        }
        let err = Money::parse("0.0000001", 6).unwrap_err();
        assert!(
            err.to_string().contains("smallest price is 0.000001"),
            "{err}"
        );
        let huge = format!("1{}", "0".repeat(80));
        assert!(matches!(
            Money::parse(&huge, 6),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn derived_prices_that_split_an_atomic_unit_name_the_nearest_valid_ones() {
        let err = Price::PerMTok(usdc("0.0015")).per_request().unwrap_err();
        assert_eq!(
            err,
            MoneyError::NotWholeAtomic {
                price: "0.0015 per million tokens".into(),
                step: "0.001".into(),
                below: "0.001".into(),
                above: "0.002".into(),
            }
        );
        let err = Price::PerHour(usdc("0.000013")).per_request().unwrap_err();
        assert!(err.to_string().contains("multiple of 0.000012"), "{err}");
    }

    #[test]
    fn a_derived_price_next_to_the_top_of_u256_is_too_large_not_wrapped() {
        let top = Money::from_atomic(U256::MAX, 6);
        assert_eq!(
            Price::PerMTok(top).per_request(),
            Err(MoneyError::Overflow(top.to_string()))
        );
    }

    #[test]
    fn a_per_hour_run_rounds_up_only_when_asked() {
        let half = Price::PerHour(usdc("0.50"));
        // 0.50/h for 300 s is 41 666.67 atomic units: charged 41 667 when rounding up…
        assert_eq!(half.per_run(300, Rounding::Up).unwrap(), usdc("0.041667"));
        // …and refused, with the nearest prices that divide evenly, when exact.
        let err = half.per_run(300, Rounding::Exact).unwrap_err();
        assert!(err.to_string().contains("multiple of 0.000012"), "{err}");
        // An exact share is the same either way, and the same as per_request.
        let six = Price::PerHour(usdc("6.00"));
        for rounding in [Rounding::Exact, Rounding::Up] {
            assert_eq!(six.per_run(300, rounding).unwrap(), usdc("0.5"));
        }
        assert_eq!(six.per_request().unwrap(), usdc("0.5"));
        assert_eq!(
            Price::PerHour(usdc("0.36"))
                .per_run(60, Rounding::Up)
                .unwrap(),
            usdc("0.006")
        );
        // Time does not change a per-request or per-MTok charge.
        let request = Price::PerRequest(usdc("0.001"));
        assert_eq!(request.per_run(7, Rounding::Up).unwrap(), usdc("0.001"));
        let mtok = Price::PerMTok(usdc("0.5"));
        assert_eq!(mtok.per_run(7, Rounding::Up).unwrap(), usdc("0.0005"));
    }

    #[test]
    fn the_inverses_give_back_the_rate_rounded_down() {
        // The per-request rule's inverse is exact: ×12 per hour, ×1000 per MTok.
        let per_request = usdc("0.5");
        assert_eq!(
            Price::per_hour_from_per_run(per_request, 300),
            Some(usdc("6"))
        );
        assert_eq!(
            Price::per_mtok_from_per_request(usdc("0.0005")),
            Some(usdc("0.5"))
        );
        // After rounding up, the rate shown is the seller's within rounding, never below.
        assert_eq!(
            Price::per_hour_from_per_run(usdc("0.041667"), 300),
            Some(usdc("0.500004"))
        );
        // A 120 s run is 30 a hour, not the 12 of a 5-minute request.
        assert_eq!(
            Price::per_hour_from_per_run(usdc("0.02"), 120),
            Some(usdc("0.6"))
        );
        assert_eq!(Price::per_hour_from_per_run(per_request, 0), None);
        let top = Money::from_atomic(U256::MAX, 6);
        assert_eq!(Price::per_mtok_from_per_request(top), None);
        assert_eq!(Price::per_hour_from_per_run(top, 300), None);
    }

    #[test]
    fn approximation_note_matches_reference_wording() {
        let note = Price::PerMTok(usdc("0.5"))
            .approximation_note("USDC")
            .unwrap();
        assert_eq!(note, "approx from 0.5 USDC/MTok @ 1000 tok/request");
        assert!(
            Price::PerRequest(usdc("1"))
                .approximation_note("USDC")
                .is_none()
        );
    }
}
