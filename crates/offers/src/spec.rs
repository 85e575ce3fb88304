//! The ServiceOffer resource, field-compatible with obol's `obol.org/v1alpha1` CRD so
//! a reference manifest imports unchanged (YAML or JSON).
//!
//! This is the stored, user-facing shape: strings as the user wrote them. Validation
//! into typed values happens in [`crate::validate`], once, at the edge.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::condition::Condition;
use crate::condition::Stage;

/// `apiVersion` of the reference CRD, written on export.
pub const API_VERSION: &str = "obol.org/v1alpha1";
/// `kind` of the reference CRD.
pub const KIND: &str = "ServiceOffer";
/// Annotation that makes the gateway settle a paid call before calling the upstream
/// (`"true"`; `agora sell ... --settle-first`, and every research offer): for long or
/// costly jobs, so a buyer who moves the funds away mid-job gets nothing. An
/// annotation, not a spec field, so a manifest carrying it still applies to obol's
/// CRD, whose spec has no place for it.
pub const SETTLE_FIRST_ANNOTATION: &str = "agora.obol.org/settle-first";

/// A whole offer: metadata, what is sold, and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOffer {
    /// Always `obol.org/v1alpha1` on export; any value is accepted on import.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// Always `ServiceOffer`.
    #[serde(default = "kind")]
    pub kind: String,
    /// Name and bookkeeping.
    pub metadata: Metadata,
    /// What is sold and at what price.
    pub spec: OfferSpec,
    /// Where the reconciler has got to.
    #[serde(default)]
    pub status: OfferStatus,
}

fn api_version() -> String {
    API_VERSION.to_string()
}

fn kind() -> String {
    KIND.to_string()
}

/// Kubernetes-style metadata; only `name` matters on one machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The offer's name (validated as an [`crate::validate::OfferName`]).
    #[serde(default)]
    pub name: String,
    /// Kept from imported manifests; agora has one namespace per machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Bumped on every spec change; status.observedGeneration follows it.
    #[serde(default)]
    pub generation: u64,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Kept verbatim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Kept verbatim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What kind of service is sold; decides the ModelReady stage and default routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OfferType {
    /// A model server (Ollama, vLLM, llama.cpp, any OpenAI-compatible API).
    Inference,
    /// A fine-tuning service.
    FineTuning,
    /// Any HTTP service (the CRD's default).
    #[default]
    Http,
    /// An agent.
    Agent,
    /// A skill bundle.
    Skill,
}

impl OfferType {
    /// The CRD spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferType::Inference => "inference",
            OfferType::FineTuning => "fine-tuning",
            OfferType::Http => "http",
            OfferType::Agent => "agent",
            OfferType::Skill => "skill",
        }
    }
}

/// The offer's desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfferSpec {
    /// Kind of service.
    #[serde(rename = "type", default)]
    pub offer_type: OfferType,
    /// Served model, for inference offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// Where requests go.
    #[serde(default)]
    pub upstream: UpstreamSpec,
    /// Public path prefix; default `/services/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Price and recipient.
    pub payment: PaymentSpec,
    /// ERC-8004 listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationSpec>,
    /// Free-form provenance (training run, hashes), published with the offer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, String>,
    /// Traffic limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    /// Requests forwarded besides an inference offer's inference API, as
    /// `METHOD /path`, `/path` (any method) or `/path/*`; any other path answers 404.
    /// Only for inference offers: other types forward every path already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_paths: Vec<String>,
    /// When set (RFC 3339), the offer is being stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_at: Option<String>,
    /// How long a stopping offer keeps serving (Go duration such as `1h0m0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_grace_period: Option<String>,
}

/// The served model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Model id as the upstream lists it.
    #[serde(default)]
    pub name: String,
    /// `ollama`, `vllm`, `llama.cpp`, `openai`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// The upstream: a URL here, or the reference's service/namespace/port (mapped to a
/// loopback URL on the service's port, since both run on this machine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// Base URL, e.g. `http://127.0.0.1:11434`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Reference form: Kubernetes service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Reference form: namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Reference form: port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Checked by UpstreamHealthy; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UpstreamIn {
    Url(String),
    Object {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        namespace: Option<String>,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default, rename = "healthPath")]
        health_path: Option<String>,
    },
}

impl<'de> Deserialize<'de> for UpstreamSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match UpstreamIn::deserialize(d)? {
            UpstreamIn::Url(url) => UpstreamSpec {
                url: Some(url),
                ..UpstreamSpec::default()
            },
            UpstreamIn::Object {
                url,
                service,
                namespace,
                port,
                health_path,
            } => UpstreamSpec {
                url,
                service,
                namespace,
                port,
                health_path,
            },
        })
    }
}

/// How the offer is paid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentSpec {
    /// Network name or CAIP-2 id.
    #[serde(default)]
    pub network: String,
    /// Recipient address.
    #[serde(default)]
    pub pay_to: String,
    /// `exact`.
    #[serde(default = "exact")]
    pub scheme: String,
    /// How long a buyer's authorization may stay valid; default 300.
    #[serde(default = "default_timeout")]
    pub max_timeout_seconds: u64,
    /// Exactly one price key.
    #[serde(default)]
    pub price: PriceSpec,
    /// A token other than the network's USDC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<AssetSpec>,
}

