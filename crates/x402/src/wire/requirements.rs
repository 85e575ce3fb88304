//! What a resource costs and how to pay it: the requirement, the resource it names and
//! the 402 challenge that lists them, each read from either version into one value and
//! written back in the shape of the version asked for.

use alloy::primitives::{Address, U256};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

use super::{SCHEME_EXACT, X402Version, lenient};
use crate::network::{Asset, Network};

/// `extra` of an exact-EVM requirement: the token's EIP-712 domain plus anything else
/// a server added (kept so it round-trips).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extra {
    /// EIP-712 domain name of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// EIP-712 domain version of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Other keys (`assetTransferMethod`, vendor fields).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Extra {
    /// The domain of a known asset.
    pub fn for_asset(asset: &Asset) -> Self {
        Self {
            name: Some(asset.eip712_name.clone()),
            version: Some(asset.eip712_version.clone()),
            other: Map::new(),
        }
    }
}

/// What a resource costs and how to pay it, normalized from either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequirements {
    /// Payment scheme, `exact` for EIP-3009.
    pub scheme: String,
    /// Where to pay.
    pub network: Network,
    /// Exact atomic amount (`amount` in v2, `maxAmountRequired` in v1).
    pub amount: U256,
    /// Recipient.
    pub pay_to: Address,
    /// Token contract.
    pub asset: Address,
    /// How long an authorization may stay valid.
    pub max_timeout_seconds: u64,
    /// Token EIP-712 domain and other scheme data.
    pub extra: Option<Extra>,
    /// v1 only: the resource URL on each requirement.
    pub resource: Option<String>,
    /// v1 only: description.
    pub description: Option<String>,
    /// v1 only: response mime type.
    pub mime_type: Option<String>,
    /// v1 only: response schema.
    pub output_schema: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequirementsIn {
    scheme: String,
    network: Network,
    #[serde(default, deserialize_with = "lenient::opt_u256")]
    amount: Option<U256>,
    #[serde(default, deserialize_with = "lenient::opt_u256")]
    max_amount_required: Option<U256>,
    pay_to: Address,
    asset: Address,
    #[serde(deserialize_with = "lenient::u64")]
    max_timeout_seconds: u64,
    #[serde(default)]
    extra: Option<Extra>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    output_schema: Option<Value>,
}

impl<'de> Deserialize<'de> for PaymentRequirements {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RequirementsIn::deserialize(d)?;
        let amount = match (raw.amount, raw.max_amount_required) {
            (Some(a), Some(m)) if a != m => {
                return Err(de::Error::custom(format!(
                    "amount {a} and maxAmountRequired {m} disagree"
                )));
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(de::Error::missing_field("amount")),
        };
        Ok(Self {
            scheme: raw.scheme,
            network: raw.network,
            amount,
            pay_to: raw.pay_to,
            asset: raw.asset,
            max_timeout_seconds: raw.max_timeout_seconds,
            extra: raw.extra,
            resource: raw.resource,
            description: raw.description,
            mime_type: raw.mime_type,
            output_schema: raw.output_schema,
        })
    }
}

impl PaymentRequirements {
    /// The exact-EVM requirement for paying `amount` of `asset` on `network` to `pay_to`.
    pub fn exact(
        network: Network,
        asset: &Asset,
        amount: U256,
        pay_to: Address,
        max_timeout_seconds: u64,
    ) -> Self {
        Self {
            scheme: SCHEME_EXACT.to_string(),
            network,
            amount,
            pay_to,
            asset: asset.address,
            max_timeout_seconds,
            extra: Some(Extra::for_asset(asset)),
            resource: None,
            description: None,
            mime_type: None,
            output_schema: None,
        }
    }

    /// The token's EIP-712 (name, version), when the requirement carries them.
    pub fn eip712_domain(&self) -> Option<(&str, &str)> {
        let extra = self.extra.as_ref()?;
        Some((extra.name.as_deref()?, extra.version.as_deref()?))
    }

