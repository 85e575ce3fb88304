//! What a seller and its facilitator exchange: the verify/settle request, their answers
//! (the settle answer is also the buyer's receipt) and the `/supported` listing.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

use super::{ExactEvmPayload, PaymentPayload, PaymentRequirements, X402Version, lenient};
use crate::network::Network;

/// Body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq)]
pub struct FacilitatorRequest {
    /// Version of the exchange; requirements are written in its shape.
    pub x402_version: X402Version,
    /// The buyer's payment.
    pub payment_payload: PaymentPayload,
    /// The server's requirement it was matched to.
    pub payment_requirements: PaymentRequirements,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FacilitatorRequestIn {
    #[serde(default)]
    x402_version: Option<X402Version>,
    payment_payload: PaymentPayload,
    payment_requirements: PaymentRequirements,
}

impl FacilitatorRequest {
    /// The v2 verify/settle body for a buyer's signed `payload` against `requirement`.
    pub fn v2(requirement: &PaymentRequirements, payload: ExactEvmPayload) -> Self {
        Self {
            x402_version: X402Version::V2,
            payment_payload: PaymentPayload::v2(requirement, payload),
            payment_requirements: requirement.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for FacilitatorRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = FacilitatorRequestIn::deserialize(d)?;
        Ok(Self {
            x402_version: raw.x402_version.unwrap_or(raw.payment_payload.x402_version),
            payment_payload: raw.payment_payload,
            payment_requirements: raw.payment_requirements,
        })
    }
}

impl Serialize for FacilitatorRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("x402Version", &self.x402_version)?;
        map.serialize_entry("paymentPayload", &self.payment_payload)?;
        map.serialize_entry(
            "paymentRequirements",
            &self.payment_requirements.to_wire(self.x402_version),
        )?;
        map.end()
    }
}

/// Answer of `POST /verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would settle.
    pub is_valid: bool,
    /// Machine reason code when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// Human explanation when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// Who pays.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "lenient::opt_checksummed"
    )]
    pub payer: Option<Address>,
}

/// Answer of `POST /settle`, also the receipt in `PAYMENT-RESPONSE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleResponse {
    /// Whether the transfer landed.
    pub success: bool,
    /// Machine reason code on failure.
    pub error_reason: Option<String>,
    /// Human explanation on failure.
    pub error_message: Option<String>,
    /// Who paid.
    pub payer: Option<Address>,
    /// Transaction hash; absent (`""` on the wire) when nothing was sent.
    pub transaction: Option<B256>,
    /// Network settled on.
    pub network: Network,
    /// v2: atomic amount settled.
    pub amount: Option<U256>,
    /// v2 extensions.
    pub extensions: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettleResponseIn {
    success: bool,
    #[serde(default)]
    error_reason: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    payer: Option<String>,
    #[serde(default)]
    transaction: Option<String>,
    network: Network,
    #[serde(default, deserialize_with = "lenient::opt_u256")]
    amount: Option<U256>,
    #[serde(default)]
    extensions: Option<Value>,
}

impl<'de> Deserialize<'de> for SettleResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = SettleResponseIn::deserialize(d)?;
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let payer = non_empty(raw.payer)
            .map(|p| p.parse::<Address>().map_err(de::Error::custom))
            .transpose()?;
        let transaction = non_empty(raw.transaction)
            .map(|t| t.parse::<B256>().map_err(de::Error::custom))
            .transpose()?;
        Ok(Self {
            success: raw.success,
            error_reason: raw.error_reason,
            error_message: raw.error_message,
            payer,
            transaction,
            network: raw.network,
            amount: raw.amount,
            extensions: raw.extensions,
        })
    }
}

impl SettleResponse {
    /// Serializes in the shape of `version` (v1: network name, payer always present,
    /// no amount).
    pub fn to_wire(&self, version: X402Version) -> Value {
        let mut map = Map::new();
        map.insert("success".into(), Value::from(self.success));
        if let Some(reason) = &self.error_reason {
            map.insert("errorReason".into(), Value::from(reason.clone()));
        }
        if let Some(message) = &self.error_message {
            map.insert("errorMessage".into(), Value::from(message.clone()));
        }
        let payer = self.payer.map(|p| p.to_checksum(None));
        match (version, payer) {
            (_, Some(p)) => {
                map.insert("payer".into(), Value::from(p));
            }
            (X402Version::V1, None) => {
                map.insert("payer".into(), Value::from(""));
            }
            (X402Version::V2, None) => {}
        }
        map.insert(
            "transaction".into(),
            Value::from(self.transaction.map(|t| t.to_string()).unwrap_or_default()),
        );
        let network = match version {
            X402Version::V1 => self.network.v1_name(),
            X402Version::V2 => self.network.caip2(),
        };
        map.insert("network".into(), Value::from(network));
        if version == X402Version::V2 {
            if let Some(amount) = self.amount {
                map.insert("amount".into(), Value::from(amount.to_string()));
            }
            if let Some(extensions) = &self.extensions {
                map.insert("extensions".into(), extensions.clone());
            }
        }
        Value::Object(map)
    }
}

/// Writes the v2 shape.
impl Serialize for SettleResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_wire(X402Version::V2).serialize(s)
    }
}

/// One (version, scheme, network) a facilitator can handle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// Protocol version.
    pub x402_version: X402Version,
    /// Scheme.
    pub scheme: String,
    /// Network (v1 facilitators answer with names; read either).
    pub network: Network,
    /// Scheme-specific data.
    #[serde(default)]
    pub extra: Option<Value>,
}

/// Writes the network the way its version spells it (v1 names, v2 CAIP-2).
impl Serialize for SupportedKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("x402Version", &self.x402_version)?;
        map.serialize_entry("scheme", &self.scheme)?;
        let network = match self.x402_version {
            X402Version::V1 => self.network.v1_name(),
            X402Version::V2 => self.network.caip2(),
        };
        map.serialize_entry("network", &network)?;
        if let Some(extra) = &self.extra {
            map.serialize_entry("extra", extra)?;
        }
        map.end()
    }
}

/// Answer of `GET /supported`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Supported {
    /// What the facilitator settles.
    pub kinds: Vec<SupportedKind>,
    /// Extension keys it understands (absent in v1 answers).
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses by CAIP-2 pattern (absent in v1 answers).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

impl Supported {
    /// Whether `network` under `scheme` is listed for some version.
    pub fn supports(&self, scheme: &str, network: &Network) -> bool {
        self.kinds
            .iter()
            .any(|k| k.scheme == scheme && &k.network == network)
    }
}
