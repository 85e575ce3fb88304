//! `agora sell ...`: what a seller types. Each command builds or changes a
//! ServiceOffer and hands it to the daemon over its admin socket, starting the daemon
//! in the background when none runs.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use offers::spec::{
    LimitsSpec, ModelSpec, OfferSpec, PaymentSpec, PriceSpec, RegistrationSpec, UpstreamSpec,
};
use offers::validate::{
    ResolvedOffer, format_duration, parse_duration, parse_price, parse_wallet, resolve,
};
use offers::{OfferName, OfferType, STAGES, ServiceOffer};
use serde_json::{Value, json};

use crate::admin_client::AdminClient;
use crate::daemon::socket_path;
use crate::home;
use crate::serve_cmd;

/// Default inference skill and domain (OASF v0.8.0), as the reference uses.
const INFERENCE_SKILL: &str =
    "natural_language_processing/natural_language_generation/text_completion";
const INFERENCE_DOMAIN: &str = "technology/data_science";

/// Decimals of USDC, the default asset, for checking price flags before the offer exists.
const USDC_DECIMALS: u8 = 6;

/// `agora sell` and its subcommands.
#[derive(Debug, Args)]
pub struct SellArgs {
    #[command(subcommand)]
    command: SellCommand,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum SellCommand {
    /// Sell any HTTP service behind the x402 gate.
    Http(HttpArgs),
    /// Sell a local model server (Ollama, vLLM, llama.cpp, LiteLLM; detected if not given).
    Inference(InferenceArgs),
    /// List offers with their readiness.
    List,
    /// Show an offer's conditions, public URL, price and recent events.
    Status(NameArg),
    /// Change an offer's price, recipient or network.
    Update(UpdateArgs),
    /// Stop selling: drain the route for --grace, then remove it.
    Stop(StopArgs),
    /// Delete an offer (asks first unless --yes).
    Delete(DeleteArgs),
    /// Show or set the defaults: recipient, network, facilitator.
    Pricing(PricingArgs),
    /// Print an offer as a manifest.
    Get(GetArgs),
    /// Create or update offers from a ServiceOffer manifest (YAML or JSON; - for stdin).
    Apply(ApplyArgs),
    /// Check that an offer answers with a correct x402 challenge (optionally pay once).
    Probe(ProbeArgs),
    /// Register (or update) this seller's agent on the ERC-8004 Identity Registry now.
    Register,
}

#[derive(Debug, Args)]
struct NameArg {
    /// Offer name.
    name: String,
}

#[derive(Debug, Clone, Args)]
struct PriceArgs {
    /// Price per request in USDC (same as --per-request).
    #[arg(long, value_name = "USDC")]
    price: Option<String>,
    /// Price per request in USDC.
    #[arg(long, value_name = "USDC")]
    per_request: Option<String>,
    /// Price per million tokens (charged as 1000 tokens per request).
    #[arg(long = "per-mtok", value_name = "USDC")]
    per_mtok: Option<String>,
    /// Price per hour (charged as 5 minutes per request).
    #[arg(long, value_name = "USDC")]
    per_hour: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct PaymentArgs {
    /// Recipient of the payments [env: X402_WALLET; default: agora sell pricing].
    #[arg(long, visible_aliases = ["recipient", "wallet"], short = 'w', value_name = "ADDR")]
    pay_to: Option<String>,
    /// Network to be paid on [default: agora sell pricing, else base-sepolia].
    #[arg(long, visible_alias = "chain", value_name = "NAME")]
    network: Option<String>,
    /// Longest validity of a buyer's authorization, seconds.
    #[arg(long, default_value_t = 300)]
    max_timeout: u64,
}

#[derive(Debug, Clone, Args)]
struct RegisterArgs {
    /// Do not list the offer on the ERC-8004 registry.
    #[arg(long)]
    no_register: bool,
    /// Agent name in the registration.
    #[arg(long, value_name = "NAME")]
    register_name: Option<String>,
    /// What the service does.
    #[arg(long, visible_alias = "register-description", value_name = "TEXT")]
    description: Option<String>,
    /// Image URL for the registration.
    #[arg(long, value_name = "URL")]
    register_image: Option<String>,
    /// OASF v0.8.0 skill (repeatable), e.g. devops_mlops/model_versioning.
    #[arg(long = "register-skills", value_name = "SKILL")]
    skills: Vec<String>,
    /// OASF v0.8.0 domain (repeatable), e.g. technology/data_science.
    #[arg(long = "register-domains", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Published metadata key=value (repeatable).
    #[arg(long = "register-metadata", value_name = "K=V")]
    metadata: Vec<String>,
}

#[derive(Debug, Clone, Args)]
struct LimitArgs {
    /// Requests per second admitted.
    #[arg(long)]
    rps: Option<u32>,
    /// Paid calls at the upstream at once.
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Public path [default: /services/<name>].
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
}

#[derive(Debug, Args)]
struct HttpArgs {
    /// Offer name (lowercase letters, digits, hyphens).
    name: Option<String>,
    /// The service's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, short = 'u', value_name = "URL")]
    upstream: Option<String>,
    /// Path checked by UpstreamHealthy (served free).
    #[arg(long, default_value = "/health")]
    health_path: String,
    #[command(flatten)]
    price: PriceArgs,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    register: RegisterArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Wait until the offer is Ready, showing each stage (seconds).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
}

#[derive(Debug, Args)]
struct InferenceArgs {
    /// Offer name (lowercase letters, digits, hyphens).
    name: Option<String>,
    /// Model id as the server lists it (detected when the server has exactly one).
    #[arg(long)]
    model: Option<String>,
    /// The model server's base URL [default: detected on 11434, 8000, 8080, 4000].
    #[arg(long, short = 'u', value_name = "URL")]
    upstream: Option<String>,
    #[command(flatten)]
    price: PriceArgs,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    register: RegisterArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Wait until the offer is Ready, showing each stage (seconds).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// Offer name.
    name: String,
    #[command(flatten)]
    price: PriceArgs,
    /// New recipient.
    #[arg(long, visible_aliases = ["recipient", "wallet"], value_name = "ADDR")]
    pay_to: Option<String>,
    /// New network.
    #[arg(long, visible_alias = "chain", value_name = "NAME")]
    network: Option<String>,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// Offer name.
    name: String,
    /// How long the route keeps serving (e.g. 1h, 30m, 0s).
    #[arg(long, default_value = "1h")]
    grace: String,
    /// Stop now (grace 0).
    #[arg(long, visible_alias = "force")]
    now: bool,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// Offer name.
    name: String,
    /// Do not ask.
    #[arg(long, short = 'y', visible_aliases = ["force"])]
    yes: bool,
}

#[derive(Debug, Args)]
struct PricingArgs {
    /// Default recipient.
    #[arg(long, visible_aliases = ["recipient", "wallet"], value_name = "ADDR")]
    pay_to: Option<String>,
    /// Default network.
    #[arg(long, visible_alias = "chain", value_name = "NAME")]
    network: Option<String>,
    /// Facilitator URL for daemons started later.
    #[arg(long, env = "X402_FACILITATOR_URL", value_name = "URL")]
    facilitator_url: Option<String>,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Offer name.
    name: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = ["yaml", "json"], default_value = "yaml")]
    output: String,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// Manifest file (YAML or JSON), or - for stdin; several documents separated by ---.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Offer name.
    name: String,
    /// Probe the local gateway instead of the public URL.
    #[arg(long)]
    local: bool,
    /// Also send one real paid request.
    #[arg(long)]
    paid: bool,
    /// Buyer key file (mode 0600) for --paid [default: AGORA_BUYER_KEY].
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

/// Runs one `agora sell` command.
pub async fn run(args: SellArgs) -> anyhow::Result<()> {
    let json_out = args.json;
    match args.command {
        SellCommand::Http(a) => http(a, json_out).await,
        SellCommand::Inference(a) => inference(a, json_out).await,
        SellCommand::List => list(json_out).await,
        SellCommand::Status(a) => status(&a.name, json_out).await,
        SellCommand::Update(a) => update(a, json_out).await,
        SellCommand::Stop(a) => stop(a, json_out).await,
        SellCommand::Delete(a) => delete(a, json_out).await,
        SellCommand::Pricing(a) => pricing(a, json_out).await,
        SellCommand::Get(a) => get(a).await,
        SellCommand::Apply(a) => apply(a, json_out).await,
        SellCommand::Probe(a) => probe(a, json_out).await,
        SellCommand::Register => register(json_out).await,
    }
}

/// Connects to the daemon, starting one in the background when none answers.
async fn daemon(json_out: bool) -> anyhow::Result<AdminClient> {
    let home = home::agora_home()?;
    let client = AdminClient::new(&socket_path(&home));
    if client.is_up().await {
        return Ok(client);
    }
    let args = serve_defaults();
    let started = serve_cmd::start_background(&home, &args).await?;
    if !json_out {
        eprintln!(
            "started the agora daemon in the background (gateway {}, facilitator {}, log {})",
            started["gatewayUrl"].as_str().unwrap_or("?"),
            started["facilitator"].as_str().unwrap_or("?"),
            started["log"].as_str().unwrap_or("?"),
        );
    }
    Ok(client)
}

fn serve_defaults() -> serve_cmd::ServeArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: serve_cmd::ServeArgs,
    }
    Wrapper::parse_from(["agora"]).serve
}

