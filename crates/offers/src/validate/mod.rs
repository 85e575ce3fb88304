//! From what the user wrote to typed values: names, wallets, paths, networks, prices.
//!
//! [`resolve`] checks a whole offer into a [`ResolvedOffer`] once; the reconciler
//! resolves each offer once per pass and hands the result to every stage. The checks
//! of one field each live beside it: [`path`] (public path, upstream), [`price`]
//! (wallet, token, price), [`oasf`] (skills and domains), [`duration`] (drain grace).
//!
//! Messages follow the reference CLI's wording so people (and agents) who know it
//! recognise them, and each says what to type instead.

mod duration;
mod oasf;
mod path;
mod price;

use std::fmt;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use reqwest::Url;
use x402::money::{Money, Price};
use x402::network::{Asset, Network};
use x402::wire::{PaymentRequirements, SCHEME_EXACT};

pub use self::duration::{format_duration, parse_duration};
pub use self::oasf::check_oasf;
use self::path::upstream_url;
pub use self::path::{RESERVED_PATHS, check_path};
pub use self::price::{parse_price, parse_wallet};
use self::price::{price_key, price_value, resolve_asset, resolve_price};
use crate::spec::{ModelSpec, OfferType, RegistrationSpec, ServiceOffer};

/// Longest `maxTimeoutSeconds` accepted (24 h, as the reference caps it).
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// A refused offer field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No name.
    #[error("name cannot be empty")]
    EmptyName,
    /// Bad name.
    #[error(
        "invalid name {0:?}: must be lowercase alphanumeric with hyphens, 1-63 chars, starting with a letter or digit"
    )]
    InvalidName(String),
    /// Bad recipient.
    #[error("invalid wallet address {0:?}: must be 0x-prefixed 40-char hex")]
    InvalidWallet(String),
    /// No recipient.
    #[error("recipient required: the offer names no payTo address")]
    RecipientRequired,
    /// No price key.
    #[error("price required: set one of perRequest, perMTok or perHour")]
    PriceRequired,
    /// Several price keys.
    #[error("set exactly one price (perRequest, perMTok or perHour); got {0}")]
    SeveralPrices(String),
    /// A price that does not parse.
    #[error("invalid {field} value {value:?}: {reason}")]
    InvalidPrice {
        /// `--per-request` or the spec key.
        field: String,
        /// What was given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A price of nothing: the exact scheme would have buyers sign and settle a
    /// transfer of zero, paying gas for no money. Free access is a free path instead.
    #[error(
        "{field} {value} is a zero price; x402 cannot charge nothing. To serve without payment, use a free route instead: the offer's upstream.healthPath is served free, and a service that should be free in full needs no offer; to charge, set at least {smallest} (one atomic unit)"
    )]
    ZeroPrice {
        /// The price key (`perRequest`, `perMTok`, `perHour`).
        field: String,
        /// What was given.
        value: String,
        /// One atomic unit of the asset, written as a decimal.
        smallest: String,
    },
    /// perEpoch cannot be charged per call.
    #[error(
        "perEpoch pricing ({0}) cannot be charged per request with the exact scheme; set perRequest or perHour instead"
    )]
    PerEpoch(String),
    /// Unknown network or asset problem.
    #[error("{0}")]
    Network(String),
    /// A scheme other than exact.
    #[error("payment scheme {0:?} is not supported; use \"exact\"")]
    Scheme(String),
    /// A token agora cannot settle.
    #[error("{0}")]
    Asset(String),
    /// maxTimeoutSeconds out of range.
    #[error("maxTimeoutSeconds {0} is out of range; use 1 to 86400")]
    Timeout(u64),
    /// limits.timeoutSeconds out of range.
    #[error("limits.timeoutSeconds {0} is out of range; use 1 to 86400")]
    UpstreamTimeout(u64),
    /// No upstream.
    #[error("upstream required: the offer names no upstream URL (e.g. http://127.0.0.1:8080)")]
    UpstreamRequired,
    /// Upstream that is not an http(s) URL.
    #[error("invalid upstream {0:?}: {1}")]
    InvalidUpstream(String, String),
    /// Path with bad characters.
    #[error("invalid path {0:?}: must start with / and use only letters, digits, /, _, . and -")]
    InvalidPath(String),
    /// Path with a dot segment.
    #[error("invalid path {0:?}: path traversal not allowed")]
    PathTraversal(String),
    /// Path on a gateway path.
    #[error("path {path} collides with the reserved platform path {reserved}")]
    ReservedPath {
        /// The offer's path.
        path: String,
        /// The reserved one.
        reserved: String,
    },
    /// Path taken by another offer.
    #[error("path {path} is already used by offer {other}")]
    PathInUse {
        /// The path.
        path: String,
        /// The offer using it.
        other: String,
    },
    /// Inference without a model.
    #[error("a model is required for inference offers")]
    ModelRequired,
    /// An OASF name that is not in the taxonomy.
    #[error("{0}")]
    Oasf(String),
    /// A drain time or grace period that does not parse.
    #[error("{0}")]
    Drain(String),
    /// A settle-first annotation that is neither `true` nor `false`.
    #[error(
        "annotation {annotation}: {0:?} is not a boolean; write \"true\" (settle before calling the upstream) or \"false\"",
        annotation = crate::spec::SETTLE_FIRST_ANNOTATION
    )]
    SettleFirst(String),
    /// An `allowedPaths` entry that cannot be used.
    #[error("{0}")]
    AllowedPath(#[from] gateway::allowed::AllowedPathError),
    /// `allowedPaths` on an offer that forwards every path anyway.
    #[error(
        "allowedPaths ({0:?}, ...) applies to type inference offers only; an offer of another type forwards every path, so remove allowedPaths"
    )]
    AllowedPathsNotInference(String),
}

