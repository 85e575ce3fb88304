//! The x402 payment protocol as agora speaks it: wire types for v1 and v2, the header
//! codec, networks and assets, exact money, EIP-3009 signing and verification, and the
//! buyer's [`client`] (402 → choose → sign → send → receipt), plus the workspace's
//! one clock ([`time`]) and HTTP proxy rule ([`http`]).
//!
//! Everything that crosses a wire is parsed here once into typed values, so the rest of
//! agora never handles raw amounts, network strings or signatures.

pub mod client;
pub mod eip3009;
pub mod error_chain;
pub mod facilitator;
pub mod header;
pub mod http;
pub mod http_facilitator;
pub mod money;
pub mod network;
pub mod reason;
pub mod redact;
pub mod time;
pub mod wire;

pub use facilitator::{Facilitator, FacilitatorError};
pub use http_facilitator::HttpFacilitator;
pub use money::{Money, MoneyError, Price, Rounding};
pub use network::{Asset, Network, NetworkError};
pub use reason::{ErrorReason, Invalid};
pub use time::UnixTimestamp;
pub use wire::{
    Authorization, ExactEvmPayload, Extra, FacilitatorRequest, PaymentPayload, PaymentRequired,
    PaymentRequirements, ResourceInfo, SettleResponse, Supported, SupportedKind, VerifyResponse,
    X402Version,
};
