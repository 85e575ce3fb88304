//! The model-server lookup of `agora sell inference`, `agora doctor` and the MCP
//! server: [`seller::model_server`] on the ports of `AGORA_INFERENCE_PORTS`, its
//! errors completed with the flag that names a server instead.

use anyhow::{Context, anyhow};
use seller::model_server::{self, DEFAULT_PORTS, Detected, ModelServerError};

use crate::env;

/// What kind of server `url` is and which models it serves.
pub async fn inspect(url: &str) -> anyhow::Result<Detected> {
    model_server::inspect(url).await.map_err(hint)
}

/// The first model server answering on the usual loopback ports, or on those of
/// `AGORA_INFERENCE_PORTS` (comma-separated) for servers on unusual ports.
pub async fn detect() -> anyhow::Result<Detected> {
    model_server::detect(&ports()?).await.map_err(hint)
}

fn ports() -> anyhow::Result<Vec<u16>> {
    match env::var(env::INFERENCE_PORTS) {
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .with_context(|| format!("{}: {p:?} is not a port", env::INFERENCE_PORTS))
            })
            .collect(),
        None => Ok(DEFAULT_PORTS.to_vec()),
    }
}

/// The error with what to pass to `agora sell inference` instead.
fn hint(e: ModelServerError) -> anyhow::Error {
    match e {
        ModelServerError::NotAModelServer { .. } => {
            anyhow!("{e}; pass --upstream with the server's base URL")
        }
        ModelServerError::NoneFound { .. } => anyhow!("{e}; start one or pass --upstream <url>"),
        ModelServerError::Client(_) => e.into(),
    }
}
