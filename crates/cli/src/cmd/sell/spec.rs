//! Turns `agora sell` flags into ServiceOffer specs and changes, without I/O: every
//! check a flag can fail happens here with a message naming the flag, so it is
//! unit-tested without a daemon and nothing half-checked reaches the admin socket.
//! What needs the outside world (the daemon's defaults, a detected model server) comes
//! in as arguments.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::{Context, bail};
use offers::spec::{
    LimitsSpec, ModelSpec, OfferSpec, PaymentSpec, PriceSpec, RegistrationSpec, UpstreamSpec,
};
use offers::validate::{format_duration, parse_duration, parse_price, parse_wallet};
use offers::{OfferName, OfferType, ServiceOffer};
use seller::Settings;
use seller::model_server::Detected;
use x402::network::USDC_DECIMALS;

use super::args::{
    HttpArgs, InferenceArgs, LimitArgs, PaymentArgs, PriceArgs, RegisterArgs, StopArgs, UpdateArgs,
};
use crate::env;

/// Default inference skill and domain (OASF v0.8.0), as the reference uses.
const INFERENCE_SKILL: &str =
    "natural_language_processing/natural_language_generation/text_completion";
const INFERENCE_DOMAIN: &str = "technology/data_science";

/// An offer whose own flags are checked, waiting for the payment terms, which need the
/// daemon's selling defaults.
#[derive(Debug)]
pub(super) struct Draft {
    /// The offer's name.
    pub(super) name: OfferName,
    offer_type: OfferType,
    price: PriceSpec,
    registration: RegistrationSpec,
    path: Option<String>,
    limits: Option<LimitsSpec>,
    model: Option<ModelSpec>,
    upstream: UpstreamSpec,
    allowed_paths: Vec<String>,
    settle_first: bool,
}

impl Draft {
    /// Sets the model server and model an inference offer sells.
    pub(super) fn serving(mut self, detected: &Detected, model: String) -> Self {
        self.model = Some(ModelSpec {
            name: model,
            runtime: Some(detected.runtime.to_string()),
        });
        self.upstream = UpstreamSpec {
            url: Some(detected.url.clone()),
            health_path: Some(detected.health_path.to_string()),
            ..UpstreamSpec::default()
        };
        self
    }

    /// The offer, paid as the flags say, else as the daemon's defaults say.
    pub(super) fn offer(
        self,
        payment: &PaymentArgs,
        defaults: &Settings,
    ) -> anyhow::Result<ServiceOffer> {
        let payment = payment_spec(payment, defaults, self.price)?;
        let spec = OfferSpec {
            offer_type: self.offer_type,
            model: self.model,
            upstream: self.upstream,
            path: self.path,
            payment,
            registration: Some(self.registration),
            limits: self.limits,
            allowed_paths: self.allowed_paths,
            ..OfferSpec::default()
        };
        let mut offer = ServiceOffer::new(self.name.as_str(), spec);
        if self.settle_first {
            offer.metadata.annotations.insert(
                offers::spec::SETTLE_FIRST_ANNOTATION.to_string(),
                "true".to_string(),
            );
        }
        Ok(offer)
    }
}

/// `agora sell http`'s offer, short of its payment terms.
pub(super) fn http(a: &HttpArgs) -> anyhow::Result<Draft> {
    let name = name_or(
        a.name.as_deref(),
        "agora sell http <name> --upstream <url> --per-request <price>",
    )?;
    let upstream = a
        .upstream
        .as_ref()
        .context("upstream required: use --upstream <url> (e.g. http://127.0.0.1:8080)")?;
    let price = price_spec(&a.price, true)?;
    let registration = registration_spec(&a.register, name.as_str(), None)?;
    Ok(Draft {
        offer_type: OfferType::Http,
        price,
        registration,
        path: a.limits.path.clone(),
        limits: limits_spec(&a.limits),
        model: None,
        upstream: UpstreamSpec {
            url: Some(env::url_text(upstream)),
            health_path: Some(a.health_path.clone()),
            ..UpstreamSpec::default()
        },
        allowed_paths: Vec::new(),
        settle_first: a.settle_first,
        name,
    })
}

