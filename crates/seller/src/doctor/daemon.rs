//! The doctor checks that ask this machine what it runs: the daemon on its admin socket,
//! the gateway and the public URL buyers reach it by, the registry listing, a model
//! server, and whether every offer is Ready. Kept apart from how the seller is paid
//! (`money.rs`) so each file reads as one question.

use std::net::IpAddr;

use offers::{STAGES, ServiceOffer, Stage};
use reqwest::Url;
use wallet::home;

use super::{CHECK_TIMEOUT, Check, DaemonView, Details, Fix, OfferFix, OfferStep, Stuck, chain};
use crate::admin::{TunnelStatus, state_name};
use crate::model_server::Detected;
use crate::{AdminClient, socket_path};

/// Whether a daemon answers on the admin socket, with its status and settings.
pub(super) async fn daemon_check() -> Result<(Check, Option<DaemonView>), Box<Check>> {
    let home = home::agora_home()
        .map_err(|e| Box::new(Check::fail("daemon", format!("{e:#}"), Fix::SetHome)))?;
    let socket = socket_path(&home);
    let client = AdminClient::new(&socket);
    let info = match client.status().await {
        Ok(info) => info,
        Err(e) => return Ok((Check::fail("daemon", chain(&e), Fix::StartDaemon), None)),
    };
    let settings = client.settings().await.unwrap_or_default();
    let check = Check::ok(
        "daemon",
        format!(
            "running (version {}, admin socket {})",
            info.version,
            socket.display()
        ),
    );
    Ok((
        check,
        Some(DaemonView {
            client,
            info,
            settings,
        }),
    ))
}

fn needs_daemon(name: &'static str) -> Check {
    Check::skip(name, "not checked: the daemon is not running")
}

/// The gateway answers on its address, and the public URL buyers are given.
pub(super) async fn gateway_checks(daemon: Option<&DaemonView>) -> Vec<Check> {
    let Some(daemon) = daemon else {
        return vec![needs_daemon("gateway"), needs_daemon("public_url")];
    };
    let gateway = daemon.info.gateway_url.as_str();
    let public = daemon.info.public_url.as_str();
    let gateway_check = match healthz(gateway).await {
        Ok(()) => Check::ok("gateway", format!("answers on {gateway}")),
        Err(e) => Check::fail(
            "gateway",
            format!("{gateway} does not answer /healthz: {e}"),
            Fix::RestartDaemon,
        ),
    };
    let public_check = public_url_check(public, gateway, daemon.info.tunnel.as_ref()).await;
    vec![gateway_check, public_check]
}

/// The URL buyers are given: a tunnel's while one is up, else the daemon's configured
/// public URL, else the gateway's own address (reachable from this machine only).
async fn public_url_check(public: &str, gateway: &str, tunnel: Option<&TunnelStatus>) -> Check {
    let provider = tunnel.map_or("tunnel", |t| t.status.provider.as_str());
    let last_error = tunnel
        .and_then(|t| t.status.last_error.as_deref())
        .unwrap_or("no error recorded");
    match tunnel.map(|t| state_name(t.status.state)) {
        Some("down") => {
            return Check::fail(
                "public_url",
                format!(
                    "the {provider} tunnel is down ({last_error}); buyers cannot reach {public}"
                ),
                Fix::RestartTunnel,
            );
        }
        Some("starting") => {
            return Check::warn(
                "public_url",
                format!(
                    "the {provider} tunnel is starting; buyers reach the gateway once it is up"
                ),
                Fix::WatchTunnel,
            );
        }
        Some("off") if is_local(public) => {
            return Check::warn(
                "public_url",
                format!(
                    "the {provider} tunnel is off until an offer is Ready; {public} is reachable from this machine only"
                ),
                Fix::StartTunnel,
            );
        }
        _ => {}
    }
    if public.is_empty() || public == gateway || is_local(public) {
        return Check::warn(
            "public_url",
            format!("{public} is reachable from this machine only; buyers elsewhere cannot pay"),
            Fix::PublishGateway,
        );
    }
    match healthz(public).await {
        Ok(()) => Check::ok("public_url", format!("{public} reaches the gateway")),
        Err(e) => Check::fail(
            "public_url",
            format!("{public} does not reach the gateway: {e}"),
            Fix::ForwardPublicUrl {
                public: public.into(),
                gateway: gateway.into(),
            },
        ),
    }
}

fn is_local(url: &str) -> bool {
    let Some(host) = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

async fn healthz(base: &str) -> Result<(), String> {
    let http = x402::http::direct()
        .timeout(CHECK_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status().as_u16()))
    }
}

