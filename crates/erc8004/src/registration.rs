//! The ERC-8004 registration document (`registration-v1`), the JSON an agent's URI
//! points at: written exactly as the spec spells it, read leniently because documents
//! in the wild predate or bend it (`endpoints` for `services`, string agent ids, nulls).
//!
//! A seller publishes one document for all its offers: a `web` service per offer
//! endpoint and one OASF entry with the union of their skills and domains. After the
//! last offer is gone it publishes a tombstone instead.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::Address;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde::{Deserialize, Deserializer, Serialize};

use crate::abi::agent_registry_id;
use crate::oasf::{OasfError, Taxonomy};

/// The `type` every registration document carries.
pub const REGISTRATION_TYPE: &str = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1";

/// Service name of an HTTP endpoint.
pub const WEB_SERVICE: &str = "web";

/// Service name of the entry that carries OASF skills and domains.
pub const OASF_SERVICE: &str = "OASF";

/// The OASF version ERC-8004 pins, as the spec writes it in the OASF service entry.
pub const OASF_SERVICE_VERSION: &str = "0.8";

/// The OASF entry's endpoint: agora publishes no OASF record of its own, so it points at
/// the taxonomy the skill and domain names come from, as other registrants do.
pub const OASF_ENDPOINT: &str = "https://github.com/agntcy/oasf/";

/// What a data URI holding a registration starts with.
pub const DATA_URI_PREFIX: &str = "data:application/json;base64,";

/// A registration document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawRegistration")]
pub struct Registration {
    /// Always [`REGISTRATION_TYPE`] when written.
    #[serde(rename = "type")]
    pub kind: String,
    /// Agent name (also the ERC-721 name).
    pub name: String,
    /// What the agent offers, for people browsing registries.
    pub description: String,
    /// Avatar URL; omitted when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How to reach the agent (`web`, `OASF`, `A2A`, `MCP`, ...).
    pub services: Vec<Service>,
    /// Whether the agent accepts x402 payments.
    pub x402_support: bool,
    /// False once the agent has stopped serving (tombstone).
    pub active: bool,
    /// The on-chain identities this document belongs to.
    pub registrations: Vec<RegistrationRef>,
    /// Trust models (`reputation`, `crypto-economic`, `tee-attestation`).
    pub supported_trust: Vec<String>,
    /// Free-form string metadata (obol extension); omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Free-form provenance strings (obol extension); omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, String>,
}

/// One entry of `services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawService")]
pub struct Service {
    /// Protocol name (`web`, `OASF`, ...; custom names are allowed).
    pub name: String,
    /// URL, address or identifier, depending on the protocol.
    pub endpoint: String,
    /// Protocol version (`0.8` for OASF); the spec recommends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// OASF skill names (OASF entries only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// OASF domain names (OASF entries only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
}

/// One entry of `registrations`: which registry minted this agent, under which id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRef {
    /// The token id; 0 is a valid id (the first agent of a registry).
    #[serde(deserialize_with = "number_or_decimal_string")]
    pub agent_id: u64,
    /// `eip155:<chainId>:<registry address>`, see [`agent_registry_id`].
    pub agent_registry: String,
}

/// One sold offer, as the aggregate document needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OfferEntry {
    /// Offer name (orders the services; fills in a missing agent name).
    pub name: String,
    /// The public URL buyers call (becomes a `web` service).
    pub endpoint_url: String,
    /// What the offer does (fills in a missing agent description).
    pub description: String,
    /// OASF v0.8.0 skill names.
    pub skills: Vec<String>,
    /// OASF v0.8.0 domain names.
    pub domains: Vec<String>,
    /// Whether the offer is behind an x402 payment gate.
    pub x402: bool,
}

/// The agent-level fields the operator chooses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentProfile {
    /// Agent name; when blank, the offer names are used.
    pub name: String,
    /// Agent description; when blank, one is made from the offers'.
    pub description: String,
    /// Avatar URL.
    pub image: Option<String>,
    /// Trust models to advertise.
    pub supported_trust: Vec<String>,
}

/// An on-chain identity of the agent, typed; written as a [`RegistrationRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRegistration {
    /// The token id.
    pub agent_id: u64,
    /// The chain the registry is on.
    pub chain_id: u64,
    /// The Identity Registry contract.
    pub registry: Address,
}