    /// Serializes in the shape of `version`.
    pub fn to_wire(&self, version: X402Version) -> Value {
        let mut map = Map::new();
        let mut put = |k: &str, v: Value| {
            map.insert(k.to_string(), v);
        };
        put("scheme", Value::from(self.scheme.clone()));
        match version {
            X402Version::V1 => {
                put("network", Value::from(self.network.v1_name()));
                put("maxAmountRequired", Value::from(self.amount.to_string()));
                put(
                    "resource",
                    Value::from(self.resource.clone().unwrap_or_default()),
                );
                put(
                    "description",
                    Value::from(self.description.clone().unwrap_or_default()),
                );
                put(
                    "mimeType",
                    Value::from(self.mime_type.clone().unwrap_or_default()),
                );
                if let Some(schema) = &self.output_schema {
                    put("outputSchema", schema.clone());
                }
            }
            X402Version::V2 => {
                put("network", Value::from(self.network.caip2()));
                put("amount", Value::from(self.amount.to_string()));
            }
        }
        put("payTo", Value::from(self.pay_to.to_checksum(None)));
        put("asset", Value::from(self.asset.to_checksum(None)));
        put("maxTimeoutSeconds", Value::from(self.max_timeout_seconds));
        if let Some(extra) = &self.extra {
            put("extra", serde_json::to_value(extra).unwrap_or(Value::Null));
        }
        Value::Object(map)
    }
}

/// Writes the v2 shape; v1 writers use [`PaymentRequirements::to_wire`].
impl Serialize for PaymentRequirements {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_wire(X402Version::V2).serialize(s)
    }
}

/// The resource a v2 402 or payload refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The URL being paid for.
    pub url: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Response mime type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The 402 challenge: what the server accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRequired {
    /// Version of the challenge.
    pub x402_version: X402Version,
    /// Why payment is required (or why the last one failed).
    pub error: Option<String>,
    /// v2: the resource.
    pub resource: Option<ResourceInfo>,
    /// Acceptable payments on EVM networks; entries on other namespaces are dropped
    /// on read because nothing here can pay them.
    pub accepts: Vec<PaymentRequirements>,
    /// v2 extensions, kept verbatim.
    pub extensions: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentRequiredIn {
    x402_version: X402Version,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    resource: Option<ResourceInfo>,
    #[serde(default)]
    accepts: Vec<Value>,
    #[serde(default)]
    extensions: Option<Value>,
}

impl<'de> Deserialize<'de> for PaymentRequired {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = PaymentRequiredIn::deserialize(d)?;
        let mut accepts = Vec::with_capacity(raw.accepts.len());
        for entry in raw.accepts {
            let on_evm = entry
                .get("network")
                .and_then(Value::as_str)
                .and_then(|n| Network::parse(n).ok())
                .is_some_and(|n| n.chain_id().is_some());
            if on_evm {
                accepts.push(serde_json::from_value(entry).map_err(de::Error::custom)?);
            }
        }
        Ok(Self {
            x402_version: raw.x402_version,
            error: raw.error,
            resource: raw.resource,
            accepts,
            extensions: raw.extensions,
        })
    }
}

impl Serialize for PaymentRequired {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("x402Version", &self.x402_version)?;
        map.serialize_entry("error", &self.error.clone().unwrap_or_default())?;
        if self.x402_version == X402Version::V2
            && let Some(resource) = &self.resource
        {
            map.serialize_entry("resource", resource)?;
        }
        let accepts: Vec<Value> = self
            .accepts
            .iter()
            .map(|r| r.to_wire(self.x402_version))
            .collect();
        map.serialize_entry("accepts", &accepts)?;
        if self.x402_version == X402Version::V2
            && let Some(extensions) = &self.extensions
        {
            map.serialize_entry("extensions", extensions)?;
        }
        map.end()
    }
}
