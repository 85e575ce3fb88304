//! Stages 1 to 3, one function each: ModelReady, UpstreamHealthy and
//! PaymentGateReady, the probes that decide whether an offer can be served.
//!
//! Each takes the offer as the pass resolved it and answers a [`Verdict`] whose
//! message keeps every detail (URLs, status codes, errors) for the operator.

use std::time::Duration;

use serde_json::Value;
use x402::wire::SCHEME_EXACT;

use super::{Reconciler, Verdict};
use crate::spec::OfferType;
use crate::validate::ResolvedOffer;

impl Reconciler {
    /// ModelReady: inference offers must have their model listed by the upstream.
    pub(super) async fn model_ready(&self, offer: &ResolvedOffer) -> Verdict {
        if offer.offer_type != OfferType::Inference {
            return Verdict::yes(
                "Skipped",
                format!("{} offers serve no model", offer.offer_type.as_str()),
            );
        }
        let Some(model) = offer.model.as_ref().map(|m| m.name.clone()) else {
            return Verdict::no("MissingModel", "inference offers need spec.model.name");
        };
        let listed = match self.list_models(offer).await {
            Ok(models) => models,
            Err(e) => return Verdict::no("UpstreamUnreachable", e),
        };
        if listed.contains(&model) {
            return Verdict::yes(
                "Available",
                format!("{model} is served by {}", offer.upstream),
            );
        }
        let ollama = offer.model.as_ref().and_then(|m| m.runtime.as_deref()) == Some("ollama");
        if ollama && self.config.pull_models {
            return self.pull(offer, &model).await;
        }
        let served = if listed.is_empty() {
            "nothing".to_string()
        } else {
            listed.join(", ")
        };
        Verdict::no(
            "ModelNotFound",
            format!(
                "model {model} is not served by {}; it serves {served} (load or pull the model, or set the offer's model to one of those)",
                offer.upstream
            ),
        )
    }

    /// The model ids an upstream lists: OpenAI `/v1/models`, else Ollama `/api/tags`.
    async fn list_models(&self, offer: &ResolvedOffer) -> Result<Vec<String>, String> {
        let openai = self.get_json(&offer.upstream, "/v1/models").await;
        if let Ok(Some(body)) = &openai
            && let Some(data) = body["data"].as_array()
        {
            return Ok(data
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect());
        }
        match self.get_json(&offer.upstream, "/api/tags").await {
            Ok(Some(body)) => Ok(body["models"]
                .as_array()
                .map(|models| {
                    models
                        .iter()
                        .filter_map(|m| {
                            m["name"]
                                .as_str()
                                .or(m["model"].as_str())
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default()),
            Ok(None) => Err(format!(
                "{} lists no models at /v1/models or /api/tags; is it an OpenAI-compatible or Ollama server?",
                offer.upstream
            )),
            Err(e) => Err(e),
        }
    }

    /// `GET base+path` as JSON; `None` when it answers an error status or not JSON.
    async fn get_json(&self, base: &reqwest::Url, path: &str) -> Result<Option<Value>, String> {
        let url = join(base, path);
        let response = self
            .http
            .get(url.clone())
            .timeout(self.config.probe_timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", transport_error(&e)))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        Ok(response.json::<Value>().await.ok())
    }

    /// Asks Ollama to pull `model`, waiting up to ten minutes for it.
    async fn pull(&self, offer: &ResolvedOffer, model: &str) -> Verdict {
        let url = join(&offer.upstream, "/api/pull");
        let pulled = self
            .http
            .post(url)
            .json(&serde_json::json!({"name": model, "stream": false}))
            .timeout(Duration::from_secs(600))
            .send()
            .await;
        match pulled {
            Ok(r) if r.status().is_success() => {
                Verdict::yes("Pulled", format!("pulled {model} into Ollama"))
            }
            Ok(r) => Verdict::no(
                "PullFailed",
                format!("Ollama refused to pull {model}: HTTP {}", r.status()),
            ),
            Err(e) => Verdict::no(
                "PullFailed",
                format!("pulling {model}: {}", transport_error(&e)),
            ),
        }
    }

    /// UpstreamHealthy: the health path answers below 500.
    pub(super) async fn upstream_healthy(&self, offer: &ResolvedOffer) -> Verdict {
        let url = join(&offer.upstream, &offer.health_path);
        match self
            .http
            .get(url.clone())
            .timeout(self.config.probe_timeout)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() < 500 => Verdict::yes(
                "Healthy",
                format!("GET {url} answered {}", r.status().as_u16()),
            ),
            Ok(r) => Verdict::no(
                "Unhealthy",
                format!("GET {url} answered {}", r.status().as_u16()),
            ),
            Err(e) => Verdict::no("Unhealthy", format!("GET {url}: {}", transport_error(&e))),
        }
    }

    /// PaymentGateReady: the facilitator answers and settles this network.
    pub(super) async fn payment_gate_ready(&self, offer: &ResolvedOffer) -> Verdict {
        match self.facilitator.supported().await {
            Ok(supported) if supported.supports(SCHEME_EXACT, &offer.network) => Verdict::yes(
                "Reconciled",
                format!(
                    "the facilitator settles exact payments on {}",
                    offer.network.caip2()
                ),
            ),
            Ok(supported) => {
                let networks: Vec<String> =
                    supported.kinds.iter().map(|k| k.network.caip2()).collect();
                Verdict::no(
                    "NetworkNotSupported",
                    format!(
                        "the facilitator does not settle {}; it supports {} (change the offer's network or the facilitator)",
                        offer.network.caip2(),
                        if networks.is_empty() {
                            "nothing".to_string()
                        } else {
                            networks.join(", ")
                        }
                    ),
                )
            }
            Err(e) => Verdict::no("WaitingForFacilitator", e.to_string()),
        }
    }
}

/// `path` under the upstream's base path.
fn join(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// The innermost cause of a request error, which is the one that names the problem
/// (connection refused, DNS), or that no answer came in time.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".to_string();
    }
    x402::error_chain::causes(e)
        .last()
        .map_or_else(|| e.to_string(), |cause| cause.to_string())
}
