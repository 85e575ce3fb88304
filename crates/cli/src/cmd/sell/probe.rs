//! `agora sell probe`: checks that an offer answers with exactly its own x402
//! challenge, and with `--paid` buys one call.

use anyhow::{Context, bail};
use offers::validate::resolve;
use serde_json::json;

use super::args::ProbeArgs;
use super::{daemon, fetch};
use crate::env;
use crate::output::outln;

/// `agora sell probe NAME [--local] [--paid]`.
pub(super) async fn probe(a: ProbeArgs, json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let info = client.status().await?;
    let (offer, _) = fetch(&client, &a.name).await?;
    let resolved = resolve(&offer)?;
    let path = offer.status.endpoint.clone().with_context(|| {
        format!(
            "ServiceOffer {} has no endpoint (not yet reconciled?): see agora sell status {}",
            a.name, a.name
        )
    })?;
    let base = if a.local {
        &info.gateway_url
    } else {
        &info.public_url
    };
    let url = format!("{base}{path}");
    let expected = resolved.requirement();
    if !json_out {
        outln!("Probing {url} ...")?;
    }
    let report = buyer::probe::probe(&url, &expected).await?;
    let paid = if a.paid && report.passed {
        let buyer = wallet::keyfile::load_key(a.key_file.as_deref(), env::BUYER_KEY)?;
        let buyer = buyer::probe::buyer(&expected, buyer)?;
        Some(buyer::probe::pay(&buyer, &url).await?.0)
    } else {
        None
    };
    if json_out {
        outln!("{}", json!({ "probe": report, "paid": paid }))?;
    } else {
        outln!("HTTP {}", report.status)?;
        for c in &report.checks {
            outln!(
                "  {} {}: {}",
                if c.ok { "✓" } else { "✗" },
                c.what,
                c.detail
            )?;
        }
        if report.passed {
            outln!("Endpoint is live and payment-gated.")?;
        }
        if let Some(p) = &paid {
            outln!("Paid request: HTTP {}", p.status)?;
            match &p.receipt {
                Some(r) => outln!(
                    "Receipt: success={} payer={} transaction={}",
                    r.success,
                    r.payer.map(|a| a.to_string()).unwrap_or_default(),
                    r.transaction.map(|t| t.to_string()).unwrap_or_default()
                ),
                None => outln!("No receipt came back."),
            }?;
        }
    }
    if !report.passed {
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({})", c.what, c.detail))
            .collect();
        bail!("probe failed: {}", failed.join("; "));
    }
    if let Some(p) = paid
        && !(p.status < 400 && p.receipt.is_some_and(|r| r.success))
    {
        bail!("the paid request did not settle: HTTP {}", p.status);
    }
    Ok(())
}