/// A validated offer name: `^[a-z0-9][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OfferName(String);

impl OfferName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        if name.is_empty() {
            return Err(ValidationError::EmptyName);
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !first_ok || !rest_ok || name.len() > 63 {
            return Err(ValidationError::InvalidName(name.to_string()));
        }
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OfferName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

/// An inference offer forwards its inference API plus `allowedPaths`; other types
/// forward every path, so their `allowedPaths` must be empty rather than ignored.
fn allowed_paths(
    spec: &crate::spec::OfferSpec,
) -> Result<Option<Vec<gateway::allowed::AllowedPath>>, ValidationError> {
    use gateway::allowed::AllowedPath;
    let extra = spec
        .allowed_paths
        .iter()
        .map(|p| AllowedPath::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if spec.offer_type != OfferType::Inference {
        return match extra.first() {
            None => Ok(None),
            Some(first) => Err(ValidationError::AllowedPathsNotInference(first.to_string())),
        };
    }
    let mut allowed = gateway::allowed::inference_api();
    for entry in extra {
        if !allowed.contains(&entry) {
            allowed.push(entry);
        }
    }
    Ok(Some(allowed))
}

pub fn resolve(offer: &ServiceOffer) -> Result<ResolvedOffer, ValidationError> {
    let name = OfferName::parse(&offer.metadata.name)?;
    let spec = &offer.spec;
    if spec.offer_type == OfferType::Inference
        && spec.model.as_ref().is_none_or(|m| m.name.trim().is_empty())
    {
        return Err(ValidationError::ModelRequired);
    }
    let upstream = upstream_url(offer)?;
    let health_path = match spec.upstream.health_path.as_deref() {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => "/".to_string(),
    };
    let path = check_path(spec.path.as_deref().unwrap_or(&format!("/services/{name}")))?;
    let network = Network::parse(&spec.payment.network)
        .map_err(|e| ValidationError::Network(e.to_string()))?;
    if network.chain_id().is_none() {
        return Err(ValidationError::Network(format!(
            "network {} is not an EVM chain; agora sells on eip155 networks such as base or base-sepolia",
            network.caip2()
        )));
    }
    if spec.payment.scheme != SCHEME_EXACT {
        return Err(ValidationError::Scheme(spec.payment.scheme.clone()));
    }
    let pay_to = parse_wallet(&spec.payment.pay_to)?;
    let timeout = spec.payment.max_timeout_seconds;
    if timeout == 0 || timeout > MAX_TIMEOUT_SECONDS {
        return Err(ValidationError::Timeout(timeout));
    }
    let asset = resolve_asset(offer, &network)?;
    let price = resolve_price(offer, &asset)?;
    let per_request = price
        .per_request()
        .map_err(|e| ValidationError::InvalidPrice {
            field: price.unit().to_string(),
            value: price_value(&price),
            reason: e.to_string(),
        })?;
    if per_request.is_zero() {
        return Err(ValidationError::ZeroPrice {
            field: price_key(&price).to_string(),
            value: price_value(&price),
            smallest: Money::from_atomic(U256::from(1), asset.decimals).to_string(),
        });
    }
    let mut registration = spec.registration.clone().unwrap_or_default();
    check_oasf(&registration)?;
    if registration.name.is_none() {
        registration.name = Some(name.to_string());
    }
    let limits = spec.limits.unwrap_or_default();
    let upstream_timeout = match limits.timeout_seconds {
        None => gateway::route::DEFAULT_UPSTREAM_TIMEOUT,
        Some(s) if (1..=MAX_TIMEOUT_SECONDS).contains(&s) => Duration::from_secs(s),
        Some(s) => return Err(ValidationError::UpstreamTimeout(s)),
    };
    let grace = match &spec.drain_grace_period {
        Some(grace) => parse_duration(grace)?,
        None => DEFAULT_DRAIN_GRACE,
    };
    let drain_until = match &spec.drain_at {
        Some(at) => {
            let at = x402::time::parse_rfc3339(at).map_err(ValidationError::Drain)?;
            Some(at.saturating_add(grace.as_secs()))
        }
        None => None,
    };
    Ok(ResolvedOffer {
        name,
        offer_type: spec.offer_type,
        model: spec.model.clone(),
        upstream,
        health_path,
        path,
        network,
        asset,
        pay_to,
        price,
        per_request,
        max_timeout_seconds: timeout,
        limits: gateway::Limits {
            rps: limits.rps,
            max_in_flight: limits.max_in_flight,
        },
        upstream_timeout,
        registration,
        provenance: spec.provenance.clone(),
        drain_until,
        allowed: allowed_paths(spec)?,
        settle_first: settle_first(offer)?,
    })
}

/// The settle-first annotation: absent or `false` is off, `true` is on, anything
/// else is refused rather than guessed at.
fn settle_first(offer: &ServiceOffer) -> Result<bool, ValidationError> {
    let annotation = crate::spec::SETTLE_FIRST_ANNOTATION;
    match offer.metadata.annotations.get(annotation).map(|v| v.trim()) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(ValidationError::SettleFirst(v.to_string())),
    }
}

/// How long a stopping offer keeps serving when its spec names no grace period.
const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{OfferSpec, PaymentSpec, PriceSpec, UpstreamSpec};

