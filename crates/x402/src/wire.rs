//! x402 wire types for protocol versions 1 and 2.
//!
//! Every type reads both versions leniently (either amount field, either network
//! spelling, integers as strings or numbers, signature `v` as 0/1 or 27/28) into one
//! normalized value, and writes back exactly the shape of the version it is asked for,
//! because official clients deep-compare what they sent with what they get back.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

use crate::lenient;
use crate::network::{Asset, Network};

/// The only scheme agora pays and accepts today.
pub const SCHEME_EXACT: &str = "exact";

/// A protocol version on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum X402Version {
    /// Body-based 402, `X-PAYMENT`, network names.
    V1,
    /// `PAYMENT-REQUIRED` header, `PAYMENT-SIGNATURE`, CAIP-2, `accepted` echo.
    V2,
}

impl X402Version {
    /// The integer written as `x402Version`.
    pub fn number(self) -> u8 {
        match self {
            X402Version::V1 => 1,
            X402Version::V2 => 2,
        }
    }

    fn from_number<E: de::Error>(n: u64) -> Result<Self, E> {
        match n {
            1 => Ok(X402Version::V1),
            2 => Ok(X402Version::V2),
            other => Err(E::custom(format!(
                "unsupported x402Version {other}; this side speaks versions 1 and 2"
            ))),
        }
    }
}

impl Serialize for X402Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

impl<'de> Deserialize<'de> for X402Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        X402Version::from_number(lenient::u64(d)?)
    }
}

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

#[cfg(test)]
mod tests {
    use alloy::primitives::address;
    use serde_json::json;

    use super::*;

    const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

    fn v2_requirement() -> Value {
        json!({
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": "1000",
            "payTo": PAY_TO,
            "asset": USDC,
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        })
    }

    fn v1_requirement() -> Value {
        json!({
            "scheme": "exact",
            "network": "base-sepolia",
            "maxAmountRequired": "1000",
            "resource": "http://127.0.0.1/x",
            "description": "a thing",
            "mimeType": "application/json",
            "payTo": PAY_TO,
            "asset": USDC,
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        })
    }

    fn exact_payload(v: &str) -> Value {
        json!({
            "signature": format!("0x{}{}", "11".repeat(64), v),
            "authorization": {
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                "to": PAY_TO,
                "value": "1000",
                "validAfter": "1700000000",
                "validBefore": "1700000600",
                "nonce": format!("0x{}", "ab".repeat(32)),
            }
        })
    }

