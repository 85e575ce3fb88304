//! Signing the chosen offer once, into a [`SignedPayment`] that carries the exact
//! header to send. A retry sends this same value again, never a new signature, so a
//! lost answer can never cost twice; the caller persists it before sending.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::challenge::{Challenge, Offer};
use crate::eip3009::{self, SignError};
use crate::header;
use crate::time::UnixTimestamp;
use crate::wire::{Authorization, PaymentRequirements, X402Version};

/// The longest a buyer's authorization stays valid, whatever the seller's
/// `maxTimeoutSeconds`: a leaked or unsent authorization is usable for at most this.
pub const MAX_VALIDITY_SECONDS: u64 = 600;

/// How long an authorization for `requirement` stays valid:
/// `min(maxTimeoutSeconds, 600)`, and 600 when the seller says 0 (no limit given).
pub fn validity_seconds(requirement: &PaymentRequirements) -> u64 {
    match requirement.max_timeout_seconds {
        0 => MAX_VALIDITY_SECONDS,
        t => t.min(MAX_VALIDITY_SECONDS),
    }
}

/// A signed payment ready to send, and to send again unchanged on a retry.
///
/// It serializes (JSON) so a ledger can keep it before it is sent and a later
/// `--resume` can load it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedPayment {
    /// The version the server speaks; decides the header.
    pub version: X402Version,
    /// `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1).
    pub header_name: String,
    /// The base64 header value, sent byte for byte on every try.
    pub header_value: String,
    /// The requirement paid.
    pub requirement: PaymentRequirements,
    /// What was signed (payer, amount, window, nonce).
    pub authorization: Authorization,
}

impl SignedPayment {
    /// The authorization nonce: with the payer and token, the key of this payment.
    pub fn nonce(&self) -> B256 {
        self.authorization.nonce
    }

    /// Who pays.
    pub fn payer(&self) -> Address {
        self.authorization.from
    }

    /// Unix time after which the authorization can no longer move money.
    pub fn valid_before(&self) -> U256 {
        self.authorization.valid_before
    }

    /// [`SignedPayment::valid_before`] in seconds, as ledgers keep it (saturating:
    /// this client never signs past `now + 600`).
    pub fn valid_before_secs(&self) -> u64 {
        u64::try_from(self.authorization.valid_before).unwrap_or(u64::MAX)
    }

    /// Who is paid.
    pub fn pay_to(&self) -> Address {
        self.requirement.pay_to
    }
}

/// What signing `offer` for `payer` at `now` would authorize, for `--dry-run`: the
/// same window and amounts [`sign`] uses; the nonce is drawn only when signing, so
/// it is zero here.
pub fn preview(payer: Address, offer: &Offer, now: impl Into<UnixTimestamp>) -> Authorization {
    let now = now.into();
    let requirement = &offer.requirement;
    Authorization {
        from: payer,
        to: requirement.pay_to,
        value: requirement.amount,
        valid_after: now
            .saturating_sub(eip3009::VALID_AFTER_SKEW_SECONDS)
            .to_u256(),
        valid_before: now.saturating_add(validity_seconds(requirement)).to_u256(),
        nonce: B256::ZERO,
    }
}

/// The header a payment to a server speaking `version` travels in.
pub fn header_name(version: X402Version) -> &'static str {
    match version {
        X402Version::V2 => header::PAYMENT_SIGNATURE,
        X402Version::V1 => header::X_PAYMENT,
    }
}

