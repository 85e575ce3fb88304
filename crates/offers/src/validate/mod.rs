//! From what the user wrote to typed values: names, wallets, paths, networks, prices.
//!
//! [`resolve()`] checks a whole offer into a [`ResolvedOffer`] once; the reconciler
//! resolves each offer once per pass and hands the result to every stage. The checks
//! of one field each live beside it: [`path`] (public path, upstream), [`price`]
//! (wallet, token, price), [`oasf`] (skills and domains), [`duration`] (drain grace),
//! [`name`] (the offer name); [`error`] holds every refusal.
//!
//! Messages follow the reference CLI's wording so people (and agents) who know it
//! recognise them, and each says what to type instead.

mod duration;
mod error;
mod name;
mod oasf;
mod path;
mod price;
mod resolve;

use std::time::Duration;

use alloy::primitives::Address;
use reqwest::Url;
use x402::money::{Money, Price};
use x402::network::{Asset, Network};
use x402::wire::PaymentRequirements;

pub use self::duration::{format_duration, parse_duration};
pub use self::error::ValidationError;
pub use self::name::OfferName;
pub use self::oasf::check_oasf;
pub use self::path::{RESERVED_PATHS, check_path};
pub use self::price::{parse_price, parse_wallet};
pub use self::resolve::resolve;
use crate::spec::{ModelSpec, OfferType, RegistrationSpec};

/// Longest `maxTimeoutSeconds` accepted (24 h, as the reference caps it).
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// An offer with every field checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedOffer {
    /// Name.
    pub name: OfferName,
    /// Kind.
    pub offer_type: OfferType,
    /// Served model.
    pub model: Option<ModelSpec>,
    /// Upstream base URL.
    pub upstream: Url,
    /// Health path checked by UpstreamHealthy.
    pub health_path: String,
    /// Public path prefix.
    pub path: String,
    /// Payment network.
    pub network: Network,
    /// Token.
    pub asset: Asset,
    /// Recipient.
    pub pay_to: Address,
    /// The price as set.
    pub price: Price,
    /// What one call costs.
    pub per_request: Money,
    /// Authorization validity.
    pub max_timeout_seconds: u64,
    /// Limits.
    pub limits: gateway::Limits,
    /// How long the upstream may take to answer a paid call.
    pub upstream_timeout: Duration,
    /// Listing (defaults filled).
    pub registration: RegistrationSpec,
    /// Provenance strings published in the registration (a trained model's run).
    pub provenance: std::collections::BTreeMap<String, String>,
    /// When a stopping offer stops serving (unix seconds: `drainAt` plus its grace
    /// period, one hour by default); none while it is not being stopped.
    pub drain_until: Option<u64>,
    /// Settle each paid call before calling the upstream (the settle-first annotation).
    pub settle_first: bool,
    /// The only requests forwarded: for inference offers the inference API plus
    /// `allowedPaths`; `None` (other types) forwards every path.
    pub allowed: Option<Vec<gateway::allowed::AllowedPath>>,
}

impl ResolvedOffer {
    /// The x402 requirement the gateway offers for this price.
    pub fn requirement(&self) -> PaymentRequirements {
        PaymentRequirements::exact(
            self.network.clone(),
            &self.asset,
            self.per_request.atomic,
            self.pay_to,
            self.max_timeout_seconds,
        )
    }

    /// `0.0005 USDC/request (approx from 0.5 USDC/MTok @ 1000 tok/request)`.
    pub fn price_text(&self) -> String {
        let base = format!("{} {}/request", self.per_request, self.asset.symbol);
        match self.price.approximation_note(&self.asset.symbol) {
            Some(note) => format!("{base} ({note})"),
            None => base,
        }
    }
}
