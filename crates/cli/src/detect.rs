//! Finding the local model server to sell: Ollama on 11434, vLLM on 8000, llama.cpp on
//! 8080 and LiteLLM on 4000, recognised by their APIs rather than by port alone.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config;

/// Ports tried, in order, when no `--upstream` is given. `AGORA_INFERENCE_PORTS`
/// (comma-separated) replaces the list, for servers on unusual ports.
pub const DEFAULT_PORTS: [u16; 4] = [11434, 8000, 8080, 4000];

/// A model server that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// Base URL without `/v1`.
    pub url: String,
    /// `ollama`, `vllm`, `llama.cpp`, `litellm` or `openai`.
    pub runtime: &'static str,
    /// Models it lists.
    pub models: Vec<String>,
    /// Path that tells whether it is up.
    pub health_path: &'static str,
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build an HTTP client")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// What kind of server `url` is and which models it serves.
pub async fn inspect(url: &str) -> anyhow::Result<Detected> {
    let http = client()?;
    let base = url
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    if let Some(tags) = get_json(&http, &format!("{base}/api/tags")).await
        && let Some(models) = tags["models"].as_array()
    {
        return Ok(Detected {
            url: base,
            runtime: "ollama",
            models: models
                .iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect(),
            health_path: "/api/tags",
        });
    }
    if let Some(list) = get_json(&http, &format!("{base}/v1/models")).await
        && let Some(data) = list["data"].as_array()
    {
        let models: Vec<String> = data
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        let owned_by = data
            .first()
            .and_then(|m| m["owned_by"].as_str())
            .unwrap_or_default();
        let runtime = if owned_by == "vllm" {
            "vllm"
        } else if owned_by == "llamacpp"
            || get_json(&http, &format!("{base}/props")).await.is_some()
        {
            "llama.cpp"
        } else if base.ends_with(":4000") {
            "litellm"
        } else {
            "openai"
        };
        return Ok(Detected {
            url: base,
            runtime,
            models,
            health_path: "/v1/models",
        });
    }
    bail!(
        "{base} is not an Ollama or OpenAI-compatible model server (no /api/tags or /v1/models); pass --upstream with the server's base URL"
    )
}

fn ports() -> anyhow::Result<Vec<u16>> {
    match config::var(config::INFERENCE_PORTS) {
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .with_context(|| format!("{}: {p:?} is not a port", config::INFERENCE_PORTS))
            })
            .collect(),
        None => Ok(DEFAULT_PORTS.to_vec()),
    }
}

/// The first model server answering on the usual loopback ports.
pub async fn detect() -> anyhow::Result<Detected> {
    let ports = ports()?;
    for port in &ports {
        if let Ok(found) = inspect(&format!("http://127.0.0.1:{port}")).await {
            return Ok(found);
        }
    }
    let tried: Vec<String> = ports.iter().map(u16::to_string).collect();
    bail!(
        "no model server found on 127.0.0.1 ports {} (Ollama 11434, vLLM 8000, llama.cpp 8080, LiteLLM 4000); start one or pass --upstream <url>",
        tried.join(", ")
    )
}
