//! RFC 3339 timestamps for offers' conditions and drain times: the workspace's one
//! codec lives in [`x402::time`]; this path stays for the callers that name it.

pub use x402::time::{format_rfc3339, parse_rfc3339};
