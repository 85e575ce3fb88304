//! The environment as agora reads it: an empty variable counts as unset, so
//! `AGORA_HOME= agora ...` falls back to the default instead of using the current
//! directory. The CLI's `config` re-exports these, so the rule is written once.

use std::ffi::OsString;

/// Where agora keeps its state (offers, journals, the admin socket, logs, keys).
pub const HOME: &str = "AGORA_HOME";

/// The value of `name`, or `None` when it is unset, empty or not UTF-8.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The value of `name` as the OS gave it (paths), or `None` when unset or empty.
pub fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}
