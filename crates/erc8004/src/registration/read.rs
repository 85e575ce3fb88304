//! The lenient reader of registration documents: every field optional, legacy
//! `endpoints`, quoted agent ids, numbers in string maps, converted into the typed
//! document with the spec's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::{REGISTRATION_TYPE, Registration, RegistrationRef, Service};

/// The wire form as read: every field optional, `endpoints` next to `services`, string
/// maps that may hold numbers. Converted into [`Registration`] with the spec defaults.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawRegistration {
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
pub(super) struct RawService {
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
pub(super) fn number_or_decimal_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
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
    use serde_json::json;

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
}