    #[test]
    fn v2_requirement_round_trips_exactly() {
        let parsed: PaymentRequirements = serde_json::from_value(v2_requirement()).unwrap();
        assert_eq!(parsed.amount, U256::from(1000));
        assert_eq!(parsed.eip712_domain(), Some(("USDC", "2")));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), v2_requirement());
    }

    #[test]
    fn v1_requirement_round_trips_exactly() {
        let parsed: PaymentRequirements = serde_json::from_value(v1_requirement()).unwrap();
        assert_eq!(parsed.network, Network::BASE_SEPOLIA);
        assert_eq!(parsed.to_wire(X402Version::V1), v1_requirement());
    }

    #[test]
    fn requirement_reads_lenient_forms() {
        let mut r = v1_requirement();
        r["network"] = json!("eip155:84532");
        r["maxAmountRequired"] = json!(1000);
        r["maxTimeoutSeconds"] = json!("60");
        let parsed: PaymentRequirements = serde_json::from_value(r).unwrap();
        assert_eq!(parsed.amount, U256::from(1000));
        assert_eq!(parsed.max_timeout_seconds, 60);

        let mut both = v2_requirement();
        both["maxAmountRequired"] = json!("1000");
        assert!(serde_json::from_value::<PaymentRequirements>(both.clone()).is_ok());
        both["maxAmountRequired"] = json!("999");
        let err = serde_json::from_value::<PaymentRequirements>(both).unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");

        let mut none = v2_requirement();
        none.as_object_mut().unwrap().remove("amount");
        assert!(serde_json::from_value::<PaymentRequirements>(none).is_err());
    }

    #[test]
    fn extra_keeps_unknown_keys() {
        let mut r = v2_requirement();
        r["extra"]["assetTransferMethod"] = json!("eip3009");
        let parsed: PaymentRequirements = serde_json::from_value(r.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), r);
    }

    #[test]
    fn payment_required_v2_round_trips_and_drops_non_evm_entries() {
        let solana = json!({
            "scheme": "exact", "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
            "amount": "1000", "payTo": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
            "asset": "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", "maxTimeoutSeconds": 60
        });
        let body = json!({
            "x402Version": 2,
            "error": "payment required",
            "resource": {"url": "http://127.0.0.1/x", "description": "d", "mimeType": "text/plain"},
            "accepts": [v2_requirement(), solana],
        });
        let parsed: PaymentRequired = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(parsed.accepts.len(), 1);
        let mut expected = body;
        expected["accepts"] = json!([v2_requirement()]);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), expected);
    }

    #[test]
    fn payment_required_v1_round_trips() {
        let body = json!({"x402Version": 1, "error": "X-PAYMENT header is required", "accepts": [v1_requirement()]});
        let parsed: PaymentRequired = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(parsed.x402_version, X402Version::V1);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
    }

    #[test]
    fn payment_payload_v2_round_trips() {
        let payload = json!({
            "x402Version": 2,
            "resource": {"url": "http://127.0.0.1/x"},
            "accepted": v2_requirement(),
            "payload": exact_payload("1b"),
        });
        let parsed: PaymentPayload = serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(parsed.scheme, "exact");
        assert_eq!(parsed.network, Network::BASE_SEPOLIA);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), payload);
    }

    #[test]
    fn payment_payload_v1_round_trips() {
        let payload = json!({
            "x402Version": 1, "scheme": "exact", "network": "base-sepolia",
            "payload": exact_payload("1c"),
        });
        let parsed: PaymentPayload = serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(parsed.x402_version, X402Version::V1);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), payload);
    }

    #[test]
    fn payload_reads_numbers_and_low_v() {
        let mut p = exact_payload("00");
        p["authorization"]["value"] = json!(1000);
        p["authorization"]["validAfter"] = json!(0);
        let payload = json!({"x402Version": "2", "accepted": v2_requirement(), "payload": p});
        let parsed: PaymentPayload = serde_json::from_value(payload).unwrap();
        assert_eq!(parsed.payload.signature[64], 27);
        assert_eq!(parsed.payload.authorization.value, U256::from(1000));
        let mut p = exact_payload("01");
        p["authorization"]["validBefore"] = json!("0x6553f358");
        let parsed: ExactEvmPayload = serde_json::from_value(p).unwrap();
        assert_eq!(parsed.signature[64], 28);
        assert_eq!(parsed.authorization.valid_before, U256::from(1700000600u64));
    }

    #[test]
    fn payload_rejects_bad_versions_and_missing_parts() {
        let bad = [
            json!({"x402Version": 3, "accepted": v2_requirement(), "payload": exact_payload("1b")}),
            json!({"x402Version": 2, "payload": exact_payload("1b")}),
            json!({"x402Version": 1, "network": "base-sepolia", "payload": exact_payload("1b")}),
            json!({"x402Version": 2, "accepted": v2_requirement()}),
            json!({"x402Version": 2, "accepted": v2_requirement(), "payload": {"signature": "0xzz"}}),
        ];
        for b in bad {
            assert!(
                serde_json::from_value::<PaymentPayload>(b.clone()).is_err(),
                "{b}"
            );
        }
    }

    #[test]
    fn facilitator_request_writes_requirements_in_its_version() {
        let payload: PaymentPayload = serde_json::from_value(json!({
            "x402Version": 1, "scheme": "exact", "network": "base-sepolia",
            "payload": exact_payload("1b"),
        }))
        .unwrap();
        let req = FacilitatorRequest {
            x402_version: X402Version::V1,
            payment_payload: payload,
            payment_requirements: serde_json::from_value(v1_requirement()).unwrap(),
        };
        let wire = serde_json::to_value(&req).unwrap();
        assert_eq!(wire["paymentRequirements"], v1_requirement());
        let back: FacilitatorRequest = serde_json::from_value(wire).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn verify_response_round_trips() {
        let invalid = json!({"isValid": false, "invalidReason": "invalid_exact_evm_payload_signature", "invalidMessage": "bad"});
        let parsed: VerifyResponse = serde_json::from_value(invalid.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), invalid);
        let valid = json!({"isValid": true, "payer": PAY_TO});
        let parsed: VerifyResponse = serde_json::from_value(valid.clone()).unwrap();
        assert_eq!(
            parsed.payer,
            Some(address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"))
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), valid);
    }

    #[test]
    fn settle_response_round_trips_in_both_versions() {
        let tx = format!("0x{}", "cd".repeat(32));
        let v2 = json!({"success": true, "payer": PAY_TO, "transaction": tx, "network": "eip155:84532", "amount": "1000"});
        let parsed: SettleResponse = serde_json::from_value(v2.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), v2);
        let v1 =
            json!({"success": true, "payer": PAY_TO, "transaction": tx, "network": "base-sepolia"});
        assert_eq!(parsed.to_wire(X402Version::V1), v1);

        let failed = json!({"success": false, "errorReason": "invalid_transaction_state", "transaction": "", "network": "base-sepolia", "payer": ""});
        let parsed: SettleResponse = serde_json::from_value(failed.clone()).unwrap();
        assert_eq!(parsed.transaction, None);
        assert_eq!(parsed.payer, None);
        assert_eq!(parsed.to_wire(X402Version::V1), failed);
    }

    #[test]
    fn supported_reads_v1_and_v2_answers() {
        let v2 = json!({
            "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}],
            "extensions": [],
            "signers": {"eip155:*": [PAY_TO]}
        });
        let parsed: Supported = serde_json::from_value(v2.clone()).unwrap();
        assert!(parsed.supports("exact", &Network::BASE_SEPOLIA));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), v2);
        let v1 =
            json!({"kinds": [{"x402Version": 1, "scheme": "exact", "network": "base-sepolia"}]});
        let parsed: Supported = serde_json::from_value(v1).unwrap();
        assert!(parsed.supports("exact", &Network::BASE_SEPOLIA));
        assert!(!parsed.supports("exact", &Network::Eip155(8453)));
    }
}
