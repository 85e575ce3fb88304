//! Serde helpers that read integers the way x402 peers actually send them: decimal
//! strings, JSON numbers or `0x` hex; we always write decimal strings.

use alloy::primitives::{Address, U256};
use serde::{Deserialize, Deserializer, Serializer, de};

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Unsigned(u64),
    Float(f64),
}

fn parse_u256<E: de::Error>(value: StringOrNumber) -> Result<U256, E> {
    match value {
        StringOrNumber::Unsigned(n) => Ok(U256::from(n)),
        StringOrNumber::Float(f) => Err(E::custom(format!(
            "{f} is not a non-negative integer; integers must be whole numbers, preferably as decimal strings"
        ))),
        StringOrNumber::String(s) => {
            let t = s.trim();
            let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) if !hex.is_empty() => U256::from_str_radix(hex, 16),
                _ if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                    U256::from_str_radix(t, 10)
                }
                _ => return Err(E::custom(format!("{s:?} is not a non-negative integer"))),
            };
            parsed.map_err(|_| E::custom(format!("{s:?} does not fit in 256 bits")))
        }
    }
}

/// Reads a U256 from a decimal string, hex string or JSON number.
pub fn u256<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    parse_u256(StringOrNumber::deserialize(d)?)
}

/// Reads an optional U256 leniently.
pub fn opt_u256<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
    Option::<StringOrNumber>::deserialize(d)?
        .map(parse_u256)
        .transpose()
}

/// Reads a u64 from a string or number.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = parse_u256(StringOrNumber::deserialize(d)?)?;
    u64::try_from(value).map_err(|_| de::Error::custom(format!("{value} does not fit in 64 bits")))
}

/// Writes a U256 as a decimal string, the form every x402 SDK expects.
pub fn u256_string<S: Serializer>(value: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

/// Writes an address in EIP-55 checksum form, as the official SDKs print them.
pub fn checksummed<S: Serializer>(value: &Address, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_checksum(None))
}

/// Writes an optional address in EIP-55 checksum form.
pub fn opt_checksummed<S: Serializer>(value: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(address) => checksummed(address, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "u256")]
        value: U256,
        #[serde(deserialize_with = "u64", default)]
        small: u64,
    }

    fn value(json: &str) -> Result<U256, serde_json::Error> {
        serde_json::from_str::<Holder>(json).map(|h| h.value)
    }

    #[test]
    fn integers_come_as_strings_numbers_or_hex() {
        assert_eq!(value(r#"{"value":"1000"}"#).unwrap(), U256::from(1000));
        assert_eq!(value(r#"{"value":1000}"#).unwrap(), U256::from(1000));
        assert_eq!(value(r#"{"value":"0x3e8"}"#).unwrap(), U256::from(1000));
        let h: Holder = serde_json::from_str(r#"{"value":"1","small":"60"}"#).unwrap();
        assert_eq!(h.small, 60);
    }

    #[test]
    fn non_integers_are_refused() {
        for bad in [
            r#"{"value":"-1"}"#,
            r#"{"value":1.5}"#,
            r#"{"value":""}"#,
            r#"{"value":"0x"}"#,
            r#"{"value":"12a"}"#,
            r#"{"value":null}"#,
        ] {
            assert!(value(bad).is_err(), "{bad}");
        }
        let too_big = format!(r#"{{"value":"1{}"}}"#, "0".repeat(80));
        assert!(value(&too_big).is_err());
        assert!(
            serde_json::from_str::<Holder>(r#"{"value":"1","small":"99999999999999999999"}"#)
                .is_err()
        );
    }
}
