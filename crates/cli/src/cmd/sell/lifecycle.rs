//! Changing offers after they are sold: `update`, `stop` (drain), `delete`, `apply`
//! (manifests), and the selling defaults (`pricing`).

use std::io::IsTerminal;

use anyhow::{Context, bail};
use offers::validate::{format_duration, resolve};
use seller::Settings;

use super::args::{ApplyArgs, DeleteArgs, PricingArgs, StopArgs, UpdateArgs};
use super::{change_text, daemon, fetch, json_line, put, spec, unknown_offer};
use crate::cmd::serve;
use crate::env;
use crate::output::{Items, outln};

/// `agora sell update NAME`: new price, recipient or network.
pub(super) async fn update(a: UpdateArgs, json_out: bool) -> anyhow::Result<()> {
    let changes = spec::update(&a)?;
    let client = daemon(json_out).await?;
    let (mut offer, _) = fetch(&client, &a.name).await?;
    changes.apply(&mut offer);
    let answer = put(&client, &offer).await?;
    client.reconcile().await?;
    if json_out {
        outln!("{}", json_line(&answer)?)?;
    } else {
        let stored = &answer.offer;
        outln!(
            "ServiceOffer {} {} (generation {}): {}",
            stored.metadata.name,
            change_text(answer.change),
            stored.metadata.generation,
            resolve(stored).map(|r| r.price_text()).unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `agora sell stop NAME`: drain the route for the grace period, then remove it.
pub(super) async fn stop(a: StopArgs, json_out: bool) -> anyhow::Result<()> {
    let grace = spec::grace(&a)?;
    let client = daemon(json_out).await?;
    let (mut offer, _) = fetch(&client, &a.name).await?;
    spec::drain(&mut offer, x402::time::unix_now(), grace);
    let answer = put(&client, &offer).await?;
    client.reconcile().await?;
    if json_out {
        outln!("{}", json_line(&answer)?)?;
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
    let answer = client.delete_offer(&a.name).await.map_err(unknown_offer)?;
    if json_out {
        outln!("{}", json_line(&answer)?)?;
    } else {
        outln!("ServiceOffer {} deleted", a.name)?;
    }
    Ok(())
}

/// `agora sell pricing`: shows the selling defaults, or sets those given.
pub(super) async fn pricing(a: PricingArgs, json_out: bool) -> anyhow::Result<()> {
    let facilitator = match &a.facilitator_url {
        Some(url) => Some(url.clone()),
        None => env::deprecated_facilitator_url()?,
    };
    let client = daemon(json_out).await?;
    let current = if a.pay_to.is_some() || a.network.is_some() || facilitator.is_some() {
        let next = Settings {
            pay_to: a.pay_to.map(|address| address.to_string()),
            network: a.network,
            facilitator: facilitator.as_ref().map(env::url_text),
        };
        client.put_settings(&next).await?
    } else {
        client.settings().await?
    };
    if json_out {
        outln!("{}", json_line(&current)?)?;
    } else {
        let show = |value: &Option<String>, fallback: &str| {
            value
                .clone()
                .unwrap_or_else(|| format!("(unset, {fallback})"))
        };
        let pay_to_fallback = match wallet::default_wallet()? {
            Some((name, address)) => format!("paying to wallet {name} {address}"),
            None => "pass --pay-to".to_string(),
        };
        outln!(
            "x402 configured: wallet={} chain={} facilitator={}",
            show(&current.pay_to, &pay_to_fallback),
            show(&current.network, "base-sepolia"),
            show(&current.facilitator, serve::DEFAULT_FACILITATOR)
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
        let answer = put(&client, &offer)
            .await
            .with_context(|| format!("ServiceOffer {}", offer.metadata.name))?;
        if !json_out {
            outln!(
                "ServiceOffer {} {} from {}",
                offer.metadata.name,
                change_text(answer.change),
                a.file.display()
            )?;
        }
        results.push(answer);
    }
    client.reconcile().await?;
    if json_out {
        outln!("{}", json_line(&Items { items: &results })?)?;
    }
    Ok(())
}