/// Why a document could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The URI is not a `data:` URI.
    #[error(
        "{0:?} is not a data URI; inline registrations look like {DATA_URI_PREFIX}<base64 JSON>"
    )]
    NotDataUri(String),
    /// A `data:` URI of another media type.
    #[error("the data URI has media type {0:?}; a registration must be application/json")]
    MediaType(String),
    /// The base64 payload does not decode.
    #[error("the data URI's base64 payload does not decode: {0}")]
    Base64(#[from] base64::DecodeError),
    /// A non-base64 payload with a broken `%XX` escape.
    #[error("the data URI's payload has an invalid %-escape; encode the JSON as base64 instead")]
    PercentEncoding,
    /// The payload is not a registration document.
    #[error("the registration JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// An offer names a skill or domain outside OASF v0.8.0.
    #[error("offer {offer}: {source}")]
    Oasf {
        /// The offer.
        offer: String,
        /// What was wrong with the name.
        source: OasfError,
    },
    /// An offer's endpoint is not an absolute http(s) URL.
    #[error(
        "offer {offer} has endpoint {endpoint:?}; a web service endpoint must be an absolute http(s) URL such as https://host/services/{offer}"
    )]
    Endpoint {
        /// The offer.
        offer: String,
        /// What it had.
        endpoint: String,
    },
}

impl Registration {
    /// The one document for all of a seller's offers: a `web` service per distinct
    /// endpoint (offers in name order), one OASF entry with the sorted union of their
    /// skills and domains, and `x402Support` when any offer is gated. With no offers
    /// this is the [`Registration::tombstone`]. Skills and domains are checked against
    /// OASF v0.8.0 so an invalid name is never published.
    pub fn for_offers(
        profile: &AgentProfile,
        offers: &[OfferEntry],
        registrations: &[AgentRegistration],
    ) -> Result<Self, RegistrationError> {
        if offers.is_empty() {
            return Ok(Self::tombstone(profile, registrations));
        }
        let mut sorted: Vec<&OfferEntry> = offers.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));

        let mut skills = BTreeSet::new();
        let mut domains = BTreeSet::new();
        let mut services: Vec<Service> = Vec::new();
        for offer in &sorted {
            let oasf = |source| RegistrationError::Oasf {
                offer: offer.name.clone(),
                source,
            };
            for skill in &offer.skills {
                skills.insert(Taxonomy::validate_skill(skill).map_err(oasf)?.name.as_str());
            }
            for domain in &offer.domains {
                domains.insert(
                    Taxonomy::validate_domain(domain)
                        .map_err(oasf)?
                        .name
                        .as_str(),
                );
            }
            if !is_http_url(&offer.endpoint_url) {
                return Err(RegistrationError::Endpoint {
                    offer: offer.name.clone(),
                    endpoint: offer.endpoint_url.clone(),
                });
            }
            if !services.iter().any(|s| s.endpoint == offer.endpoint_url) {
                services.push(Service::web(&offer.endpoint_url));
            }
        }
        if !skills.is_empty() || !domains.is_empty() {
            services.push(Service {
                name: OASF_SERVICE.to_string(),
                endpoint: OASF_ENDPOINT.to_string(),
                version: Some(OASF_SERVICE_VERSION.to_string()),
                skills: skills.into_iter().map(str::to_string).collect(),
                domains: domains.into_iter().map(str::to_string).collect(),
            });
        }

        let name = non_blank(&profile.name).unwrap_or_else(|| {
            let names: Vec<&str> = sorted.iter().map(|o| o.name.as_str()).collect();
            names.join(", ")
        });
        let description =
            non_blank(&profile.description).unwrap_or_else(|| describe_offers(&sorted));
        Ok(Self {
            services,
            x402_support: sorted.iter().any(|o| o.x402),
            active: true,
            ..Self::base(profile, name, description, registrations)
        })
    }

    /// The document after the last offer is deleted: still names the agent and its
    /// registrations, but is inactive, lists no services and says "(deactivated)".
    pub fn tombstone(profile: &AgentProfile, registrations: &[AgentRegistration]) -> Self {
        let description = match non_blank(&profile.description) {
            Some(d) => format!("{d} (deactivated)"),
            None => "(deactivated)".to_string(),
        };
        Self::base(profile, profile.name.clone(), description, registrations)
    }

    fn base(
        profile: &AgentProfile,
        name: String,
        description: String,
        registrations: &[AgentRegistration],
    ) -> Self {
        Self {
            kind: REGISTRATION_TYPE.to_string(),
            name,
            description,
            image: profile.image.clone(),
            services: Vec::new(),
            x402_support: false,
            active: false,
            registrations: registrations
                .iter()
                .map(|r| RegistrationRef {
                    agent_id: r.agent_id,
                    agent_registry: agent_registry_id(r.chain_id, r.registry),
                })
                .collect(),
            supported_trust: profile.supported_trust.clone(),
            metadata: BTreeMap::new(),
            provenance: BTreeMap::new(),
        }
    }

    /// The service carrying OASF skills and domains, if any (name compared without
    /// case, since documents in the wild write `oasf` too).
    pub fn oasf_service(&self) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(OASF_SERVICE))
    }

    /// The document as a `data:application/json;base64,...` URI, for registering
    /// without hosting a file.
    pub fn to_data_uri(&self) -> String {
        let json = serde_json::to_vec(self).expect("a Registration always serializes");
        format!(
            "{DATA_URI_PREFIX}{}",
            general_purpose::STANDARD.encode(json)
        )
    }

    /// Reads an inline registration: `data:application/json[;params][;base64],...`,
    /// base64 with or without padding (standard or URL-safe alphabet), or %-encoded.
    pub fn from_data_uri(uri: &str) -> Result<Self, RegistrationError> {
        let uri = uri.trim();
        let rest = uri
            .get(..5)
            .filter(|scheme| scheme.eq_ignore_ascii_case("data:"))
            .and_then(|_| uri.get(5..))
            .ok_or_else(|| RegistrationError::NotDataUri(preview(uri)))?;
        let (header, payload) = rest
            .split_once(',')
            .ok_or_else(|| RegistrationError::NotDataUri(preview(uri)))?;
        let mut params = header.split(';').map(str::trim);
        let media_type = params.next().unwrap_or_default();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(RegistrationError::MediaType(media_type.to_string()));
        }
        let bytes = if params.any(|p| p.eq_ignore_ascii_case("base64")) {
            decode_base64(payload)?
        } else {
            percent_decode(payload)?
        };
        Ok(serde_json::from_slice(&bytes)?)
    }
}