fn price_spec(p: &PriceArgs, per_hour_allowed: bool) -> anyhow::Result<PriceSpec> {
    // Checked as USDC (6 decimals) here for a flag-named message; the daemon checks
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

async fn payment_spec(
    client: &AdminClient,
    p: &PaymentArgs,
    price: PriceSpec,
) -> anyhow::Result<PaymentSpec> {
    let defaults = client.request("GET", "/v1/settings", None).await?.ok()?;
    let pay_to = p
        .pay_to
        .clone()
        .or_else(|| std::env::var("X402_WALLET").ok().filter(|v| !v.is_empty()))
        .or_else(|| defaults["payTo"].as_str().map(str::to_string))
        .context("recipient required: use --pay-to <addr> or set X402_WALLET")?;
    parse_wallet(&pay_to)?;
    let network = p
        .network
        .clone()
        .or_else(|| defaults["network"].as_str().map(str::to_string))
        .unwrap_or_else(|| "base-sepolia".to_string());
    x402::Network::parse(&network).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(PaymentSpec {
        network,
        pay_to,
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
    })
}

/// The spec both `sell http` and `sell inference` write.
fn spec_for(
    offer_type: OfferType,
    model: Option<ModelSpec>,
    upstream: UpstreamSpec,
    limits: &LimitArgs,
    payment: PaymentSpec,
    registration: RegistrationSpec,
) -> OfferSpec {
    OfferSpec {
        offer_type,
        model,
        upstream,
        path: limits.path.clone(),
        payment,
        registration: Some(registration),
        limits: limits_spec(limits),
        ..OfferSpec::default()
    }
}

fn name_or(name: Option<String>, usage: &str) -> anyhow::Result<OfferName> {
    let name = name.with_context(|| format!("name required: {usage}"))?;
    Ok(OfferName::parse(&name)?)
}

async fn http(a: HttpArgs, json_out: bool) -> anyhow::Result<()> {
    let name = name_or(
        a.name,
        "agora sell http <name> --upstream <url> --per-request <price>",
    )?;
    let upstream = a
        .upstream
        .context("upstream required: use --upstream <url> (e.g. http://127.0.0.1:8080)")?;
    let price = price_spec(&a.price, true)?;
    let registration = registration_spec(&a.register, name.as_str(), None)?;
    let client = daemon(json_out).await?;
    let payment = payment_spec(&client, &a.payment, price).await?;
    let upstream = UpstreamSpec {
        url: Some(upstream),
        health_path: Some(a.health_path),
        ..UpstreamSpec::default()
    };
    let spec = spec_for(
        OfferType::Http,
        None,
        upstream,
        &a.limits,
        payment,
        registration,
    );
    create(
        &client,
        ServiceOffer::new(name.as_str(), spec),
        a.wait,
        json_out,
    )
    .await
}

async fn inference(a: InferenceArgs, json_out: bool) -> anyhow::Result<()> {
    let name = name_or(
        a.name,
        "agora sell inference <name> --model <model> --price <price>",
    )?;
    let price = price_spec(&a.price, false)?;
    let registration = registration_spec(
        &a.register,
        name.as_str(),
        Some((INFERENCE_SKILL, INFERENCE_DOMAIN)),
    )?;
    let detected = match &a.upstream {
        Some(url) => crate::detect::inspect(url).await?,
        None => crate::detect::detect().await?,
    };
    let model = match a.model {
        Some(m) => m,
        None => match detected.models.as_slice() {
            [only] => {
                if !json_out {
                    eprintln!("using model {only}, the only one {} serves", detected.url);
                }
                only.clone()
            }
            [] => bail!(
                "--model is required: {} lists no models yet (load or pull one first)",
                detected.url
            ),
            many => bail!(
                "--model is required: {} serves {}; pass --model with one of them",
                detected.url,
                many.join(", ")
            ),
        },
    };
    let client = daemon(json_out).await?;
    let payment = payment_spec(&client, &a.payment, price).await?;
    let model = Some(ModelSpec {
        name: model,
        runtime: Some(detected.runtime.to_string()),
    });
    let upstream = UpstreamSpec {
        url: Some(detected.url.clone()),
        health_path: Some(detected.health_path.to_string()),
        ..UpstreamSpec::default()
    };
    let spec = spec_for(
        OfferType::Inference,
        model,
        upstream,
        &a.limits,
        payment,
        registration,
    );
    create(
        &client,
        ServiceOffer::new(name.as_str(), spec),
        a.wait,
        json_out,
    )
    .await
}

async fn create(
    client: &AdminClient,
    offer: ServiceOffer,
    wait: Option<u64>,
    json_out: bool,
) -> anyhow::Result<()> {
    let name = offer.metadata.name.clone();
    let answer = client.put_offer(&offer).await?;
    let stored: ServiceOffer = serde_json::from_value(answer["offer"].clone())?;
    let change = answer["change"].as_str().unwrap_or("updated").to_string();
    let resolved = resolve(&stored)?;
    if !json_out {
        println!(
            "ServiceOffer {name} {change} (type: {})",
            resolved.offer_type.as_str()
        );
        println!(
            "Accepted payments: {} on {} to {}",
            resolved.price_text(),
            resolved.network.v1_name(),
            resolved.pay_to
        );
        println!(
            "The daemon will reconcile: model → upstream health → payment gate → route → registration"
        );
    }
    let final_offer = match wait {
        Some(seconds) => {
            Some(wait_ready(client, &name, Duration::from_secs(seconds), json_out).await?)
        }
        None => {
            if !json_out {
                println!("Check status: agora sell status {name}");
            }
            None
        }
    };
    if json_out {
        let offer = final_offer.unwrap_or(stored);
        println!(
            "{}",
            json!({ "change": change, "offer": offer, "ready": offer.is_ready() })
        );
    }
    Ok(())
}

/// Polls until Ready, printing each condition the first time it turns True.
pub(crate) async fn wait_ready(
    client: &AdminClient,
    name: &str,
    limit: Duration,
    json_out: bool,
) -> anyhow::Result<ServiceOffer> {
    // A limit too long to add to the clock (`--wait 99999999999999`) waits forever
    // rather than panicking.
    let deadline = tokio::time::Instant::now().checked_add(limit);
    let mut shown = Vec::new();
    loop {
        client.request("POST", "/v1/reconcile", None).await?.ok()?;
        let answer = client
            .request("GET", &format!("/v1/offers/{name}"), None)
            .await?
            .ok()?;
        let offer: ServiceOffer = serde_json::from_value(answer["offer"].clone())?;
        for c in &offer.status.conditions {
            if c.status == "True" && !shown.contains(&c.kind) {
                shown.push(c.kind.clone());
                if !json_out {
                    println!(
                        "  {} {:<17} {}",
                        icon(&c.status, &c.reason),
                        c.kind,
                        c.message
                    );
                }
            }
        }
        if offer.is_ready() {
            return Ok(offer);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            let stuck = offer
                .status
                .conditions
                .iter()
                .find(|c| c.status != "True")
                .map(|c| format!("{} is {} ({}): {}", c.kind, c.status, c.reason, c.message))
                .unwrap_or_else(|| "no conditions yet".into());
            bail!("{name} is not Ready after {}s: {stuck}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn icon(status: &str, reason: &str) -> &'static str {
    match (status, reason) {
        ("True", "Skipped" | "Disabled") => "ℹ",
        ("True", _) => "✓",
        ("False", _) => "⚠",
        _ => "⏳",
    }
}

async fn list(json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let offers: Vec<ServiceOffer> =
        serde_json::from_value(client.request("GET", "/v1/offers", None).await?.ok()?)?;
    if json_out {
        println!("{}", serde_json::to_string(&offers)?);
        return Ok(());
    }
    if offers.is_empty() {
        println!(
            "No offers. Sell something with: agora sell http <name> --upstream <url> --per-request <price>"
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<36} {:<16} READY",
        "NAME", "TYPE", "PRICE", "NETWORK"
    );
    for offer in &offers {
        let (price, network) = match resolve(offer) {
            Ok(r) => (r.price_text(), r.network.v1_name()),
            Err(e) => (format!("invalid: {e}"), offer.spec.payment.network.clone()),
        };
        let price: String = price.chars().take(36).collect();
        let ready = offer
            .condition("Ready")
            .map_or("Unknown", |c| c.status.as_str());
        println!(
            "{:<20} {:<10} {:<36} {:<16} {ready}",
            offer.metadata.name,
            offer.spec.offer_type.as_str(),
            price,
            network
        );
    }
    Ok(())
}

async fn fetch(client: &AdminClient, name: &str) -> anyhow::Result<(ServiceOffer, Value)> {
    let answer = client
        .request("GET", &format!("/v1/offers/{name}"), None)
        .await?
        .ok()?;
    Ok((
        serde_json::from_value(answer["offer"].clone())?,
        answer["events"].clone(),
    ))
}

async fn status(name: &str, json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    let info = client.request("GET", "/v1/status", None).await?.ok()?;
    let (offer, events) = fetch(&client, name).await?;
    let resolved = resolve(&offer).ok();
    let public = info["publicUrl"].as_str().unwrap_or_default();
    let url = offer
        .status
        .endpoint
        .as_ref()
        .map(|p| format!("{public}{p}"));
    if json_out {
        println!(
            "{}",
            json!({
                "offer": offer,
                "url": url,
                "price": resolved.as_ref().map(ResolvedOffer::price_text),
                "ready": offer.is_ready(),
                "events": events,
            })
        );
        return Ok(());
    }
    println!(
        "ServiceOffer: {} ({})",
        offer.metadata.name,
        offer.spec.offer_type.as_str()
    );
    println!(
        "Endpoint:     {}",
        url.as_deref().unwrap_or("(not published yet)")
    );
    if let Some(r) = &resolved {
        println!(
            "Network:      {} ({})",
            r.network.v1_name(),
            r.network.caip2()
        );
        println!("Asset:        {} ({})", r.asset.symbol, r.asset.address);
        println!("Price:        {}", r.price_text());
        println!("Pay To:       {}", r.pay_to);
    }
    println!(
        "Agent ID:     {}",
        offer.status.agent_id.as_deref().unwrap_or("-")
    );
    println!("Conditions:");
    for kind in STAGES {
        match offer.condition(kind) {
            Some(c) => println!(
                "  {} {:<17} {:<20} {}",
                icon(&c.status, &c.reason),
                c.kind,
                c.reason,
                c.message
            ),
            None => println!("  ⏳ {kind:<17} {:<20} not reconciled yet", "Pending"),
        }
    }
    if let Some(events) = events.as_array().filter(|e| !e.is_empty()) {
        println!("Recent events:");
        for e in events.iter().rev().take(8).rev() {
            println!(
                "  {} {:<9} {}",
                e["at"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn update(a: UpdateArgs, json_out: bool) -> anyhow::Result<()> {
    if !has_price(&a.price) && a.pay_to.is_none() && a.network.is_none() {
        bail!(
            "nothing to update: pass at least one of --per-request / --per-mtok / --per-hour / --pay-to / --network"
        );
    }
    let client = daemon(json_out).await?;
    let (mut offer, _) = fetch(&client, &a.name).await?;
    if has_price(&a.price) {
        offer.spec.payment.price = price_spec(&a.price, true)?;
    }
    if let Some(pay_to) = a.pay_to {
        parse_wallet(&pay_to)?;
        offer.spec.payment.pay_to = pay_to;
    }
    if let Some(network) = a.network {
        offer.spec.payment.network = network;
    }
    let answer = client.put_offer(&offer).await?;
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    let stored: ServiceOffer = serde_json::from_value(answer["offer"].clone())?;
    if json_out {
        println!("{answer}");
    } else {
        println!(
            "ServiceOffer {} {} (generation {}): {}",
            stored.metadata.name,
            answer["change"].as_str().unwrap_or("updated"),
            stored.metadata.generation,
            resolve(&stored).map(|r| r.price_text()).unwrap_or_default()
        );
    }
    Ok(())
}

async fn stop(a: StopArgs, json_out: bool) -> anyhow::Result<()> {
    if a.grace.trim_start().starts_with('-') {
        bail!("--grace must be >= 0");
    }
    let grace = if a.now {
        Duration::ZERO
    } else {
        parse_duration(&a.grace)?
    };
    let client = daemon(json_out).await?;
    let (mut offer, _) = fetch(&client, &a.name).await?;
    offer.spec.drain_at = Some(offers::time::format_rfc3339(x402::eip3009::unix_now()));
    offer.spec.drain_grace_period = Some(format_duration(grace));
    let answer = client.put_offer(&offer).await?;
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    if json_out {
        println!("{answer}");
    } else if grace.is_zero() {
        println!("ServiceOffer {} stopped; its route is removed", a.name);
    } else {
        println!(
            "ServiceOffer {} draining for {}; then its route is removed",
            a.name,
            format_duration(grace)
        );
    }
    Ok(())
}

async fn delete(a: DeleteArgs, json_out: bool) -> anyhow::Result<()> {
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
            println!("Aborted.");
            return Ok(());
        }
    }
    let client = daemon(json_out).await?;
    let answer = client
        .request("DELETE", &format!("/v1/offers/{}", a.name), None)
        .await?
        .ok()?;
    if json_out {
        println!("{answer}");
    } else {
        println!("ServiceOffer {} deleted", a.name);
    }
    Ok(())
}

async fn pricing(a: PricingArgs, json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let current = if a.pay_to.is_some() || a.network.is_some() || a.facilitator_url.is_some() {
        let body =
            json!({ "payTo": a.pay_to, "network": a.network, "facilitator": a.facilitator_url });
        client
            .request("PUT", "/v1/settings", Some(&body))
            .await?
            .ok()?
    } else {
        client.request("GET", "/v1/settings", None).await?.ok()?
    };
    if json_out {
        println!("{current}");
    } else {
        let show = |k: &str, fallback: &str| {
            current[k]
                .as_str()
                .map_or_else(|| format!("(unset, {fallback})"), str::to_string)
        };
        println!(
            "x402 configured: wallet={} chain={} facilitator={}",
            show("payTo", "pass --pay-to"),
            show("network", "base-sepolia"),
            show("facilitator", serve_cmd::DEFAULT_FACILITATOR)
        );
    }
    Ok(())
}

async fn get(a: GetArgs) -> anyhow::Result<()> {
    let client = daemon(true).await?;
    let (offer, _) = fetch(&client, &a.name).await?;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&offer)?);
    } else {
        print!("{}", offer.to_yaml()?);
    }
    Ok(())
}

async fn apply(a: ApplyArgs, json_out: bool) -> anyhow::Result<()> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?
    };
    let client = daemon(json_out).await?;
    let mut results = Vec::new();
    for (i, doc) in text.split("\n---").enumerate() {
        if doc.trim().trim_start_matches("---").trim().is_empty() {
            continue;
        }
        let offer = ServiceOffer::from_manifest(doc).with_context(|| {
            format!(
                "{} document {}: not a ServiceOffer manifest",
                a.file.display(),
                i + 1
            )
        })?;
        if offer.kind != offers::spec::KIND {
            bail!(
                "{} document {}: kind {} is not ServiceOffer",
                a.file.display(),
                i + 1,
                offer.kind
            );
        }
        let answer = client
            .put_offer(&offer)
            .await
            .with_context(|| format!("ServiceOffer {}", offer.metadata.name))?;
        if !json_out {
            println!(
                "ServiceOffer {} {} from {}",
                offer.metadata.name,
                answer["change"].as_str().unwrap_or("updated"),
                a.file.display()
            );
        }
        results.push(answer);
    }
    client.request("POST", "/v1/reconcile", None).await?.ok()?;
    if json_out {
        println!("{}", Value::Array(results));
    }
    Ok(())
}

async fn probe(a: ProbeArgs, json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let info = client.request("GET", "/v1/status", None).await?.ok()?;
    let (offer, _) = fetch(&client, &a.name).await?;
    let resolved = resolve(&offer)?;
    let path = offer.status.endpoint.clone().with_context(|| {
        format!(
            "ServiceOffer {} has no endpoint (not yet reconciled?): see agora sell status {}",
            a.name, a.name
        )
    })?;
    let base = if a.local {
        &info["gatewayUrl"]
    } else {
        &info["publicUrl"]
    };
    let url = format!("{}{path}", base.as_str().unwrap_or_default());
    let expected = resolved.requirement();
    if !json_out {
        println!("Probing {url} ...");
    }
    let report = crate::probe::probe(&url, &expected).await?;
    let paid = if a.paid && report.passed {
        let buyer = crate::facilitator_cmd::load_key(a.key_file.as_deref(), "AGORA_BUYER_KEY")?;
        Some(crate::probe::pay_once(&url, &expected, &buyer).await?)
    } else {
        None
    };
    if json_out {
        println!("{}", json!({ "probe": report, "paid": paid }));
    } else {
        println!("HTTP {}", report.status);
        for c in &report.checks {
            println!(
                "  {} {}: {}",
                if c.ok { "✓" } else { "✗" },
                c.what,
                c.detail
            );
        }
        if report.passed {
            println!("Endpoint is live and payment-gated.");
        }
        if let Some(p) = &paid {
            println!("Paid request: HTTP {}", p.status);
            match &p.receipt {
                Some(r) => println!(
                    "Receipt: success={} payer={} transaction={}",
                    r.success,
                    r.payer.map(|a| a.to_string()).unwrap_or_default(),
                    r.transaction.map(|t| t.to_string()).unwrap_or_default()
                ),
                None => println!("No receipt came back."),
            }
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

async fn register(json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let info = client.request("GET", "/v1/status", None).await?.ok()?;
    let answer = client
        .request("GET", "/v1/registration", None)
        .await?
        .ok()?;
    let document = format!(
        "{}/.well-known/agent-registration.json",
        info["publicUrl"].as_str().unwrap_or_default()
    );
    if answer["onChain"] != true {
        bail!(
            "this daemon has no registry key, so the registration file is only published at {document}; restart it with agora serve --registry-key-file KEY (and --registry-rpc URL) to list it on ERC-8004"
        );
    }
    let Some(agent_id) = answer["agentId"].as_str() else {
        let offers: Vec<ServiceOffer> =
            serde_json::from_value(client.request("GET", "/v1/offers", None).await?.ok()?)?;
        let why = offers
            .iter()
            .filter_map(|o| o.condition("Registered"))
            .map(|c| format!("{} ({})", c.message, c.reason))
            .next()
            .unwrap_or_else(|| "no offer has registration enabled and a published route".into());
        bail!("not registered: {why}");
    };
    if json_out {
        println!("{answer}");
    } else {
        println!(
            "Agent {agent_id} on eip155:{}:{} -> {}",
            answer["agentChainId"].as_str().unwrap_or("?"),
            answer["agentRegistry"].as_str().unwrap_or("?"),
            answer["agentUri"].as_str().unwrap_or("?")
        );
        if let Some(tx) = answer["registrationTx"].as_str() {
            println!("Registration Tx: {tx}");
        }
    }
    Ok(())
}
