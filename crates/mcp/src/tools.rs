//! The tools: their arguments (the JSON schemas the client sees come from these types
//! and their doc comments), the checks on them, and the agora command each one runs.
//! Positionals always follow `--`, so a name the model passes is never read as a flag.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{schemars, tool, tool_router};
use seller::model_server;
use serde::Deserialize;

use crate::checks::{http_url, upstream_allowed};
use crate::runner;
use crate::server::{Agora, ToolResult};

/// Appends `--flag value` when the value is set.
fn opt(args: &mut Vec<String>, flag: &str, value: Option<&str>) {
    if let Some(v) = value {
        args.extend([flag.to_string(), v.to_string()]);
    }
}

/// Appends `--flag value` once per value.
fn each(args: &mut Vec<String>, flag: &str, values: &[String]) {
    for v in values {
        opt(args, flag, Some(v));
    }
}

/// Appends `--flag` when set.
fn flag(args: &mut Vec<String>, flag: &str, on: Option<bool>) {
    if on == Some(true) {
        args.push(flag.to_string());
    }
}

/// The price and payment terms shared by `sell_http` and `sell_inference`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Terms {
    /// Price per request in USDC, e.g. "0.001" (give exactly one price).
    per_request: Option<String>,
    /// Price per million tokens in USDC (charged as 1000 tokens per request).
    per_mtok: Option<String>,
    /// Price per hour in USDC (charged as 5 minutes per request).
    per_hour: Option<String>,
    /// Recipient address [default: agora sell pricing, else the default wallet].
    pay_to: Option<String>,
    /// Network, e.g. base-sepolia.
    network: Option<String>,
    /// Do not list the offer on the ERC-8004 registry.
    no_register: Option<bool>,
    /// What the service does (published in the registration).
    description: Option<String>,
    /// OASF skills, e.g. natural_language_processing/natural_language_generation/text_completion.
    skills: Option<Vec<String>>,
    /// OASF domains, e.g. technology/data_science.
    domains: Option<Vec<String>>,
    /// Wait this many seconds for the offer to be Ready.
    wait_seconds: Option<u64>,
}