impl Service {
    /// A `web` service at `endpoint`.
    pub fn web(endpoint: &str) -> Self {
        Self {
            name: WEB_SERVICE.to_string(),
            endpoint: endpoint.to_string(),
            version: None,
            skills: Vec::new(),
            domains: Vec::new(),
        }
    }
}

fn non_blank(s: &str) -> Option<String> {
    let trimmed = s.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// One offer: its description (or name); several: `name: description; ...`.
fn describe_offers(offers: &[&OfferEntry]) -> String {
    let parts: Vec<String> = offers
        .iter()
        .map(|o| match non_blank(&o.description) {
            Some(d) if offers.len() == 1 => d,
            Some(d) => format!("{}: {d}", o.name),
            None => o.name.clone(),
        })
        .collect();
    parts.join("; ")
}

fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    ["https://", "http://"].iter().any(|scheme| {
        lower.strip_prefix(scheme).is_some_and(|rest| {
            !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace)
        })
    })
}

/// The start of `uri`, for error messages (a data URI can be kilobytes long).
fn preview(uri: &str) -> String {
    const MAX: usize = 40;
    match uri.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &uri[..cut]),
        None => uri.to_string(),
    }
}

fn decode_base64(payload: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    let payload = payload.trim();
    standard
        .decode(payload)
        .or_else(|e| url_safe.decode(payload).map_err(|_| e))
}

fn percent_decode(payload: &str) -> Result<Vec<u8>, RegistrationError> {
    let bytes = payload.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(RegistrationError::PercentEncoding)?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// The wire form as read: every field optional, `endpoints` next to `services`, string
/// maps that may hold numbers. Converted into [`Registration`] with the spec defaults.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRegistration {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    description: Option<String>,
    image: Option<String>,
    services: Option<Vec<Service>>,
    endpoints: Option<Vec<Service>>,
    #[serde(alias = "x402support")]
    x402_support: Option<bool>,
    active: Option<bool>,
    registrations: Option<Vec<RegistrationRef>>,
    supported_trust: Option<Vec<String>>,
    metadata: Option<BTreeMap<String, serde_json::Value>>,
    provenance: Option<BTreeMap<String, serde_json::Value>>,
}

