//! Checking a whole offer into a [`ResolvedOffer`]: every field through its own
//! check, in the order the reference CLI reports them.

use std::time::Duration;

use alloy::primitives::U256;
use x402::money::Money;
use x402::network::Network;
use x402::wire::SCHEME_EXACT;

use super::path::upstream_url;
use super::price::{price_key, price_value, resolve_asset, resolve_price};
use super::{
    MAX_TIMEOUT_SECONDS, OfferName, ResolvedOffer, ValidationError, check_oasf, check_path,
    parse_duration, parse_wallet,
};
use crate::spec::{OfferType, ServiceOffer};

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

/// Checks every field of `offer` once, so the reconciler's stages share one typed
/// result and one refusal names the first field that is wrong.
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
    use crate::spec::{OfferSpec, PaymentSpec, PriceSpec, RegistrationSpec, UpstreamSpec};

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
