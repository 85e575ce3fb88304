//! The doctor checks that ask this machine what it runs: the daemon on its admin socket,
//! the gateway and the public URL buyers reach it by, the registry listing, a model
//! server, and whether every offer is Ready. Kept apart from how the seller is paid
//! (`money.rs`) so each file reads as one question.

use std::net::IpAddr;

use offers::{STAGES, ServiceOffer, Stage};
use reqwest::Url;
use seller::admin::{TunnelStatus, state_name};
use seller::{AdminClient, socket_path};
use serde_json::{Value, json};
use wallet::home;

use super::{CHECK_TIMEOUT, Check, DaemonView};
use crate::detect;

/// Whether a daemon answers on the admin socket, with its status and settings.
pub(super) async fn daemon_check() -> Result<(Check, Option<DaemonView>), Box<Check>> {
    let home = home::agora_home().map_err(|e| {
        Box::new(Check::fail(
            "daemon",
            format!("{e:#}"),
            "export AGORA_HOME=DIR",
        ))
    })?;
    let socket = socket_path(&home);
    let client = AdminClient::new(&socket);
    let info = match client.status().await {
        Ok(info) => info,
        Err(e) => {
            let e = anyhow::Error::new(e);
            return Ok((Check::fail("daemon", format!("{e:#}"), "agora serve"), None));
        }
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
    let log = home::agora_home()
        .map(|h| h.join("logs/serve.log").display().to_string())
        .unwrap_or_else(|_| "the daemon's log".into());
    let gateway_check = match healthz(gateway).await {
        Ok(()) => Check::ok("gateway", format!("answers on {gateway}")),
        Err(e) => Check::fail(
            "gateway",
            format!("{gateway} does not answer /healthz: {e}"),
            format!("read {log}, then restart the daemon: agora serve --stop && agora serve"),
        ),
    };
    let public_check = public_url_check(public, gateway, daemon.info.tunnel.as_ref()).await;
    vec![gateway_check, public_check]
}

/// The URL buyers are given: a tunnel's while one is up, else `--public-url`, else the
/// gateway's own address (reachable from this machine only).
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
                "agora tunnel logs (to see why), then: agora tunnel start",
            );
        }
        Some("starting") => {
            return Check::warn(
                "public_url",
                format!(
                    "the {provider} tunnel is starting; buyers reach the gateway once it is up"
                ),
                "agora tunnel status",
            );
        }
        Some("off") if is_local(public) => {
            return Check::warn(
                "public_url",
                format!(
                    "the {provider} tunnel is off until an offer is Ready; {public} is reachable from this machine only"
                ),
                "agora tunnel start",
            );
        }
        _ => {}
    }
    if public.is_empty() || public == gateway || is_local(public) {
        return Check::warn(
            "public_url",
            format!("{public} is reachable from this machine only; buyers elsewhere cannot pay"),
            "restart the daemon with a tunnel (agora serve --stop && agora serve --tunnel auto) or behind your own proxy (agora serve --stop && agora serve --public-url https://YOUR-HOST)",
        );
    }
    match healthz(public).await {
        Ok(()) => Check::ok("public_url", format!("{public} reaches the gateway")),
        Err(e) => Check::fail(
            "public_url",
            format!("{public} does not reach the gateway: {e}"),
            format!(
                "start the tunnel or proxy that forwards {public} to {gateway} (agora tunnel status), or restart the daemon with: agora serve --stop && agora serve --public-url https://YOUR-HOST"
            ),
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
    let http = reqwest::Client::builder()
        .no_proxy()
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
    let fix = "restart the daemon with a funded key: agora serve --stop && agora serve --registry-key-file PATH --registry-rpc URL";
    if !daemon.info.registry {
        return Check::warn(
            "registry",
            "no registry key: the registration is only served at /.well-known/agent-registration.json, not listed on ERC-8004",
            fix,
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
            .details(serde_json::to_value(&record).unwrap_or_default()),
            None => Check::warn(
                "registry",
                "registry key set, but the agent is not registered yet (the registry key needs gas)",
                "agora sell register",
            ),
        },
        Err(e) => Check::fail(
            "registry",
            format!("{:#}", anyhow::Error::new(e)),
            "agora sell register",
        ),
    }
}

/// A model server on the usual ports, and its models.
pub(super) async fn models_check() -> Check {
    match detect::detect().await {
        Ok(found) if found.models.is_empty() => Check::warn(
            "models",
            format!("{} at {} serves no model", found.runtime, found.url),
            "pull one, e.g.: ollama pull qwen3:8b",
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
        .details(json!([{
            "runtime": found.runtime,
            "url": found.url,
            "models": found.models,
        }])),
        Err(e) => Check::warn(
            "models",
            format!("{e:#}"),
            "start a model server (e.g. ollama serve), or sell an HTTP service: agora sell http NAME --upstream URL --per-request PRICE",
        ),
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
        Err(e) => {
            let e = anyhow::Error::new(e);
            return Check::fail("offers", format!("{e:#}"), "agora sell list");
        }
    };
    if offers.is_empty() {
        return Check::ok(
            "offers",
            "no offers yet (sell one: agora sell http NAME --upstream URL --per-request PRICE)",
        );
    }
    let stuck: Vec<Value> = offers
        .iter()
        .filter(|o| !o.is_ready())
        .map(|o| {
            let (stage, reason, message) = first_problem(o);
            json!({
                "name": o.metadata.name,
                "stage": stage,
                "reason": reason,
                "message": message,
                "fix": stage_fix(o, &stage),
            })
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
                s["name"].as_str().unwrap_or_default(),
                s["stage"].as_str().unwrap_or_default(),
                s["reason"].as_str().unwrap_or_default(),
                s["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let fixes: Vec<&str> = stuck.iter().filter_map(|s| s["fix"].as_str()).collect();
    Check::fail("offers", summary.join("; "), fixes.join("; ")).details(json!(stuck))
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

/// The command that fixes an offer stuck at `stage`.
fn stage_fix(offer: &ServiceOffer, stage: &str) -> String {
    let name = &offer.metadata.name;
    match stage {
        "ModelReady" => {
            let model = offer
                .spec
                .model
                .as_ref()
                .map_or("MODEL", |m| m.name.as_str());
            format!(
                "put the model on the server (ollama pull {model}) or let the daemon pull it: agora serve --pull-models; then agora sell status {name}"
            )
        }
        "UpstreamHealthy" => format!(
            "start the service at {} (health path {}), then: agora sell status {name}",
            offer.spec.upstream.url.as_deref().unwrap_or("its upstream"),
            offer
                .spec
                .upstream
                .health_path
                .as_deref()
                .unwrap_or("/health")
        ),
        "PaymentGateReady" => format!(
            "use a network the facilitator settles (see the facilitator check): agora sell update {name} --network NAME"
        ),
        "RoutePublished" => format!(
            "its path clashes with another offer's or a reserved path: agora sell delete {name}, then sell it again with --path /services/OTHER"
        ),
        _ => format!("wait, then: agora sell status {name}"),
    }
}
