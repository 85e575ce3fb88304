//! `agora sell http` and `agora sell inference`: build the offer, hand it to the daemon
//! and, with `--wait`, follow its stages until Ready; the sale comes back as [`Sold`],
//! which `--json` prints (alone, or inside `agora research publish --sell`'s object).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use offers::ServiceOffer;
use offers::validate::resolve;
use seller::{AdminClient, Settings};
use serde::Serialize;

use super::args::{HttpArgs, InferenceArgs, PaymentArgs};
use super::show::icon;
use super::spec::{self, Draft};
use super::{change_text, daemon, fetch, put};
use crate::output::{Progress, outln};

/// What a sale came to: the change the daemon made, the offer as it stands (Ready
/// after `--wait`) and whether it is Ready; `--json`'s object.
#[derive(Debug, Serialize)]
pub(crate) struct Sold {
    change: String,
    offer: ServiceOffer,
    ready: bool,
}

impl Sold {
    /// Prints the sale under `--json` (the human lines were printed as it went).
    pub(super) fn print(&self, json_out: bool) -> anyhow::Result<()> {
        if json_out {
            outln!("{}", serde_json::to_value(self)?)?;
        }
        Ok(())
    }
}

/// `agora sell http`.
pub(super) async fn http(a: HttpArgs, json_out: bool) -> anyhow::Result<Sold> {
    let draft = spec::http(&a)?;
    sell(draft, &a.payment, a.wait, json_out).await
}

/// `agora sell inference`: finds the model server and model before selling.
pub(super) async fn inference(a: InferenceArgs, json_out: bool) -> anyhow::Result<Sold> {
    let draft = spec::inference(&a)?;
    let detected = match &a.upstream {
        Some(url) => crate::model_lookup::inspect(url.as_str()).await?,
        None => crate::model_lookup::detect().await?,
    };
    let (model, picked) = spec::model(a.model.as_deref(), &detected)?;
    if picked && !json_out {
        eprintln!("using model {model}, the only one {} serves", detected.url);
    }
    let provenance = match &a.provenance_file {
        Some(path) => provenance(path)?,
        None => Default::default(),
    };
    sell_shaped(
        draft.serving(&detected, model),
        &a.payment,
        a.wait,
        json_out,
        |offer| offer.spec.provenance = provenance,
    )
    .await
}

/// Reads `--provenance-file`: a JSON object whose values are strings (numbers and
/// booleans are taken as their text), as `agora research publish` writes it.
fn provenance(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("--provenance-file {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("--provenance-file {} is not JSON: {e}", path.display()))?;
    let Some(map) = value.as_object() else {
        bail!(
            "--provenance-file {} must hold a JSON object of strings",
            path.display()
        );
    };
    map.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                Ok((k.clone(), v.to_string()))
            }
            _ => bail!(
                "--provenance-file {}: {k} must be a string, not {v}",
                path.display()
            ),
        })
        .collect()
}

/// Completes the draft with the daemon's defaults and stores it.
async fn sell(
    draft: Draft,
    payment: &PaymentArgs,
    wait: Option<u64>,
    json_out: bool,
) -> anyhow::Result<Sold> {
    sell_shaped(draft, payment, wait, json_out, |_| {}).await
}

/// [`sell`], with `shape` adding to the finished offer what its flags cannot say
/// (`agora sell research`'s worker annotations and leaderboard metadata).
pub(super) async fn sell_shaped(
    draft: Draft,
    payment: &PaymentArgs,
    wait: Option<u64>,
    json_out: bool,
    shape: impl FnOnce(&mut ServiceOffer),
) -> anyhow::Result<Sold> {
    let client = daemon(json_out).await?;
    let mut defaults: Settings = client.settings().await?;
    // No --pay-to and no `sell pricing` recipient: the default wallet receives.
    if payment.pay_to.is_none()
        && defaults.pay_to.is_none()
        && let Some((wallet, address)) = wallet::default_wallet()?
    {
        let note = format!("paying to wallet {wallet} {address}");
        if json_out {
            eprintln!("{note}");
        } else {
            outln!("{note}")?;
        }
        defaults.pay_to = Some(address.to_string());
    }
    let mut offer = draft.offer(payment, &defaults)?;
    shape(&mut offer);
    create(&client, offer, wait, json_out).await
}

async fn create(
    client: &AdminClient,
    offer: ServiceOffer,
    wait: Option<u64>,
    json_out: bool,
) -> anyhow::Result<Sold> {
    let name = offer.metadata.name.clone();
    let answer = put(client, &offer).await?;
    let stored = answer.offer;
    let change = change_text(answer.change);
    let resolved = resolve(&stored)?;
    if !json_out {
        outln!(
            "ServiceOffer {name} {change} (type: {})",
            resolved.offer_type.as_str()
        )?;
        outln!(
            "Accepted payments: {} on {} to {}",
            resolved.price_text(),
            resolved.network.v1_name(),
            resolved.pay_to
        )?;
        outln!(
            "The daemon will reconcile: model → upstream health → payment gate → route → registration"
        )?;
    }
    let final_offer = match wait {
        Some(seconds) => {
            Some(wait_ready(client, &name, Duration::from_secs(seconds), json_out).await?)
        }
        None => {
            if !json_out {
                outln!("Check status: agora sell status {name}")?;
            }
            None
        }
    };
    let offer = final_offer.unwrap_or(stored);
    Ok(Sold {
        change,
        ready: offer.is_ready(),
        offer,
    })
}

/// Polls until Ready, showing each condition the first time it turns True (and, on a
/// terminal, a spinner naming the stage awaited); `quiet` shows nothing.
pub async fn wait_ready(
    client: &AdminClient,
    name: &str,
    limit: Duration,
    quiet: bool,
) -> anyhow::Result<ServiceOffer> {
    // A limit too long to add to the clock (`--wait 99999999999999`) waits forever
    // rather than panicking.
    let deadline = tokio::time::Instant::now().checked_add(limit);
    let progress = Progress::new(quiet);
    let mut shown = Vec::new();
    loop {
        client.reconcile().await?;
        let (offer, _) = fetch(client, name).await?;
        for c in &offer.status.conditions {
            if c.status.as_str() == "True" && !shown.contains(&c.kind) {
                shown.push(c.kind.clone());
                progress.step(&format!(
                    "  {} {:<17} {}",
                    icon(c.status.as_str(), &c.reason),
                    c.kind,
                    c.message
                ))?;
            }
        }
        if offer.is_ready() {
            return Ok(offer);
        }
        let pending = offer
            .status
            .conditions
            .iter()
            .find(|c| c.status.as_str() != "True");
        if let Some(c) = pending {
            progress.waiting_for(&format!("{name}: waiting for {} ({})", c.kind, c.reason));
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            let stuck = pending
                .map(|c| format!("{} is {} ({}): {}", c.kind, c.status, c.reason, c.message))
                .unwrap_or_else(|| "no conditions yet".into());
            bail!("{name} is not Ready after {}s: {stuck}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
