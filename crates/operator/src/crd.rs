//! The `ServiceOffer` custom resource (`serviceoffers.obol.org`, `v1alpha1`), derived
//! from agora's own offer types so the CRD can never drift from what the reconciler
//! reads.
//!
//! The spec is `offers::OfferSpec` flattened, plus the two reference fields agora
//! does not act on (`agent`, `skill`): they are accepted and kept, so every manifest
//! written for the reference applies unchanged. agora serves such an offer like any
//! HTTP offer, through its `upstream`; without one it stays not Ready, its
//! condition saying an upstream is required.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of an offer, as `kubectl apply` writes it.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "obol.org",
    version = "v1alpha1",
    kind = "ServiceOffer",
    namespaced,
    status = "ServiceOfferStatus",
    shortname = "so",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model.name"}"#,
    printcolumn = r#"{"name":"Price","type":"string","jsonPath":".spec.payment.price.perRequest"}"#,
    printcolumn = r#"{"name":"Network","type":"string","jsonPath":".spec.payment.network"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    doc = "An offer sold behind the x402 gate: what is served, where it runs, its price, and where the reconciler has got to.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOfferSpec {
    /// Everything agora serves: type, model, upstream, path, payment, registration,
    /// provenance, limits, drain.
    #[serde(flatten)]
    pub offer: offers::OfferSpec,
    /// The reference's `type: agent` target; kept, not served by agora.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// The reference's `type: skill` bundle; kept, not served by agora.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<SkillSpec>,
}

/// `spec.agent`: which Agent resource serves a `type: agent` offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSpec {
    /// The Agent resource.
    #[serde(rename = "ref")]
    pub reference: ObjectName,
}

/// A namespaced object's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectName {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// `spec.skill`: a skill bundle kept in a ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillSpec {
    /// Skill name.
    pub name: String,
    /// Skill version.
    pub version: String,
    /// SHA-256 of the bundle, hex.
    pub sha256: String,
    /// The ConfigMap holding `bundle.tar.gz`.
    pub bundle_config_map: String,
    /// Shown name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Shown description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where the operator has got to: agora's status, plus the reference's agent
/// resolution (kept when another controller wrote it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOfferStatus {
    /// Conditions, endpoint, agent id, registration transaction, observed generation.
    #[serde(flatten)]
    pub offer: offers::OfferStatus,
    /// What a `type: agent` offer resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_resolution: Option<AgentResolution>,
}

/// The reference's `status.agentResolution`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentResolution {
    /// The agent's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Its pinned model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Its skills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
}

/// The CustomResourceDefinition of [`ServiceOffer`].
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    ServiceOffer::crd()
}

/// The CRD as YAML, what `agora crd` prints and `deploy/kubernetes/crd.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&crd())
}
