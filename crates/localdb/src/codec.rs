//! How agora's stores turn Rust values into SQLite values and back, one way for all of
//! them: SQLite integers are i64, so a u64 that does not fit is an error rather than a
//! silently clamped id or amount; addresses, hashes and amounts are stored as the text
//! their `Display` writes and read back with `FromStr`.

use std::fmt::Display;
use std::str::FromStr;

/// A u64 too large for an SQLite integer.
#[derive(Debug, thiserror::Error)]
#[error("{0} does not fit an SQLite integer (at most {max})", max = i64::MAX)]
pub struct OutOfRange(pub u64);

/// A u64 (an id, a block number, an amount) as an SQLite integer; one above `i64::MAX`
/// is an error, since clamping it would make two different values collide.
pub fn int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|_| rusqlite::Error::ToSqlConversionFailure(Box::new(OutOfRange(v))))
}

/// A unix time or a row limit as an SQLite integer, clamped at `i64::MAX`: a time that
/// far off means "never" and a limit that large means "all", and both still compare the
/// same way once clamped. Not for ids or money, which [`int`] refuses instead.
pub fn saturating_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An address, hash or amount as the text column it is stored in.
pub fn text(v: &impl Display) -> String {
    v.to_string()
}

/// A text column back as the address, hash or amount it holds; one that does not parse
/// is reported like any other unreadable column.
pub fn parse<T>(text: &str) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// An EIP-3009 authorization's key (chain id, token, payer, nonce) as the four columns
/// the facilitator's guard and the gateway's ledger both key their rows by.
pub fn authorization_key(
    chain_id: u64,
    asset: &impl Display,
    payer: &impl Display,
    nonce: &impl Display,
) -> rusqlite::Result<(i64, String, String, String)> {
    Ok((int(chain_id)?, text(asset), text(payer), text(nonce)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_that_fit_pass_and_the_rest_are_refused_or_clamped_by_name() {
        assert_eq!(int(0).unwrap(), 0);
        assert_eq!(int(i64::MAX as u64).unwrap(), i64::MAX);
        let refused = int(i64::MAX as u64 + 1).unwrap_err();
        assert!(refused.to_string().contains("does not fit"), "{refused}");
        assert_eq!(saturating_int(u64::MAX), i64::MAX);
        assert_eq!(saturating_int(7), 7);
    }

    #[test]
    fn text_round_trips_and_garbage_is_an_error() {
        let n: u128 = parse(&text(
            &340_282_366_920_938_463_463_374_607_431_768_211_455u128,
        ))
        .unwrap();
        assert_eq!(n, u128::MAX);
        assert!(parse::<u64>("0xnot").is_err());
        let address = alloy::primitives::Address::repeat_byte(0xab);
        assert_eq!(
            parse::<alloy::primitives::Address>(&text(&address)).unwrap(),
            address
        );
        let hash = alloy::primitives::B256::repeat_byte(0xcd);
        assert_eq!(
            parse::<alloy::primitives::B256>(&text(&hash)).unwrap(),
            hash
        );
        let amount = alloy::primitives::U256::MAX;
        assert_eq!(
            parse::<alloy::primitives::U256>(&text(&amount)).unwrap(),
            amount
        );
        let key = authorization_key(8453, &"asset", &"payer", &"nonce").unwrap();
        assert_eq!(key, (8453, "asset".into(), "payer".into(), "nonce".into()));
        assert!(authorization_key(u64::MAX, &"a", &"p", &"n").is_err());
    }
}
