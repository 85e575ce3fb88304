//! Finding the local model server to sell: Ollama on 11434, vLLM on 8000, llama.cpp on
//! 8080 and LiteLLM on 4000, recognised by their APIs rather than by port alone.

use std::time::Duration;

use serde_json::Value;

/// Ports tried, in order, when the caller names none: Ollama, vLLM, llama.cpp, LiteLLM.
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

/// Why no model server was found.
#[derive(Debug, thiserror::Error)]
pub enum ModelServerError {
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("cannot build an HTTP client")]
    Client(#[source] reqwest::Error),
    /// Something answers at the URL, or nothing does, but not a model server's API.
    #[error(
        "{base} is not an Ollama or OpenAI-compatible model server (no /api/tags or /v1/models)"
    )]
    NotAModelServer {
        /// The base URL asked.
        base: String,
    },
    /// No port of the list answered as a model server.
    #[error(
        "no model server found on 127.0.0.1 ports {} (Ollama 11434, vLLM 8000, llama.cpp 8080, LiteLLM 4000)",
        .ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    )]
    NoneFound {
        /// The ports tried.
        ports: Vec<u16>,
    },
}

fn client() -> Result<reqwest::Client, ModelServerError> {
    x402::http::direct()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(ModelServerError::Client)
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// What kind of server `url` is and which models it serves.
pub async fn inspect(url: &str) -> Result<Detected, ModelServerError> {
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
    Err(ModelServerError::NotAModelServer { base })
}

/// The first model server answering on `ports` of 127.0.0.1, in order.
pub async fn detect(ports: &[u16]) -> Result<Detected, ModelServerError> {
    for port in ports {
        if let Ok(found) = inspect(&format!("http://127.0.0.1:{port}")).await {
            return Ok(found);
        }
    }
    Err(ModelServerError::NoneFound {
        ports: ports.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_listening_is_not_a_model_server_and_names_the_ports() {
        let err = inspect("http://127.0.0.1:9/v1/").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "http://127.0.0.1:9 is not an Ollama or OpenAI-compatible model server (no /api/tags or /v1/models)"
        );
        let err = detect(&[9, 10]).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no model server found on 127.0.0.1 ports 9, 10 ("),
            "{err}"
        );
    }
}