impl From<RawRegistration> for Registration {
    fn from(raw: RawRegistration) -> Self {
        let services = match (raw.services, raw.endpoints) {
            (Some(services), _) if !services.is_empty() => services,
            (services, endpoints) => endpoints.or(services).unwrap_or_default(),
        };
        Self {
            kind: raw.kind.unwrap_or_else(|| REGISTRATION_TYPE.to_string()),
            name: raw.name.unwrap_or_default(),
            description: raw.description.unwrap_or_default(),
            image: raw.image.filter(|i| !i.trim().is_empty()),
            services,
            x402_support: raw.x402_support.unwrap_or(false),
            active: raw.active.unwrap_or(true),
            registrations: raw.registrations.unwrap_or_default(),
            supported_trust: raw.supported_trust.unwrap_or_default(),
            metadata: string_map(raw.metadata),
            provenance: string_map(raw.provenance),
        }
    }
}

/// Keeps strings as they are and writes other scalars as JSON text; drops nulls.
fn string_map(map: Option<BTreeMap<String, serde_json::Value>>) -> BTreeMap<String, String> {
    map.unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect()
}

#[derive(Deserialize)]
struct RawService {
    name: Option<String>,
    endpoint: Option<String>,
    version: Option<serde_json::Value>,
    skills: Option<Vec<NameOrRecord>>,
    domains: Option<Vec<NameOrRecord>>,
}

/// A skill or domain written as a name, or as an OASF record `{name, id}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum NameOrRecord {
    Name(String),
    Record { name: String },
}

impl From<RawService> for Service {
    fn from(raw: RawService) -> Self {
        let names = |list: Option<Vec<NameOrRecord>>| -> Vec<String> {
            list.unwrap_or_default()
                .into_iter()
                .map(|n| match n {
                    NameOrRecord::Name(name) | NameOrRecord::Record { name } => name,
                })
                .collect()
        };
        Self {
            name: raw.name.unwrap_or_default(),
            endpoint: raw.endpoint.unwrap_or_default(),
            version: raw.version.and_then(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            skills: names(raw.skills),
            domains: names(raw.domains),
        }
    }
}

/// Agent ids are JSON numbers in the spec; some writers quote them.
fn number_or_decimal_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("agentId {s:?} is not a non-negative integer"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;
    use serde_json::json;

    const TESTNET: Address = address!("0x8004A818BFB912233c491871b3d84c89A494BD9e");

    fn offer(name: &str, skills: &[&str], domains: &[&str]) -> OfferEntry {
        OfferEntry {
            name: name.to_string(),
            endpoint_url: format!("https://seller.example/services/{name}"),
            description: format!("{name} via x402"),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            x402: true,
        }
    }

    fn profile() -> AgentProfile {
        AgentProfile {
            name: "seller".into(),
            description: "A seller".into(),
            image: Some("https://seller.example/icon.png".into()),
            supported_trust: vec!["reputation".into()],
        }
    }

    const TEXT_COMPLETION: &str =
        "natural_language_processing/natural_language_generation/text_completion";

    #[test]
    fn aggregates_offers_into_web_services_and_one_oasf_entry() {
        let offers = [
            offer(
                "worker",
                &["devops_mlops/model_versioning"],
                &[
                    "research_and_development/scientific_research",
                    "technology/data_science",
                ],
            ),
            offer(
                "my-qwen",
                &[TEXT_COMPLETION, "devops_mlops/model_versioning"],
                &["technology/data_science"],
            ),
        ];
        let registration = AgentRegistration {
            agent_id: 0,
            chain_id: 84532,
            registry: TESTNET,
        };
        let doc = Registration::for_offers(&profile(), &offers, &[registration]).unwrap();
        let expected = json!({
            "type": REGISTRATION_TYPE,
            "name": "seller",
            "description": "A seller",
            "image": "https://seller.example/icon.png",
            "services": [
                {"name": "web", "endpoint": "https://seller.example/services/my-qwen"},
                {"name": "web", "endpoint": "https://seller.example/services/worker"},
                {
                    "name": "OASF",
                    "endpoint": OASF_ENDPOINT,
                    "version": "0.8",
                    "skills": ["devops_mlops/model_versioning", TEXT_COMPLETION],
                    "domains": ["research_and_development/scientific_research", "technology/data_science"]
                }
            ],
            "x402Support": true,
            "active": true,
            "registrations": [
                {"agentId": 0, "agentRegistry": "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"}
            ],
            "supportedTrust": ["reputation"]
        });
        assert_eq!(serde_json::to_value(&doc).unwrap(), expected);
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.starts_with(
            r#"{"type":"https://eips.ethereum.org/EIPS/eip-8004#registration-v1","name""#
        ));
        assert_eq!(doc.oasf_service().unwrap().skills.len(), 2);
    }