fn exact() -> String {
    "exact".to_string()
}

fn default_timeout() -> u64 {
    300
}

/// Decimal prices in whole token units; exactly one is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PriceSpec {
    /// Per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request: Option<String>,
    /// Per million tokens.
    #[serde(default, rename = "perMTok", skip_serializing_if = "Option::is_none")]
    pub per_mtok: Option<String>,
    /// Per hour of compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<String>,
    /// Per training epoch (accepted on import; not chargeable per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_epoch: Option<String>,
}

/// A non-USDC token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AssetSpec {
    /// Token contract.
    #[serde(default)]
    pub address: String,
    /// Decimals.
    #[serde(default)]
    pub decimals: u8,
    /// Ticker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// EIP-712 domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip712_name: Option<String>,
    /// EIP-712 domain version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip712_version: Option<String>,
    /// `eip3009` (the only one agora settles) or `permit2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_method: Option<String>,
}

/// The ERC-8004 listing of the offer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegistrationSpec {
    /// Whether to register.
    #[serde(default)]
    pub enabled: bool,
    /// Agent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Agent description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// OASF skills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// OASF domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Extra registration services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceRefSpec>,
    /// Trust models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_trust: Vec<String>,
    /// Published metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// An extra service entry in the registration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceRefSpec {
    /// Service name (`A2A`, `MCP`, ...).
    pub name: String,
    /// Its endpoint.
    pub endpoint: String,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Per-offer traffic limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<u32>,
    /// Paid calls at the upstream at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Seconds the upstream may take to answer a paid call (default 120); a long job
    /// such as an autoresearch run needs its budget and grace here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// Where the reconciler has got to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfferStatus {
    /// The six conditions, in stage order.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The public path (the reference keeps the path here, not a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// ERC-8004 agent id (a decimal string; 0 is valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The registration transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_tx_hash: Option<String>,
    /// The generation these conditions describe.
    #[serde(default)]
    pub observed_generation: u64,
}

impl ServiceOffer {
    /// A new offer with `spec`, as `agora sell` creates it.
    pub fn new(name: &str, spec: OfferSpec) -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            metadata: Metadata {
                name: name.to_string(),
                ..Metadata::default()
            },
            spec,
            status: OfferStatus::default(),
        }
    }

    /// Reads a manifest in YAML (or JSON, which is YAML).
    pub fn from_manifest(text: &str) -> Result<Self, serde_norway::Error> {
        serde_norway::from_str(text)
    }

    /// The manifest as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(self)
    }

    /// The condition of type `kind`: a [`Stage`], or the type string of a condition
    /// another controller wrote (types stay open on the wire).
    pub fn condition(&self, kind: impl AsRef<str>) -> Option<&Condition> {
        let kind = kind.as_ref();
        self.status.conditions.iter().find(|c| c.kind == kind)
    }

    /// Whether the Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.condition(Stage::Ready).is_some_and(Condition::is_true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = r#"
apiVersion: obol.org/v1alpha1
kind: ServiceOffer
metadata:
  name: qwen
  namespace: llm
spec:
  type: inference
  model:
    name: qwen3:0.6b
    runtime: ollama
  upstream:
    service: ollama
    namespace: llm
    port: 11434
    healthPath: /api/tags
  payment:
    network: base-sepolia
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    price:
      perMTok: "0.50"
  registration:
    enabled: true
    name: Qwen on my laptop
    skills: ["natural_language_processing/natural_language_generation/text_completion"]
    domains: ["technology/data_science"]
"#;

    #[test]
    fn a_reference_manifest_reads_unchanged_and_round_trips() {
        let offer = ServiceOffer::from_manifest(REFERENCE).unwrap();
        assert_eq!(offer.metadata.name, "qwen");
        assert_eq!(offer.spec.offer_type, OfferType::Inference);
        assert_eq!(offer.spec.upstream.port, Some(11434));
        assert_eq!(
            offer.spec.upstream.health_path.as_deref(),
            Some("/api/tags")
        );
        assert_eq!(offer.spec.payment.price.per_mtok.as_deref(), Some("0.50"));
        assert_eq!(offer.spec.payment.scheme, "exact");
        assert_eq!(offer.spec.payment.max_timeout_seconds, 300);
        let registration = offer.spec.registration.as_ref().unwrap();
        assert!(registration.enabled);
        let again = ServiceOffer::from_manifest(&offer.to_yaml().unwrap()).unwrap();
        assert_eq!(again, offer);
        let json = serde_json::to_value(&offer).unwrap();
        assert_eq!(json["spec"]["payment"]["price"]["perMTok"], "0.50");
        assert_eq!(json["spec"]["upstream"]["healthPath"], "/api/tags");
    }

    #[test]
    fn upstream_may_be_a_plain_url() {
        let offer = ServiceOffer::from_manifest(
            "metadata: {name: w}\nspec:\n  upstream: http://127.0.0.1:8080\n  payment: {network: base, payTo: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', price: {perHour: '0.5'}}\n",
        )
        .unwrap();
        assert_eq!(offer.spec.offer_type, OfferType::Http);
        assert_eq!(
            offer.spec.upstream.url.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(offer.api_version, API_VERSION);
    }
}