/// `agora sell inference`'s offer, short of its model server ([`Draft::serving`]) and
/// payment terms.
pub(super) fn inference(a: &InferenceArgs) -> anyhow::Result<Draft> {
    let name = name_or(
        a.name.as_deref(),
        "agora sell inference <name> --model <model> --price <price>",
    )?;
    let price = price_spec(&a.price, false)?;
    let registration = registration_spec(
        &a.register,
        name.as_str(),
        Some((INFERENCE_SKILL, INFERENCE_DOMAIN)),
    )?;
    Ok(Draft {
        offer_type: OfferType::Inference,
        price,
        registration,
        path: a.limits.path.clone(),
        limits: limits_spec(&a.limits),
        model: None,
        upstream: UpstreamSpec::default(),
        allowed_paths: allowed_paths(&a.allow_paths)?,
        settle_first: a.settle_first,
        name,
    })
}

/// `--allow-path` values, checked and written the way the offer stores them.
fn allowed_paths(given: &[String]) -> anyhow::Result<Vec<String>> {
    given
        .iter()
        .map(|p| {
            gateway::allowed::AllowedPath::parse(p)
                .map(|a| a.to_string())
                .with_context(|| format!("--allow-path {p:?}"))
        })
        .collect()
}

/// The model to sell: the one asked for, else the only one the server lists. The flag
/// says whether it was picked rather than asked for.
pub(super) fn model(
    requested: Option<&str>,
    detected: &Detected,
) -> anyhow::Result<(String, bool)> {
    if let Some(m) = requested {
        return Ok((m.to_string(), false));
    }
    match detected.models.as_slice() {
        [only] => Ok((only.clone(), true)),
        [] => bail!(
            "--model is required: {} lists no models yet (load or pull one first)",
            detected.url
        ),
        many => bail!(
            "--model is required: {} serves {}; pass --model with one of them",
            detected.url,
            many.join(", ")
        ),
    }
}

/// What `agora sell update` changes, checked before the offer is fetched.
#[derive(Debug)]
pub(super) struct Changes {
    price: Option<PriceSpec>,
    pay_to: Option<Address>,
    network: Option<String>,
}

impl Changes {
    /// Writes the changes into the stored offer.
    pub(super) fn apply(self, offer: &mut ServiceOffer) {
        let payment = &mut offer.spec.payment;
        if let Some(price) = self.price {
            payment.price = price;
        }
        if let Some(pay_to) = self.pay_to {
            payment.pay_to = pay_to.to_string();
        }
        if let Some(network) = self.network {
            payment.network = network;
        }
    }
}

/// `agora sell update`'s flags as changes; at least one is needed.
pub(super) fn update(a: &UpdateArgs) -> anyhow::Result<Changes> {
    let priced = has_price(&a.price);
    if !priced && a.pay_to.is_none() && a.network.is_none() {
        bail!(
            "nothing to update: pass at least one of --per-request / --per-mtok / --per-hour / --pay-to / --network"
        );
    }
    Ok(Changes {
        price: priced.then(|| price_spec(&a.price, true)).transpose()?,
        pay_to: a.pay_to,
        network: a.network.clone(),
    })
}

/// How long `agora sell stop` lets the route serve.
pub(super) fn grace(a: &StopArgs) -> anyhow::Result<Duration> {
    if a.grace.trim_start().starts_with('-') {
        bail!("--grace must be >= 0");
    }
    if a.now {
        return Ok(Duration::ZERO);
    }
    Ok(parse_duration(&a.grace)?)
}

/// Marks an offer to drain from `now` (Unix seconds) for `grace`.
pub(super) fn drain(offer: &mut ServiceOffer, now: u64, grace: Duration) {
    offer.spec.drain_at = Some(x402::time::format_rfc3339(now));
    offer.spec.drain_grace_period = Some(format_duration(grace));
}

/// The ServiceOffers in a manifest text (documents separated by `---`); `source`
/// names the file in errors.
pub(super) fn manifests(text: &str, source: &str) -> anyhow::Result<Vec<ServiceOffer>> {
    let mut found = Vec::new();
    for (i, doc) in text.split("\n---").enumerate() {
        if doc.trim().trim_start_matches("---").trim().is_empty() {
            continue;
        }
        let offer = ServiceOffer::from_manifest(doc)
            .with_context(|| format!("{source} document {}: not a ServiceOffer manifest", i + 1))?;
        if offer.kind != offers::spec::KIND {
            bail!(
                "{source} document {}: kind {} is not ServiceOffer",
                i + 1,
                offer.kind
            );
        }
        found.push(offer);
    }
    Ok(found)
}