    #[test]
    fn blank_profile_fields_come_from_the_offers_and_endpoints_are_deduplicated() {
        let mut a = offer("a", &[], &[]);
        let mut b = offer("b", &[], &[]);
        b.endpoint_url = a.endpoint_url.clone();
        b.description = String::new();
        a.x402 = false;
        b.x402 = false;
        let doc = Registration::for_offers(&AgentProfile::default(), &[b, a], &[]).unwrap();
        assert_eq!(doc.name, "a, b");
        assert_eq!(doc.description, "a: a via x402; b");
        assert_eq!(
            doc.services,
            [Service::web("https://seller.example/services/a")]
        );
        assert!(doc.oasf_service().is_none());
        assert!(!doc.x402_support);
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json.get("image").is_none());
        assert_eq!(json["registrations"], json!([]));
        assert_eq!(json["supportedTrust"], json!([]));

        let single =
            Registration::for_offers(&AgentProfile::default(), &[offer("q", &[], &[])], &[])
                .unwrap();
        assert_eq!(single.description, "q via x402");
    }

    #[test]
    fn invalid_oasf_names_and_endpoints_are_refused() {
        let err =
            Registration::for_offers(&profile(), &[offer("w", &["text_completion"], &[])], &[])
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "offer w: unknown OASF v0.8.0 skill \"text_completion\": type {TEXT_COMPLETION} instead"
            )
        );
        let err = Registration::for_offers(&profile(), &[offer("w", &[], &["technology/ai"])], &[])
            .unwrap_err();
        assert!(matches!(err, RegistrationError::Oasf { .. }), "{err}");

        for bad in [
            "",
            "seller.example/x",
            "ftp://x",
            "https:///x",
            "https://a b",
        ] {
            let mut o = offer("w", &[], &[]);
            o.endpoint_url = bad.to_string();
            let err = Registration::for_offers(&profile(), &[o], &[]).unwrap_err();
            assert!(
                err.to_string().contains("absolute http(s) URL"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn tombstone_is_inactive_with_no_services() {
        let registration = AgentRegistration {
            agent_id: 7,
            chain_id: 8453,
            registry: address!("0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"),
        };
        let doc = Registration::tombstone(&profile(), &[registration]);
        assert!(!doc.active);
        assert!(!doc.x402_support);
        assert!(doc.services.is_empty());
        assert_eq!(doc.description, "A seller (deactivated)");
        assert_eq!(doc.registrations[0].agent_id, 7);
        assert_eq!(
            doc.registrations[0].agent_registry,
            "eip155:8453:0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
        );
        assert_eq!(
            Registration::for_offers(&profile(), &[], &[registration]).unwrap(),
            doc
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["services"], json!([]));
        assert_eq!(json["active"], json!(false));
    }

    #[test]
    fn reads_legacy_and_loose_documents() {
        let doc: Registration = serde_json::from_value(json!({
            "name": "old",
            "endpoints": [
                {"name": "web", "endpoint": "https://old.example/"},
                {"name": "oasf", "version": 0.7, "skills": [{"name": "a/b", "id": 101}, "c"], "domains": null}
            ],
            "registrations": [{"agentId": "12", "agentRegistry": "eip155:84532:0xabc"}],
            "metadata": {"best_val_bpb": 0.97, "framework": "autoresearch", "gone": null},
            "someFutureField": {"x": 1},
            "image": ""
        }))
        .unwrap();
        assert_eq!(doc.kind, REGISTRATION_TYPE);
        assert!(doc.active, "active defaults to true");
        assert!(!doc.x402_support);
        assert_eq!(doc.image, None);
        assert_eq!(doc.services.len(), 2);
        let oasf = doc.oasf_service().unwrap();
        assert_eq!(oasf.endpoint, "");
        assert_eq!(oasf.version.as_deref(), Some("0.7"));
        assert_eq!(oasf.skills, ["a/b", "c"]);
        assert!(oasf.domains.is_empty());
        assert_eq!(doc.registrations[0].agent_id, 12);
        assert_eq!(doc.metadata["best_val_bpb"], "0.97");
        assert_eq!(doc.metadata["framework"], "autoresearch");
        assert!(!doc.metadata.contains_key("gone"));

        let empty: Registration = serde_json::from_str("{}").unwrap();
        assert!(empty.services.is_empty() && empty.registrations.is_empty());

        let both: Registration = serde_json::from_value(json!({
            "services": [{"name": "web", "endpoint": "https://new/"}],
            "endpoints": [{"name": "web", "endpoint": "https://old/"}]
        }))
        .unwrap();
        assert_eq!(both.services[0].endpoint, "https://new/");
    }

    #[test]
    fn agent_id_zero_is_kept_and_bad_ids_are_refused() {
        let doc: Registration = serde_json::from_value(json!({
            "registrations": [{"agentId": 0, "agentRegistry": "eip155:1:0x0"}]
        }))
        .unwrap();
        assert_eq!(doc.registrations[0].agent_id, 0);
        for bad in [json!(-1), json!("x1"), json!(1.5)] {
            let result = serde_json::from_value::<Registration>(json!({
                "registrations": [{"agentId": bad, "agentRegistry": "eip155:1:0x0"}]
            }));
            assert!(result.is_err(), "{bad}");
        }
    }

    #[test]
    fn data_uri_round_trips() {
        let doc = Registration::for_offers(&profile(), &[offer("w", &[TEXT_COMPLETION], &[])], &[])
            .unwrap();
        let uri = doc.to_data_uri();
        assert!(uri.starts_with(DATA_URI_PREFIX));
        assert_eq!(Registration::from_data_uri(&uri).unwrap(), doc);
    }

    #[test]
    fn data_uri_variants_are_read() {
        let json = r#"{"name":"n","services":[]}"#;
        let unpadded = general_purpose::STANDARD_NO_PAD.encode(json);
        let url_safe = general_purpose::URL_SAFE.encode("{\"name\":\"\u{00ff}\u{00fe}?>\"}");
        assert!(
            url_safe.contains(['-', '_']),
            "{url_safe} exercises the URL-safe alphabet"
        );
        let cases = [
            format!("data:application/json;base64,{unpadded}"),
            format!("DATA:Application/JSON;charset=utf-8;base64,{unpadded}"),
            format!("data:application/json;base64,{url_safe}"),
            "data:application/json,%7B%22name%22%3A%22n%22%7D".to_string(),
            r#"data:application/json,{"name":"n"}"#.to_string(),
        ];
        for uri in cases {
            let doc = Registration::from_data_uri(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert!(!doc.name.is_empty(), "{uri}");
        }
    }

    #[test]
    fn bad_data_uris_say_what_is_wrong() {
        let variant = |e: &RegistrationError| match e {
            RegistrationError::NotDataUri(_) => "not a data URI",
            RegistrationError::MediaType(_) => "media type",
            RegistrationError::Base64(_) => "base64",
            RegistrationError::PercentEncoding => "percent",
            RegistrationError::Json(_) => "json",
            RegistrationError::Oasf { .. } | RegistrationError::Endpoint { .. } => "offer",
        };
        let cases = [
            ("https://x/agent.json", "not a data URI"),
            ("data:application/json;base64", "not a data URI"),
            ("data:text/plain;base64,e30=", "media type"),
            ("data:application/json;base64,!!!", "base64"),
            ("data:application/json,%7", "percent"),
            ("data:application/json;base64,WzFd", "json"),
        ];
        for (uri, expected) in cases {
            let err = Registration::from_data_uri(uri).unwrap_err();
            assert_eq!(variant(&err), expected, "{uri}: {err}");
        }
        let long = format!("ipfs://{}", "a".repeat(200));
        let message = Registration::from_data_uri(&long).unwrap_err().to_string();
        assert!(message.len() < 150, "{message}");
        assert!(message.contains(DATA_URI_PREFIX), "{message}");
    }
}
