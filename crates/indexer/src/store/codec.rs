//! How values become SQLite columns and back: integers, addresses, hashes and JSON, with
//! an unreadable column reported as a corrupt database rather than a panic.

use alloy::hex;
use alloy::primitives::Address;

use super::StoreError;
use crate::events::Change;

/// A block number, chain id or agent id as an SQLite integer; one that does not fit is
/// an error, never a clamped value that could collide with another.
pub(crate) use localdb::codec::int;

/// An SQLite integer back as u64; a negative one means the row is corrupt.
pub(crate) fn uint(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v}")))
}

/// How addresses are stored: lowercase `0x` hex, so text comparison is exact.
pub(crate) fn address_text(a: &Address) -> String {
    hex::encode_prefixed(a)
}

/// Parses a stored text column (hash, address); one that does not parse is corruption.
pub(crate) fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}

/// Reads a stored JSON column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Writes a JSON column.
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The columns one event fills: address, from_address, uri, meta_key, meta_value.
pub(super) type EventColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

pub(super) fn event_columns(change: &Change) -> EventColumns {
    match change {
        Change::Registered { uri, owner } => (
            Some(address_text(owner)),
            None,
            Some(uri.clone()),
            None,
            None,
        ),
        Change::UriUpdated { uri, by } => {
            (Some(address_text(by)), None, Some(uri.clone()), None, None)
        }
        Change::MetadataSet { key, value } => {
            (None, None, None, Some(key.clone()), Some(value.to_vec()))
        }
        Change::Transfer { from, to } => (
            Some(address_text(to)),
            Some(address_text(from)),
            None,
            None,
            None,
        ),
    }
}