fn name_or(name: Option<&str>, usage: &str) -> anyhow::Result<OfferName> {
    let name = name.with_context(|| format!("name required: {usage}"))?;
    Ok(OfferName::parse(name)?)
}

fn price_spec(p: &PriceArgs, per_hour_allowed: bool) -> anyhow::Result<PriceSpec> {
    // Checked as USDC, the default asset, here for a flag-named message; the daemon checks
    // again against the offer's actual asset.
    let check = |flag: &str, v: &str| -> anyhow::Result<String> {
        parse_price(flag, v, USDC_DECIMALS)?;
        Ok(v.trim().to_string())
    };
    if let Some(v) = p.price.as_ref().or(p.per_request.as_ref()) {
        return Ok(PriceSpec {
            per_request: Some(check("--price/--per-request", v)?),
            ..PriceSpec::default()
        });
    }
    if let Some(v) = &p.per_mtok {
        return Ok(PriceSpec {
            per_mtok: Some(check("--per-mtok", v)?),
            ..PriceSpec::default()
        });
    }
    match &p.per_hour {
        Some(v) if per_hour_allowed => Ok(PriceSpec {
            per_hour: Some(check("--per-hour", v)?),
            ..PriceSpec::default()
        }),
        Some(_) => {
            bail!("--per-hour is for http offers; price inference with --price or --per-mtok")
        }
        None if per_hour_allowed => {
            bail!("price required: use --price, --per-request, --per-mtok, or --per-hour")
        }
        None => bail!("price required: use --price, --per-request, or --per-mtok"),
    }
}

fn has_price(p: &PriceArgs) -> bool {
    p.price.is_some() || p.per_request.is_some() || p.per_mtok.is_some() || p.per_hour.is_some()
}

fn payment_spec(
    p: &PaymentArgs,
    defaults: &Settings,
    price: PriceSpec,
) -> anyhow::Result<PaymentSpec> {
    let pay_to: Address = match (p.pay_to, &defaults.pay_to) {
        (Some(address), _) => address,
        (None, Some(stored)) => parse_wallet(stored)?,
        (None, None) => bail!(
            "recipient required: use --pay-to <addr> or set {} (or create a default wallet, which then receives: agora wallet new)",
            env::WALLET
        ),
    };
    let network = p
        .network
        .clone()
        .or_else(|| defaults.network.clone())
        .unwrap_or_else(|| "base-sepolia".to_string());
    x402::Network::parse(&network).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(PaymentSpec {
        network,
        pay_to: pay_to.to_string(),
        scheme: "exact".into(),
        max_timeout_seconds: p.max_timeout,
        price,
        asset: None,
    })
}

fn registration_spec(
    r: &RegisterArgs,
    name: &str,
    default_tags: Option<(&str, &str)>,
) -> anyhow::Result<RegistrationSpec> {
    let specific = r.register_name.is_some()
        || r.register_image.is_some()
        || !r.skills.is_empty()
        || !r.domains.is_empty()
        || !r.metadata.is_empty();
    if r.no_register && specific {
        bail!("--no-register cannot be combined with registration-specific flags");
    }
    let mut metadata = BTreeMap::new();
    for kv in &r.metadata {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .with_context(|| {
                format!("invalid --register-metadata value {kv:?}: expected key=value")
            })?;
        metadata.insert(k.to_string(), v.to_string());
    }
    let (mut skills, mut domains) = (r.skills.clone(), r.domains.clone());
    if let Some((skill, domain)) = default_tags {
        if skills.is_empty() {
            skills.push(skill.to_string());
        }
        if domains.is_empty() {
            domains.push(domain.to_string());
        }
    }
    Ok(RegistrationSpec {
        enabled: !r.no_register,
        name: Some(r.register_name.clone().unwrap_or_else(|| name.to_string())),
        description: r.description.clone(),
        image: r.register_image.clone(),
        skills,
        domains,
        metadata,
        ..RegistrationSpec::default()
    })
}

fn limits_spec(l: &LimitArgs) -> Option<LimitsSpec> {
    (l.rps.is_some() || l.max_in_flight.is_some()).then_some(LimitsSpec {
        rps: l.rps,
        max_in_flight: l.max_in_flight,
        ..LimitsSpec::default()
    })
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
