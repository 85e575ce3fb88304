//! What `agora sell` shows: the readiness table (`list`), one offer's conditions and
//! events (`status`), the offer as a manifest (`get`), and the condition icons.

use offers::validate::{ResolvedOffer, resolve};
use offers::{STAGES, ServiceOffer};
use serde_json::json;

use super::args::GetArgs;
use super::{daemon, fetch};
use crate::output::{Items, out, outln};

/// The icon of a condition: done, informational, failing or pending.
pub(super) fn icon(status: &str, reason: &str) -> &'static str {
    match (status, reason) {
        ("True", "Skipped" | "Disabled") => "ℹ",
        ("True", _) => "✓",
        ("False", _) => "⚠",
        _ => "⏳",
    }
}

/// `agora sell list`: one line per offer with its price and readiness.
pub(super) async fn list(json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let offers: Vec<ServiceOffer> = client.offers().await?;
    if json_out {
        outln!("{}", serde_json::to_string(&Items { items: &offers })?)?;
        return Ok(());
    }
    if offers.is_empty() {
        outln!(
            "No offers. Sell something with: agora sell http <name> --upstream <url> --per-request <price>"
        )?;
        return Ok(());
    }
    outln!(
        "{:<20} {:<10} {:<36} {:<16} READY",
        "NAME",
        "TYPE",
        "PRICE",
        "NETWORK"
    )?;
    for offer in &offers {
        let (price, network) = match resolve(offer) {
            Ok(r) => (r.price_text(), r.network.v1_name()),
            Err(e) => (format!("invalid: {e}"), offer.spec.payment.network.clone()),
        };
        let price: String = price.chars().take(36).collect();
        let ready = offer
            .condition("Ready")
            .map_or("Unknown", |c| c.status.as_str());
        outln!(
            "{:<20} {:<10} {:<36} {:<16} {ready}",
            offer.metadata.name,
            offer.spec.offer_type.as_str(),
            price,
            network
        )?;
    }
    Ok(())
}

/// `agora sell status NAME`.
pub(super) async fn status(name: &str, json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    client.reconcile().await?;
    let info = client.status().await?;
    let (offer, events) = fetch(&client, name).await?;
    let resolved = resolve(&offer).ok();
    let public = &info.public_url;
    let url = offer
        .status
        .endpoint
        .as_ref()
        .map(|p| format!("{public}{p}"));
    if json_out {
        outln!(
            "{}",
            json!({
                "offer": offer,
                "url": url,
                "price": resolved.as_ref().map(ResolvedOffer::price_text),
                "forwards": resolved.as_ref().and_then(forwards),
                "ready": offer.is_ready(),
                "events": events,
                "tunnel": info.tunnel,
            })
        )?;
        return Ok(());
    }
    outln!(
        "ServiceOffer: {} ({})",
        offer.metadata.name,
        offer.spec.offer_type.as_str()
    )?;
    outln!(
        "Endpoint:     {}",
        url.as_deref().unwrap_or("(not published yet)")
    )?;
    if let Some(tunnel) = &info.tunnel {
        outln!(
            "Tunnel:       {} at {} ({})",
            seller::admin::state_name(tunnel.status.state),
            tunnel.status.url.as_deref().unwrap_or("-"),
            tunnel.status.provider
        )?;
    }
    if let Some(r) = &resolved {
        outln!(
            "Network:      {} ({})",
            r.network.v1_name(),
            r.network.caip2()
        )?;
        outln!("Asset:        {} ({})", r.asset.symbol, r.asset.address)?;
        outln!("Price:        {}", r.price_text())?;
        outln!("Pay To:       {}", r.pay_to)?;
        if let Some(list) = forwards(r) {
            outln!("Forwards:     {} (else 404)", list.join(", "))?;
        }
    }
    outln!(
        "Agent ID:     {}",
        offer.status.agent_id.as_deref().unwrap_or("-")
    )?;
    outln!("Conditions:")?;
    for kind in STAGES {
        match offer.condition(kind) {
            Some(c) => outln!(
                "  {} {:<17} {:<20} {}",
                icon(c.status.as_str(), &c.reason),
                c.kind,
                c.reason,
                c.message
            ),
            None => outln!("  ⏳ {kind:<17} {:<20} not reconciled yet", "Pending"),
        }?;
    }
    if !events.is_empty() {
        outln!("Recent events:")?;
        for e in events.iter().rev().take(8).rev() {
            outln!("  {} {:<9} {}", e.at, e.kind, e.message)?;
        }
    }
    Ok(())
}

/// The requests an offer forwards, when it has an allow-list (inference offers).
fn forwards(offer: &ResolvedOffer) -> Option<Vec<String>> {
    offer
        .allowed
        .as_ref()
        .map(|list| list.iter().map(ToString::to_string).collect())
}

/// `agora sell get NAME -o yaml|json`.
pub(super) async fn get(a: GetArgs) -> anyhow::Result<()> {
    let client = daemon(true).await?;
    let (offer, _) = fetch(&client, &a.name).await?;
    if a.output == "json" {
        outln!("{}", serde_json::to_string_pretty(&offer)?)?;
    } else {
        out!("{}", offer.to_yaml()?)?;
    }
    Ok(())
}