impl Terms {
    fn push(&self, args: &mut Vec<String>) {
        opt(args, "--per-request", self.per_request.as_deref());
        opt(args, "--per-mtok", self.per_mtok.as_deref());
        opt(args, "--per-hour", self.per_hour.as_deref());
        opt(args, "--pay-to", self.pay_to.as_deref());
        opt(args, "--network", self.network.as_deref());
        flag(args, "--no-register", self.no_register);
        opt(args, "--description", self.description.as_deref());
        each(
            args,
            "--register-skills",
            self.skills.as_deref().unwrap_or_default(),
        );
        each(
            args,
            "--register-domains",
            self.domains.as_deref().unwrap_or_default(),
        );
        let wait = self.wait_seconds.map(|w| w.to_string());
        opt(args, "--wait", wait.as_deref());
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct SellHttp {
    /// Offer name (lowercase letters, digits, hyphens).
    name: String,
    /// The service's base URL, e.g. http://127.0.0.1:8080.
    upstream: String,
    /// Path checked for health (served free) [default: /health].
    health_path: Option<String>,
    #[serde(flatten)]
    terms: Terms,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct SellInference {
    /// Offer name [default: from the model].
    name: Option<String>,
    /// Model id as the server lists it [default: detected when it serves one].
    model: Option<String>,
    /// The model server's base URL [default: detected on 11434, 8000, 8080, 4000].
    upstream: Option<String>,
    #[serde(flatten)]
    terms: Terms,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Name {
    /// Offer name.
    name: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Probe {
    /// Offer name.
    name: String,
    /// Probe the local gateway instead of the public URL.
    local: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Stop {
    /// Offer name.
    name: String,
    /// How long the route keeps serving, e.g. 1h, 30m, 0s [default: 1h].
    grace: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Delete {
    /// Offer name.
    name: String,
    /// Must be true: deleting cannot be undone, so the user must have said yes.
    confirm: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Research {
    /// Only agents with this OASF skill (exact or prefix/*).
    skill: Option<String>,
    /// The model to be sold (e.g. llama3.1:8b): offers of its size are compared.
    model: Option<String>,
    /// Indexer URL [default: AGORA_INDEXER, else a local agora index].
    indexer: Option<String>,
    /// Scan the registry over this RPC when no indexer answers.
    rpc: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Discover {
    /// OASF skills, exact or prefix/* (all must match).
    skills: Option<Vec<String>>,
    /// OASF domains, exact or prefix/* (all must match).
    domains: Option<Vec<String>>,
    /// Text in the name or description.
    search: Option<String>,
    /// Only agents that accept x402 payments.
    x402: Option<bool>,
    /// Ask each endpoint for its live 402 price.
    probe: Option<bool>,
    /// Indexer URL.
    indexer: Option<String>,
    /// Scan the registry over this RPC when no indexer answers.
    rpc: Option<String>,
    /// Most agents to list [default: 20].
    limit: Option<u32>,
    /// Most USDC to pay an x402-gated indexer for the query.
    max: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Pay {
    /// The URL to call, paying its x402 402.
    url: String,
    /// Most USDC this call may cost, e.g. "0.01" (required; the wallet's per-call and
    /// daily budgets apply too, the lower cap wins).
    max: String,
    /// HTTP method [default: GET, or POST with data].
    method: Option<String>,
    /// Request body, sent byte for byte.
    data: Option<String>,
    /// Request headers, "Name: value".
    headers: Option<Vec<String>>,
    /// Networks the payment may use, e.g. base-sepolia.
    networks: Option<Vec<String>>,
    /// The paying wallet [default: the default wallet].
    wallet: Option<String>,
    /// JSON-RPC URLs to read the wallet's USDC from before signing.
    rpcs: Option<Vec<String>>,
    /// Show the price and what would be signed; pay nothing.
    dry_run: Option<bool>,
    /// Send again the open payment for this URL (the same authorization, nothing new
    /// signed), e.g. after an answer was lost.
    resume: Option<bool>,
    /// Sign a new payment although one for this URL is still open (both may be
    /// charged). Only when the user said so.
    new: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Balance {
    /// Wallet name [default: the default wallet].
    name: Option<String>,
    /// Network, e.g. base-sepolia.
    network: Option<String>,
    /// JSON-RPC endpoint.
    rpc: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Doctor {
    /// JSON-RPC the wallet's balances are read from.
    rpc: Option<String>,
    /// Network the seller is paid on, e.g. base-sepolia.
    network: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Nothing {}

#[tool_router(vis = "pub(crate)")]
impl Agora {
    #[tool(
        description = "Sell an HTTP service behind the x402 gate (agora sell http). Ask the user to confirm the price first."
    )]
    async fn sell_http(&self, Parameters(p): Parameters<SellHttp>) -> ToolResult {
        if let Err(why) = upstream_allowed(&p.upstream).await {
            return Ok(runner::failure(why, Some(2), None));
        }
        let mut args = vec![
            "sell".into(),
            "http".into(),
            "--upstream".into(),
            p.upstream,
        ];
        opt(&mut args, "--health-path", p.health_path.as_deref());
        p.terms.push(&mut args);
        args.extend(["--json".into(), "--".into(), p.name]);
        self.agora(args).await
    }

    #[tool(
        description = "Sell a local model server behind the x402 gate (agora sell inference). Ask the user to confirm the price first."
    )]
    async fn sell_inference(&self, Parameters(p): Parameters<SellInference>) -> ToolResult {
        if let Some(upstream) = &p.upstream {
            match upstream_allowed(upstream).await {
                Err(why) => return Ok(runner::failure(why, Some(2), None)),
                // A loopback port is sold only when it is a model server.
                Ok(true) => {
                    if let Err(e) = model_server::inspect(upstream).await {
                        return Ok(runner::failure(
                            format!(
                                "upstream {upstream:?} is on this machine but not a model server agora recognises ({}); sell_inference sells only Ollama or OpenAI-compatible servers (leave upstream out to detect one), sell_http sells other services",
                                with_sources(&e)
                            ),
                            Some(2),
                            None,
                        ));
                    }
                }
                Ok(false) => {}
            }
        }
        let mut args = vec!["sell".into(), "inference".into()];
        opt(&mut args, "--model", p.model.as_deref());
        opt(&mut args, "--upstream", p.upstream.as_deref());
        p.terms.push(&mut args);
        args.push("--json".into());
        if let Some(name) = p.name {
            args.extend(["--".into(), name]);
        }
        self.agora(args).await
    }

    #[tool(description = "List offers with their price and readiness (agora sell list).")]
    async fn sell_list(&self, Parameters(_): Parameters<Nothing>) -> ToolResult {
        self.agora(vec!["sell".into(), "list".into(), "--json".into()])
            .await
    }

    #[tool(
        description = "An offer's conditions, public URL, price and recent events (agora sell status)."
    )]
    async fn sell_status(&self, Parameters(p): Parameters<Name>) -> ToolResult {
        self.agora(vec![
            "sell".into(),
            "status".into(),
            "--json".into(),
            "--".into(),
            p.name,
        ])
        .await
    }

    #[tool(
        description = "Check that an offer answers with a correct unpaid x402 challenge (agora sell probe)."
    )]
    async fn sell_probe(&self, Parameters(p): Parameters<Probe>) -> ToolResult {
        let mut args = vec!["sell".into(), "probe".into(), "--json".into()];
        flag(&mut args, "--local", p.local);
        args.extend(["--".into(), p.name]);
        self.agora(args).await
    }

    #[tool(description = "Stop selling an offer after a grace period (agora sell stop).")]
    async fn sell_stop(&self, Parameters(p): Parameters<Stop>) -> ToolResult {
        let mut args = vec!["sell".into(), "stop".into(), "--json".into()];
        opt(&mut args, "--grace", p.grace.as_deref());
        args.extend(["--".into(), p.name]);
        self.agora(args).await
    }

    #[tool(
        description = "Delete an offer (agora sell delete). Refused unless confirm is true: ask the user first."
    )]
    async fn sell_delete(&self, Parameters(p): Parameters<Delete>) -> ToolResult {
        if p.confirm != Some(true) {
            return Ok(runner::failure(
                format!(
                    "deleting offer {} needs confirm: true; ask the user, then call sell_delete again with confirm: true (or use sell_stop to stop it gracefully)",
                    p.name
                ),
                None,
                None,
            ));
        }
        self.agora(vec![
            "sell".into(),
            "delete".into(),
            "--yes".into(),
            "--json".into(),
            "--".into(),
            p.name,
        ])
        .await
    }

    #[tool(
        description = "What comparable offers on the ERC-8004 registry charge: min, median, max per request, per MTok and per hour, bucketed by model size, with a recommended price and its reasoning (agora sell pricing --research). Applies nothing."
    )]
    async fn pricing_research(&self, Parameters(p): Parameters<Research>) -> ToolResult {
        let mut args = vec![
            "sell".into(),
            "pricing".into(),
            "--research".into(),
            "--json".into(),
        ];
        opt(&mut args, "--skill", p.skill.as_deref());
        opt(&mut args, "--model", p.model.as_deref());
        opt(&mut args, "--indexer", p.indexer.as_deref());
        opt(&mut args, "--rpc", p.rpc.as_deref());
        self.agora(args).await
    }

    #[tool(
        description = "Find sellers on the ERC-8004 registry by OASF skill, domain and x402 support (agora discover)."
    )]
    async fn discover(&self, Parameters(p): Parameters<Discover>) -> ToolResult {
        let mut args = vec!["discover".into(), "--json".into()];
        each(
            &mut args,
            "--skill",
            p.skills.as_deref().unwrap_or_default(),
        );
        each(
            &mut args,
            "--domain",
            p.domains.as_deref().unwrap_or_default(),
        );
        opt(&mut args, "--search", p.search.as_deref());
        flag(&mut args, "--x402", p.x402);
        flag(&mut args, "--probe", p.probe);
        opt(&mut args, "--indexer", p.indexer.as_deref());
        opt(&mut args, "--rpc", p.rpc.as_deref());
        let limit = p.limit.map(|l| l.to_string());
        opt(&mut args, "--limit", limit.as_deref());
        opt(&mut args, "--max", p.max.as_deref());
        self.agora(args).await
    }

    #[tool(
        description = "Call a URL and pay its x402 402 from the wallet, never above max nor the wallet's budgets (agora pay). Refusals sign nothing."
    )]
    async fn pay(&self, Parameters(p): Parameters<Pay>) -> ToolResult {
        if p.max.trim().is_empty() {
            return Ok(runner::failure(
                "pay needs max, the most USDC this call may cost, e.g. \"0.01\"; nothing was signed".into(),
                Some(2),
                None,
            ));
        }
        if let Err(why) = http_url("url", &p.url) {
            return Ok(runner::failure(
                format!("{why}; nothing was signed"),
                Some(2),
                None,
            ));
        }
        let mut args = vec!["pay".into(), "--max".into(), p.max, "--json".into()];
        opt(&mut args, "--request", p.method.as_deref());
        if p.data.is_some() {
            args.extend(["--data".into(), "@-".into()]);
        }
        each(
            &mut args,
            "--header",
            p.headers.as_deref().unwrap_or_default(),
        );
        each(
            &mut args,
            "--network",
            p.networks.as_deref().unwrap_or_default(),
        );
        opt(&mut args, "--wallet", p.wallet.as_deref());
        each(&mut args, "--rpc", p.rpcs.as_deref().unwrap_or_default());
        flag(&mut args, "--dry-run", p.dry_run);
        flag(&mut args, "--resume", p.resume);
        flag(&mut args, "--new", p.new);
        args.extend(["--".into(), p.url]);
        self.agora_fed(args, p.data).await
    }

    #[tool(description = "A wallet's address and USDC and ETH balance (agora wallet balance).")]
    async fn wallet_balance(&self, Parameters(p): Parameters<Balance>) -> ToolResult {
        let mut args = vec!["wallet".into(), "balance".into(), "--json".into()];
        opt(&mut args, "--name", p.name.as_deref());
        opt(&mut args, "--network", p.network.as_deref());
        opt(&mut args, "--rpc", p.rpc.as_deref());
        self.agora(args).await
    }

    #[tool(
        description = "Pre-flight for selling (agora doctor): daemon, gateway, public URL, facilitator, wallet USDC and gas, registry key, model servers, offers not Ready; a tool error when a check fails, with the report and each check's fix."
    )]
    async fn doctor(&self, Parameters(p): Parameters<Doctor>) -> ToolResult {
        let mut args = vec!["doctor".into(), "--json".into()];
        opt(&mut args, "--rpc", p.rpc.as_deref());
        opt(&mut args, "--network", p.network.as_deref());
        self.agora(args).await
    }
}

/// `e` and the errors under it, joined with ": " as the CLI prints a chain.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
