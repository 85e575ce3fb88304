//! The protocol version on the wire, read from `x402Version` and written back as the
//! integer the peer sent, because every other wire type keys its shape off it.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::lenient;

/// A protocol version on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum X402Version {
    /// Body-based 402, `X-PAYMENT`, network names.
    V1,
    /// `PAYMENT-REQUIRED` header, `PAYMENT-SIGNATURE`, CAIP-2, `accepted` echo.
    V2,
}

impl X402Version {
    /// The integer written as `x402Version`.
    pub fn number(self) -> u8 {
        match self {
            X402Version::V1 => 1,
            X402Version::V2 => 2,
        }
    }

    fn from_number<E: de::Error>(n: u64) -> Result<Self, E> {
        match n {
            1 => Ok(X402Version::V1),
            2 => Ok(X402Version::V2),
            other => Err(E::custom(format!(
                "unsupported x402Version {other}; this side speaks versions 1 and 2"
            ))),
        }
    }
}

impl Serialize for X402Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

impl<'de> Deserialize<'de> for X402Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        X402Version::from_number(lenient::u64(d)?)
    }
}