/// Signs `offer` of `challenge` with `signer` at `now`, valid for
/// [`validity_seconds`], and encodes it the way the server speaks: v2 echoes the raw
/// `accepted` (and `resource`), v1 names the network as the server wrote it.
pub fn sign(
    signer: &PrivateKeySigner,
    challenge: &Challenge,
    offer: &Offer,
    now: impl Into<UnixTimestamp>,
) -> Result<SignedPayment, SignError> {
    let requirement = &offer.requirement;
    let payload = eip3009::authorize_for(signer, requirement, now, validity_seconds(requirement))?;
    let payload_json =
        serde_json::to_value(&payload).map_err(|e| SignError::Signer(e.to_string()))?;
    let mut map = Map::new();
    map.insert(
        "x402Version".into(),
        Value::from(challenge.version.number()),
    );
    match challenge.version {
        X402Version::V2 => {
            if let Some(resource) = &challenge.resource {
                map.insert("resource".into(), resource.clone());
            }
            map.insert("accepted".into(), offer.raw.clone());
        }
        X402Version::V1 => {
            map.insert("scheme".into(), Value::from(requirement.scheme.clone()));
            let network = offer
                .raw
                .get("network")
                .cloned()
                .unwrap_or_else(|| Value::from(requirement.network.v1_name()));
            map.insert("network".into(), network);
        }
    }
    map.insert("payload".into(), payload_json);
    let header_value =
        header::encode(&Value::Object(map)).map_err(|e| SignError::Signer(e.to_string()))?;
    Ok(SignedPayment {
        version: challenge.version,
        header_name: header_name(challenge.version).to_string(),
        header_value,
        requirement: requirement.clone(),
        authorization: payload.authorization,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::eip3009::verify_offline;
    use crate::wire::PaymentPayload;

    const NOW: u64 = 1_800_000_000;

    fn challenge(version: u8, network: &str, timeout: u64) -> Challenge {
        let mut offer = json!({
            "scheme": "exact", "network": network, "amount": "1000",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "maxTimeoutSeconds": timeout, "extra": {"name": "USDC", "version": "2", "vendor": "kept"}
        });
        if version == 1 {
            offer["maxAmountRequired"] = offer["amount"].take();
            offer.as_object_mut().unwrap().remove("amount");
            offer["resource"] = json!("http://x/y");
        }
        Challenge::from_json(
            &json!({"x402Version": version, "resource": {"url": "http://x/y"}, "accepts": [offer]}),
        )
        .unwrap()
    }

    #[test]
    fn the_window_is_capped_at_ten_minutes() {
        let signer = PrivateKeySigner::random();
        for (timeout, window) in [(60, 60), (600, 600), (3600, 600), (0, 600)] {
            let c = challenge(2, "eip155:84532", timeout);
            let signed = sign(&signer, &c, &c.offers[0], NOW).unwrap();
            assert_eq!(signed.valid_before(), U256::from(NOW + window), "{timeout}");
            assert_eq!(signed.valid_before_secs(), NOW + window);
            assert_eq!(
                signed.authorization.valid_after,
                U256::from(NOW - eip3009::VALID_AFTER_SKEW_SECONDS)
            );
        }
    }

    #[test]
    fn the_preview_is_what_gets_signed_but_the_nonce() {
        let signer = PrivateKeySigner::random();
        let c = challenge(2, "eip155:84532", 3600);
        let signed = sign(&signer, &c, &c.offers[0], NOW).unwrap();
        let mut shown = preview(signer.address(), &c.offers[0], NOW);
        assert_eq!(shown.nonce, B256::ZERO);
        shown.nonce = signed.nonce();
        assert_eq!(shown, signed.authorization);
    }

    #[test]
    fn v2_echoes_accepted_verbatim_and_verifies() {
        let signer = PrivateKeySigner::random();
        let c = challenge(2, "eip155:84532", 60);
        let signed = sign(&signer, &c, &c.offers[0], NOW).unwrap();
        assert_eq!(signed.header_name, "payment-signature");
        let json: Value = header::decode(&signed.header_value).unwrap();
        assert_eq!(json["accepted"], c.offers[0].raw);
        assert_eq!(json["resource"]["url"], "http://x/y");
        let payment: PaymentPayload = header::decode(&signed.header_value).unwrap();
        let req = &c.offers[0].requirement;
        assert_eq!(verify_offline(&payment, req, NOW), Ok(signer.address()));
        assert_eq!(signed.payer(), signer.address());
        assert_eq!(signed.nonce(), payment.payload.authorization.nonce);
        let stored = serde_json::to_string(&signed).unwrap();
        assert_eq!(
            serde_json::from_str::<SignedPayment>(&stored).unwrap(),
            signed
        );
    }

    #[test]
    fn v1_sends_x_payment_with_the_v1_network_name() {
        let signer = PrivateKeySigner::random();
        let c = challenge(1, "base-sepolia", 60);
        let signed = sign(&signer, &c, &c.offers[0], NOW).unwrap();
        assert_eq!(signed.header_name, "x-payment");
        let json: Value = header::decode(&signed.header_value).unwrap();
        assert_eq!(json["x402Version"], 1);
        assert_eq!(json["network"], "base-sepolia");
        assert!(json.get("accepted").is_none());
        let payment: PaymentPayload = header::decode(&signed.header_value).unwrap();
        assert_eq!(
            verify_offline(&payment, &c.offers[0].requirement, NOW),
            Ok(signer.address())
        );
    }
}