/// Whether the daemon has a registry key and the seller's agent is listed.
pub(super) async fn registry_check(daemon: Option<&DaemonView>) -> Check {
    let Some(daemon) = daemon else {
        return needs_daemon("registry");
    };
    if !daemon.info.registry {
        return Check::warn(
            "registry",
            "no registry key: the registration is only served at /.well-known/agent-registration.json, not listed on ERC-8004",
            Fix::AddRegistryKey,
        );
    }
    match daemon.client.registration().await {
        Ok(record) => match &record.agent_id {
            Some(id) => Check::ok(
                "registry",
                format!(
                    "agent #{id} on chain {}",
                    record.agent_chain_id.as_deref().unwrap_or("?")
                ),
            )
            .details(Details::Registration(record.clone())),
            None => Check::warn(
                "registry",
                "registry key set, but the agent is not registered yet (the registry key needs gas)",
                Fix::Register,
            ),
        },
        Err(e) => Check::fail("registry", chain(&e), Fix::Register),
    }
}

/// The model server found, and its models.
pub(super) fn models_check(found: &Result<Detected, String>) -> Check {
    match found {
        Ok(found) if found.models.is_empty() => Check::warn(
            "models",
            format!("{} at {} serves no model", found.runtime, found.url),
            Fix::PullModel,
        ),
        Ok(found) => Check::ok(
            "models",
            format!(
                "{} at {}: {}",
                found.runtime,
                found.url,
                found.models.join(", ")
            ),
        )
        .details(Details::ModelServer(found.clone())),
        Err(e) => Check::warn("models", e.clone(), Fix::StartModelServer),
    }
}

/// Every offer is Ready; one that is not names its failing stage and the fix.
pub(super) async fn offers_check(daemon: Option<&DaemonView>) -> Check {
    let Some(daemon) = daemon else {
        return needs_daemon("offers");
    };
    // A fresh pass, so a condition fixed a moment ago is not reported.
    let listed = match daemon.client.reconcile().await {
        Ok(_) => daemon.client.offers().await,
        Err(e) => Err(e),
    };
    let offers: Vec<ServiceOffer> = match listed {
        Ok(offers) => offers,
        Err(e) => return Check::fail("offers", chain(&e), Fix::ListOffers),
    };
    if offers.is_empty() {
        return Check::ok("offers", "no offers yet").fix(Fix::SellOffer);
    }
    let stuck: Vec<Stuck> = offers
        .iter()
        .filter(|o| !o.is_ready())
        .map(|o| {
            let (stage, reason, message) = first_problem(o);
            Stuck {
                name: o.metadata.name.clone(),
                fix: offer_fix(o, &stage),
                stage,
                reason,
                message,
            }
        })
        .collect();
    if stuck.is_empty() {
        let names: Vec<&str> = offers.iter().map(|o| o.metadata.name.as_str()).collect();
        return Check::ok("offers", format!("all Ready: {}", names.join(", ")));
    }
    let summary: Vec<String> = stuck
        .iter()
        .map(|s| {
            format!(
                "{} not Ready: {} {} ({})",
                s.name, s.stage, s.reason, s.message
            )
        })
        .collect();
    let fixes = stuck.iter().map(|s| s.fix.clone()).collect();
    Check::fail("offers", summary.join("; "), Fix::Offers(fixes)).details(Details::Offers(stuck))
}

/// The first stage of `offer` that is not True, in stage order.
fn first_problem(offer: &ServiceOffer) -> (String, String, String) {
    for stage in STAGES {
        if stage == Stage::Registered {
            continue; // best-effort: never what keeps an offer from Ready
        }
        match offer.condition(stage) {
            Some(c) if c.status.as_str() == "True" => {}
            Some(c) => return (c.kind.clone(), c.reason.clone(), c.message.clone()),
            None => {
                return (
                    stage.as_str().to_string(),
                    "Pending".into(),
                    "not reconciled yet".into(),
                );
            }
        }
    }
    ("Ready".into(), "Unknown".into(), String::new())
}

/// What unsticks `offer` at `stage`.
fn offer_fix(offer: &ServiceOffer, stage: &str) -> OfferFix {
    let step = match stage {
        "ModelReady" => OfferStep::PullModel {
            model: offer.spec.model.as_ref().map(|m| m.name.clone()),
        },
        "UpstreamHealthy" => OfferStep::StartUpstream {
            url: offer.spec.upstream.url.clone(),
            health_path: offer.spec.upstream.health_path.clone(),
        },
        "PaymentGateReady" => OfferStep::ChangeNetwork,
        "RoutePublished" => OfferStep::ChangePath,
        _ => OfferStep::Wait,
    };
    OfferFix {
        offer: offer.metadata.name.clone(),
        step,
    }
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn loopback_private_and_localhost_urls_are_local() {
        for url in [
            "http://127.0.0.1:8402",
            "http://10.0.0.5/",
            "http://[::1]:8402",
            "http://localhost:8402",
            "http://shop.localhost",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in ["https://shop.example", "http://8.8.8.8/", "not a url"] {
            assert!(!is_local(url), "{url}");
        }
    }
}