    fn offer(price: PriceSpec) -> ServiceOffer {
        ServiceOffer::new(
            "echo",
            OfferSpec {
                upstream: UpstreamSpec {
                    url: Some("http://127.0.0.1:8080".into()),
                    ..UpstreamSpec::default()
                },
                payment: PaymentSpec {
                    network: "base-sepolia".into(),
                    pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
                    scheme: "exact".into(),
                    max_timeout_seconds: 300,
                    price,
                    asset: None,
                },
                ..OfferSpec::default()
            },
        )
    }

    fn per_request(v: &str) -> PriceSpec {
        PriceSpec {
            per_request: Some(v.into()),
            ..PriceSpec::default()
        }
    }

    #[test]
    fn the_settle_first_annotation_is_a_boolean() {
        let mut o = offer(per_request("0.01"));
        assert!(!resolve(&o).unwrap().settle_first, "off unless asked");
        let key = crate::spec::SETTLE_FIRST_ANNOTATION.to_string();
        o.metadata.annotations.insert(key.clone(), "true".into());
        assert!(resolve(&o).unwrap().settle_first);
        o.metadata.annotations.insert(key.clone(), "False".into());
        assert!(!resolve(&o).unwrap().settle_first);
        o.metadata.annotations.insert(key, "yes".into());
        let refused = resolve(&o).unwrap_err().to_string();
        assert!(refused.contains("write \"true\""), "{refused}");
    }

