//! `agora mcp`: the CLI as an MCP server over stdio (rmcp), so an agent such as
//! Claude Code can sell, research prices, discover and pay with tools instead of
//! shell lines.
//!
//! Each tool runs this same binary's command with `--json` as a child process, stdin
//! closed and stdout captured. That keeps one implementation of every command (the
//! tool is the CLI, refusals, budgets and ledger included), and it keeps the protocol
//! safe: stdout here carries JSON-RPC only, and no command's printing can reach it. A
//! command's JSON becomes the tool's structured result; a failure becomes a tool
//! error carrying the CLI's own message and exit code. What the commands say on
//! stderr is passed on to this process's stderr, where logs go.
//!
//! The model choosing the arguments may be prompt-injected, so what it passes is
//! checked here as well: positionals follow `--` (never read as flags), URLs must be
//! http(s), and an upstream to sell is never a link-local or cloud-metadata address
//! (169.254.0.0/16, fe80::/10, metadata.google.internal), nor a loopback port that
//! `sell_inference` did not recognise as a model server itself. `sell_http` may sell
//! a loopback service (that is what it is for); the user confirms the offer.

use std::process::Stdio;

use anyhow::Context;
use clap::Args;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::output::outln;

/// Options of `agora mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Print the `.mcp.json` entry and the `claude mcp add` line instead of serving.
    #[arg(long)]
    print_config: bool,
}

/// Serves MCP on stdin/stdout until the client closes it, or prints the config.
pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    if args.print_config {
        let entry = json!({ "mcpServers": { "agora": { "command": "agora", "args": ["mcp"] } } });
        outln!("{}", serde_json::to_string_pretty(&entry)?)?;
        return outln!("claude mcp add agora -- agora mcp");
    }
    let exe = std::env::current_exe().context("cannot find the agora binary to run tools with")?;
    let server = Agora {
        exe,
        tool_router: Agora::tool_router(),
    }
    .serve(rmcp::transport::stdio())
    .await
    .context("the MCP client did not initialize the session on stdin/stdout")?;
    server
        .waiting()
        .await
        .context("the MCP session ended abnormally")?;
    Ok(())
}

/// The MCP server: the binary its tools run, and the tools.
#[derive(Debug, Clone)]
struct Agora {
    exe: std::path::PathBuf,
    tool_router: ToolRouter<Self>,
}

/// A tool's answer: a structured result, or a tool error with the CLI's message.
type ToolResult = Result<CallToolResult, rmcp::ErrorData>;

impl Agora {
    /// Runs `agora ARGS` (with `--json` among them) and turns its outcome into a tool
    /// result.
    async fn agora(&self, args: Vec<String>) -> ToolResult {
        self.agora_fed(args, None).await
    }

    /// [`Agora::agora`] with `input` on the command's stdin (a request body for
    /// `agora pay -d @-`, sent byte for byte, never read as `@FILE`).
    async fn agora_fed(&self, args: Vec<String>, input: Option<String>) -> ToolResult {
        tracing::info!("mcp tool runs: agora {}", args.join(" "));
        let output = run_fed(&self.exe, &args, input).await;
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                return Ok(failure(
                    format!("cannot run agora {}: {e}", args.join(" ")),
                    None,
                    None,
                ));
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            eprint!("{stderr}");
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let parsed = last_json(&stdout);
        if output.status.success() {
            return Ok(CallToolResult::structured(match parsed {
                Some(Value::Object(o)) => Value::Object(o),
                Some(other) => json!({ "items": other }),
                None => json!({ "output": stdout.trim() }),
            }));
        }
        let message = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .map(str::to_string)
            .or_else(|| {
                parsed
                    .as_ref()
                    .and_then(|p| p["error"].as_str().map(str::to_string))
            })
            .unwrap_or_else(|| stderr.trim().to_string());
        Ok(failure(message, output.status.code(), parsed))
    }
}

/// Runs the command to completion, writing `input` to its stdin (else stdin is
/// closed: this process's stdin is the protocol).
async fn run_fed(
    exe: &std::path::Path,
    args: &[String],
    input: Option<String>,
) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that stops reading early says why in its exit status and stderr.
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    child.wait_with_output().await
}

