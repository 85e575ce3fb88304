//! x402 wire types for protocol versions 1 and 2.
//!
//! Every type reads both versions leniently (either amount field, either network
//! spelling, integers as strings or numbers, signature `v` as 0/1 or 27/28) into one
//! normalized value, and writes back exactly the shape of the version it is asked for,
//! because official clients deep-compare what they sent with what they get back.

//!
//! One file per side of the exchange: [`version`], [`requirements`] (what the seller
//! asks), [`payload`] (what the buyer sends) and [`facilitator`] (what the seller and
//! its facilitator exchange); [`lenient`] holds the integer and address readers they
//! share.

mod facilitator;
mod lenient;
mod payload;
mod requirements;
#[cfg(test)]
mod tests;
mod version;

pub use facilitator::{
    FacilitatorRequest, SettleResponse, Supported, SupportedKind, VerifyResponse,
};
pub use payload::{Authorization, ExactEvmPayload, PaymentPayload};
pub use requirements::{Extra, PaymentRequired, PaymentRequirements, ResourceInfo};
pub use version::X402Version;

/// The only scheme agora pays and accepts today.
pub const SCHEME_EXACT: &str = "exact";
