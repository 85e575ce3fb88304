//! The buyer's side of the exchange: the signed EIP-3009 authorization and the payment
//! that carries it, normalized from either version and either header.

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::Value;

use super::{PaymentRequirements, ResourceInfo, X402Version, lenient};
use crate::network::Network;

/// The signed EIP-3009 authorization fields, as carried in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// Payer.
    #[serde(serialize_with = "lenient::checksummed")]
    pub from: Address,
    /// Recipient.
    #[serde(serialize_with = "lenient::checksummed")]
    pub to: Address,
    /// Atomic amount.
    #[serde(
        deserialize_with = "lenient::u256",
        serialize_with = "lenient::u256_string"
    )]
    pub value: U256,
    /// Unix time after which the authorization is valid.
    #[serde(
        deserialize_with = "lenient::u256",
        serialize_with = "lenient::u256_string"
    )]
    pub valid_after: U256,
    /// Unix time before which it must be used.
    #[serde(
        deserialize_with = "lenient::u256",
        serialize_with = "lenient::u256_string"
    )]
    pub valid_before: U256,
    /// 32 random bytes; one use per payer.
    pub nonce: B256,
}

/// The exact-EVM payload: a signature over an [`Authorization`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    /// ECDSA (65 bytes, `v` normalized to 27/28) or a contract-wallet signature.
    #[serde(deserialize_with = "normalized_signature")]
    pub signature: Bytes,
    /// What was signed.
    pub authorization: Authorization,
}

fn normalized_signature<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let mut bytes = Bytes::deserialize(d)?.to_vec();
    if bytes.len() == 65 && bytes[64] < 27 {
        bytes[64] += 27;
    }
    Ok(bytes.into())
}

/// A buyer's payment, normalized from either version and either header.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentPayload {
    /// Version the buyer spoke.
    pub x402_version: X402Version,
    /// Scheme paid (v1 top-level, v2 from `accepted`).
    pub scheme: String,
    /// Network paid on.
    pub network: Network,
    /// v2: the requirement the buyer chose, echoed.
    pub accepted: Option<PaymentRequirements>,
    /// v2: the resource paid for.
    pub resource: Option<ResourceInfo>,
    /// The signed authorization.
    pub payload: ExactEvmPayload,
    /// v2 extensions, kept verbatim.
    pub extensions: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentPayloadIn {
    x402_version: X402Version,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    network: Option<Network>,
    #[serde(default)]
    accepted: Option<PaymentRequirements>,
    #[serde(default)]
    resource: Option<ResourceInfo>,
    payload: ExactEvmPayload,
    #[serde(default)]
    extensions: Option<Value>,
}

impl PaymentPayload {
    /// The v2 payment a buyer sends for `accepted` with a signed `payload`.
    pub fn v2(accepted: &PaymentRequirements, payload: ExactEvmPayload) -> Self {
        Self {
            x402_version: X402Version::V2,
            scheme: accepted.scheme.clone(),
            network: accepted.network.clone(),
            accepted: Some(accepted.clone()),
            resource: None,
            payload,
            extensions: None,
        }
    }
}

impl<'de> Deserialize<'de> for PaymentPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = PaymentPayloadIn::deserialize(d)?;
        let scheme = raw
            .scheme
            .or_else(|| raw.accepted.as_ref().map(|a| a.scheme.clone()))
            .ok_or_else(|| de::Error::missing_field("scheme (or accepted.scheme)"))?;
        let network = raw
            .network
            .or_else(|| raw.accepted.as_ref().map(|a| a.network.clone()))
            .ok_or_else(|| de::Error::missing_field("network (or accepted.network)"))?;
        if raw.x402_version == X402Version::V2 && raw.accepted.is_none() {
            return Err(de::Error::missing_field("accepted"));
        }
        Ok(Self {
            x402_version: raw.x402_version,
            scheme,
            network,
            accepted: raw.accepted,
            resource: raw.resource,
            payload: raw.payload,
            extensions: raw.extensions,
        })
    }
}

impl Serialize for PaymentPayload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("x402Version", &self.x402_version)?;
        match (self.x402_version, &self.accepted) {
            (X402Version::V2, Some(accepted)) => {
                if let Some(resource) = &self.resource {
                    map.serialize_entry("resource", resource)?;
                }
                map.serialize_entry("accepted", accepted)?;
            }
            _ => {
                map.serialize_entry("scheme", &self.scheme)?;
                map.serialize_entry("network", &self.network.v1_name())?;
            }
        }
        map.serialize_entry("payload", &self.payload)?;
        if self.x402_version == X402Version::V2
            && let Some(extensions) = &self.extensions
        {
            map.serialize_entry("extensions", extensions)?;
        }
        map.end()
    }
}
