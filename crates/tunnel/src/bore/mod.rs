//! bore, spoken natively: a client that opens a public port on a relay and a relay
//! that hands such ports out. Written from bore's protocol (NUL-delimited JSON,
//! HMAC challenge) instead of depending on `bore-cli`, whose library fixes the control
//! port at 7835 on both sides and brings its own CLI stack (clap, tracing-subscriber,
//! dashmap, tokio-util); agora needs `host:port` relays and side-by-side test relays.

pub mod client;
pub mod relay;
pub mod wire;

pub use client::{BoreError, BoreServer, ClientConfig, Connected, MAX_CARRIED, connect};
pub use relay::{ALL_PORTS, Limits, Relay, RelayConfig};
pub use wire::{DEFAULT_CONTROL_PORT, MIN_SECRET_LEN, Secret};
