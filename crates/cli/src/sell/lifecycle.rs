//! Changing offers after they are sold: `update`, `stop` (drain), `delete`, `apply`
//! (manifests), and the selling defaults (`pricing`).

use std::io::IsTerminal;

use anyhow::{Context, bail};
use offers::ServiceOffer;
use offers::validate::{format_duration, resolve};
use serde_json::{Value, json};

use super::args::{ApplyArgs, DeleteArgs, PricingArgs, StopArgs, UpdateArgs};
use super::{daemon, fetch, spec};
use crate::output::outln;
use crate::{config, serve_cmd};

/// `agora sell update NAME`: new price, recipient or network.
pub(super) async fn update(a: UpdateArgs, json_out: bool) -> anyhow::Result<()> {
    let changes = spec::update(&a)?;
    let client = daemon(json_out).await?;
    let (mut offer, _) = fetch(&client, &a.name).await?;
    changes.apply(&mut offer);
    let answer = client.put_offer(&offer).await?;
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    let stored: ServiceOffer = serde_json::from_value(answer["offer"].clone())?;
    if json_out {
        outln!("{answer}")?;
    } else {
        outln!(
            "ServiceOffer {} {} (generation {}): {}",
            stored.metadata.name,
            answer["change"].as_str().unwrap_or("updated"),
            stored.metadata.generation,
            resolve(&stored).map(|r| r.price_text()).unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `agora sell stop NAME`: drain the route for the grace period, then remove it.
pub(super) async fn stop(a: StopArgs, json_out: bool) -> anyhow::Result<()> {
    let grace = spec::grace(&a)?;
    let client = daemon(json_out).await?;
    let (mut offer, _) = fetch(&client, &a.name).await?;
    spec::drain(&mut offer, x402::eip3009::unix_now(), grace);
    let answer = client.put_offer(&offer).await?;
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    if json_out {
        outln!("{answer}")?;
    } else if grace.is_zero() {
        outln!("ServiceOffer {} stopped; its route is removed", a.name)?;
    } else {
        outln!(
            "ServiceOffer {} draining for {}; then its route is removed",
            a.name,
            format_duration(grace)
        )?;
    }
    Ok(())
}

/// `agora sell delete NAME`, after asking unless `--yes`.
pub(super) async fn delete(a: DeleteArgs, json_out: bool) -> anyhow::Result<()> {
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "refusing to delete {} without confirmation: pass --yes",
                a.name
            );
        }
        eprint!("Delete ServiceOffer {}? [y/N] ", a.name);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            outln!("Aborted.")?;
            return Ok(());
        }
    }
    let client = daemon(json_out).await?;
    let answer = client
        .request("DELETE", &format!("/v1/offers/{}", a.name), None)
        .await?
        .ok()?;
    if json_out {
        outln!("{answer}")?;
    } else {
        outln!("ServiceOffer {} deleted", a.name)?;
    }
    Ok(())
}

/// `agora sell pricing`: shows the selling defaults, or sets those given.
pub(super) async fn pricing(a: PricingArgs, json_out: bool) -> anyhow::Result<()> {
    let facilitator = match &a.facilitator_url {
        Some(url) => Some(url.clone()),
        None => config::deprecated_facilitator_url()?,
    };
    let client = daemon(json_out).await?;
    let current = if a.pay_to.is_some() || a.network.is_some() || facilitator.is_some() {
        let body = json!({
            "payTo": a.pay_to.map(|address| address.to_string()),
            "network": a.network,
            "facilitator": facilitator.as_ref().map(config::url_text),
        });
        client
            .request("PUT", "/v1/settings", Some(&body))
            .await?
            .ok()?
    } else {
        client.request("GET", "/v1/settings", None).await?.ok()?
    };
    if json_out {
        outln!("{current}")?;
    } else {
        let show = |k: &str, fallback: &str| {
            current[k]
                .as_str()
                .map_or_else(|| format!("(unset, {fallback})"), str::to_string)
        };
        let pay_to_fallback = match wallet::default_wallet()? {
            Some((name, address)) => format!("paying to wallet {name} {address}"),
            None => "pass --pay-to".to_string(),
        };
        outln!(
            "x402 configured: wallet={} chain={} facilitator={}",
            show("payTo", &pay_to_fallback),
            show("network", "base-sepolia"),
            show("facilitator", serve_cmd::DEFAULT_FACILITATOR)
        )?;
    }
    Ok(())
}

/// `agora sell apply -f FILE`: creates or updates the offers of a manifest.
pub(super) async fn apply(a: ApplyArgs, json_out: bool) -> anyhow::Result<()> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?
    };
    let offers = spec::manifests(&text, &a.file.display().to_string())?;
    let client = daemon(json_out).await?;
    let mut results = Vec::new();
    for offer in offers {
        let answer = client
            .put_offer(&offer)
            .await
            .with_context(|| format!("ServiceOffer {}", offer.metadata.name))?;
        if !json_out {
            outln!(
                "ServiceOffer {} {} from {}",
                offer.metadata.name,
                answer["change"].as_str().unwrap_or("updated"),
                a.file.display()
            )?;
        }
        results.push(answer);
    }
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    if json_out {
        outln!("{}", Value::Array(results))?;
    }
    Ok(())
}