/// `text` as an http(s) URL with a host, or the refusal naming `field`.
fn http_url(field: &str, text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| {
        format!("{field} {text:?} is not a URL ({e}); write e.g. http://127.0.0.1:8080")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{field} {text:?} is not an http(s) URL with a host; write e.g. http://127.0.0.1:8080"
        ));
    }
    Ok(url)
}

/// Whether `ip` is link-local (where cloud metadata services answer) or unspecified.
fn link_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        std::net::IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                // AWS's IPv6 metadata address.
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// Refuses an upstream the model may not sell: not http(s), or link-local or a cloud
/// metadata name (checked on every address the name resolves to). Returns whether it
/// is on loopback, which the caller then checks further.
async fn upstream_allowed(text: &str) -> Result<bool, String> {
    let url = http_url("upstream", text)?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let refused = || {
        format!(
            "upstream {text:?} is a link-local or cloud-metadata address; agora mcp never sells those (they hand out the machine's credentials). Sell the service at its own address, or run agora sell yourself"
        )
    };
    if ["metadata", "metadata.google.internal", "instance-data"].contains(&host.as_str()) {
        return Err(refused());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|found| found.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    if addresses.iter().copied().any(link_local) {
        return Err(refused());
    }
    Ok(host == "localhost" || addresses.iter().any(std::net::IpAddr::is_loopback))
}

/// A tool error: the CLI's message, its exit code and any JSON it printed.
fn failure(message: String, exit_code: Option<i32>, output: Option<Value>) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "error": message,
        "exitCode": exit_code,
        "output": output,
    }))
}

/// The last line of `stdout` that is JSON (`--json` commands print their object last).
fn last_json(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

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

#[tool_router]
impl Agora {
    #[tool(
        description = "Sell an HTTP service behind the x402 gate (agora sell http). Ask the user to confirm the price first."
    )]
    async fn sell_http(&self, Parameters(p): Parameters<SellHttp>) -> ToolResult {
        if let Err(why) = upstream_allowed(&p.upstream).await {
            return Ok(failure(why, Some(2), None));
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
                Err(why) => return Ok(failure(why, Some(2), None)),
                // A loopback port is sold only when it is a model server.
                Ok(true) => {
                    if let Err(e) = crate::detect::inspect(upstream).await {
                        return Ok(failure(
                            format!(
                                "upstream {upstream:?} is on this machine but not a model server agora recognises ({e:#}); sell_inference sells only Ollama or OpenAI-compatible servers (leave upstream out to detect one), sell_http sells other services"
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
            return Ok(failure(
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
            return Ok(failure(
                "pay needs max, the most USDC this call may cost, e.g. \"0.01\"; nothing was signed".into(),
                Some(2),
                None,
            ));
        }
        if let Err(why) = http_url("url", &p.url) {
            return Ok(failure(format!("{why}; nothing was signed"), Some(2), None));
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

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Agora {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agora", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "agora sells this machine's services for x402 payments and buys others'. Never set or change a price without the user's explicit yes: research with pricing_research, show the recommendation, ask, then sell.",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstreams_must_be_http_and_never_link_local_or_metadata() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]:8080",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://0.0.0.0:8080",
            "http://[fd00:ec2::254]/",
            "file:///etc/passwd",
            "127.0.0.1:8080",
            "ftp://127.0.0.1/",
        ] {
            let err = upstream_allowed(bad).await.expect_err(bad);
            assert!(
                err.contains("link-local") || err.contains("http(s)") || err.contains("not a URL"),
                "{bad}: {err}"
            );
        }
        assert_eq!(upstream_allowed("http://127.0.0.1:8080").await, Ok(true));
        assert_eq!(upstream_allowed("http://[::1]:8080").await, Ok(true));
        assert_eq!(upstream_allowed("https://10.0.0.5/api").await, Ok(false));
        assert!(http_url("url", "javascript:alert(1)").is_err());
    }

    #[test]
    fn the_last_json_line_is_the_result() {
        assert_eq!(last_json("started\n{\"a\":1}\n"), Some(json!({"a": 1})));
        assert_eq!(last_json("no json here"), None);
    }
}