    #[test]
    fn names_follow_the_reference_rule() {
        assert!(OfferName::parse("my-qwen-3").is_ok());
        assert_eq!(
            OfferName::parse("").unwrap_err().to_string(),
            "name cannot be empty"
        );
        for bad in ["My-Qwen", "-x", "a_b", "a.b", &"a".repeat(64)] {
            assert_eq!(
                OfferName::parse(bad).unwrap_err().to_string(),
                format!(
                    "invalid name {bad:?}: must be lowercase alphanumeric with hyphens, 1-63 chars, starting with a letter or digit"
                )
            );
        }
    }

    #[test]
    fn prices_resolve_exactly_with_the_approximation_text() {
        let r = resolve(&offer(per_request("0.001"))).unwrap();
        assert_eq!(r.per_request.atomic, alloy::primitives::U256::from(1000));
        assert_eq!(r.price_text(), "0.001 USDC/request");
        assert_eq!(r.path, "/services/echo");
        assert_eq!(r.health_path, "/");
        let mtok = resolve(&offer(PriceSpec {
            per_mtok: Some("0.50".into()),
            ..PriceSpec::default()
        }))
        .unwrap();
        assert_eq!(
            mtok.price_text(),
            "0.0005 USDC/request (approx from 0.5 USDC/MTok @ 1000 tok/request)"
        );
        assert_eq!(
            resolve(&offer(PriceSpec::default())).unwrap_err(),
            ValidationError::PriceRequired
        );
        assert!(matches!(
            resolve(&offer(per_request("abc"))).unwrap_err(),
            ValidationError::InvalidPrice { .. }
        ));
        let both = PriceSpec {
            per_request: Some("1".into()),
            per_hour: Some("1".into()),
            ..PriceSpec::default()
        };
        assert_eq!(
            resolve(&offer(both)).unwrap_err().to_string(),
            "set exactly one price (perRequest, perMTok or perHour); got perRequest, perHour"
        );
    }

    #[test]
    fn a_zero_price_is_refused_pointing_at_free_routes() {
        let free = "a zero price; x402 cannot charge nothing. To serve without payment, use a free route instead: the offer's upstream.healthPath is served free, and a service that should be free in full needs no offer; to charge, set at least 0.000001 (one atomic unit)";
        for (spec, shown) in [
            (per_request("0"), "perRequest 0"),
            (per_request("0.000"), "perRequest 0"),
            (per_request("$0"), "perRequest 0"),
            (
                PriceSpec {
                    per_mtok: Some("0".into()),
                    ..PriceSpec::default()
                },
                "perMTok 0",
            ),
            (
                PriceSpec {
                    per_hour: Some("0.0".into()),
                    ..PriceSpec::default()
                },
                "perHour 0",
            ),
        ] {
            assert_eq!(
                resolve(&offer(spec)).unwrap_err().to_string(),
                format!("{shown} is {free}")
            );
        }
        assert!(resolve(&offer(per_request("0.000001"))).is_ok());
    }

    #[test]
    fn reference_upstreams_map_to_loopback() {
        let mut o = offer(per_request("0.001"));
        o.spec.upstream = UpstreamSpec {
            service: Some("ollama".into()),
            namespace: Some("llm".into()),
            port: Some(11434),
            ..UpstreamSpec::default()
        };
        assert_eq!(
            resolve(&o).unwrap().upstream.as_str(),
            "http://127.0.0.1:11434/"
        );
        o.spec.upstream = UpstreamSpec::default();
        assert_eq!(resolve(&o).unwrap_err(), ValidationError::UpstreamRequired);
    }

    #[test]
    fn oasf_names_are_checked_with_a_suggestion() {
        let mut o = offer(per_request("0.001"));
        o.spec.registration = Some(RegistrationSpec {
            skills: vec!["devops_mlops/model_versionin".into()],
            ..RegistrationSpec::default()
        });
        let message = resolve(&o).unwrap_err().to_string();
        assert!(
            message.contains("devops_mlops/model_versioning"),
            "{message}"
        );
    }
}
