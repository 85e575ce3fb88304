//! EIP-3009 `TransferWithAuthorization`: the typed data a buyer signs, the signing
//! itself, and the offline half of verification (everything short of asking the chain).
//!
//! The checks run in the order of the reference facilitator so that agora answers the
//! same reason as the official SDKs for the same bad payment.

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};

mod cancel;
mod recovered;
mod spent;

pub use cancel::{cancel_call, sign_cancel};
pub use spent::{Spent, spent_in};

use crate::reason::{ErrorReason, Invalid};
use crate::time::UnixTimestamp;
use crate::wire::{
    Authorization, ExactEvmPayload, PaymentPayload, PaymentRequirements, SCHEME_EXACT,
};

sol! {
    /// The EIP-3009 struct, hashed per EIP-712.
    #[derive(Debug)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

sol! {
    /// What a facilitator needs of an EIP-3009 token (USDC v2.2 and agora's LocalUSDC).
    #[sol(rpc)]
    #[allow(clippy::too_many_arguments)]
    interface IEip3009Token {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
        event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

        function name() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature) external;
        function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
    }
}

/// Seconds before "now" that a fresh authorization becomes valid, as the official
/// clients do, so a payee whose clock runs behind still accepts it.
pub const VALID_AFTER_SKEW_SECONDS: u64 = 600;
/// Window used when a requirement says `maxTimeoutSeconds: 0` (Python client behaviour).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;
/// A payment must stay valid at least this long after verification (reference rule).
pub const MIN_REMAINING_VALIDITY_SECONDS: u64 = 6;

/// secp256k1 order / 2: signatures with a larger `s` are malleable and tokens built on
/// OpenZeppelin's ECDSA reject them, so verification must too.
const SECP256K1_HALF_ORDER: U256 = U256::from_be_slice(&[
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

/// Identifies one EIP-3009 authorization: a token on a chain, a payer and a nonce. The
/// token allows each at most once, so this is the key of every replay guard, the
/// gateway's and the facilitator's alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthorizationKey {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Token contract.
    pub asset: Address,
    /// Payer.
    pub payer: Address,
    /// The authorization nonce.
    pub nonce: B256,
}

impl AuthorizationKey {
    /// The key of `payment` paying `requirements`; `None` off EVM networks.
    pub fn of(payment: &PaymentPayload, requirements: &PaymentRequirements) -> Option<Self> {
        Some(Self {
            chain_id: requirements.network.chain_id()?,
            asset: requirements.asset,
            payer: payment.payload.authorization.from,
            nonce: payment.payload.authorization.nonce,
        })
    }
}

/// Why a buyer could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The requirement does not name the token's EIP-712 domain.
    #[error(
        "the payment requirement has no extra.name/extra.version, so the token's EIP-712 domain is unknown"
    )]
    MissingDomain,
    /// Not an EVM network.
    #[error("cannot sign for network {0}: only eip155 networks are supported")]
    NotEvm(String),
    /// Unsupported scheme.
    #[error("cannot pay scheme {0:?}: only \"exact\" is supported")]
    Scheme(String),
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signer(String),
}

/// The EIP-712 domain of `token` on `chain_id`.
pub fn domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.to_string().into()),
        Some(version.to_string().into()),
        Some(U256::from(chain_id)),
        Some(token),
        None,
    )
}

/// The domain a requirement asks the buyer to sign under.
fn requirement_domain(requirements: &PaymentRequirements) -> Result<Eip712Domain, SignError> {
    let (name, version) = requirements
        .eip712_domain()
        .ok_or(SignError::MissingDomain)?;
    let chain_id = requirements
        .network
        .chain_id()
        .ok_or_else(|| SignError::NotEvm(requirements.network.caip2()))?;
    Ok(domain(name, version, chain_id, requirements.asset))
}

/// The 32-byte EIP-712 digest of an authorization under `domain`.
pub fn signing_hash(authorization: &Authorization, domain: &Eip712Domain) -> B256 {
    TransferWithAuthorization {
        from: authorization.from,
        to: authorization.to,
        value: authorization.value,
        validAfter: authorization.valid_after,
        validBefore: authorization.valid_before,
        nonce: authorization.nonce,
    }
    .eip712_signing_hash(domain)
}

/// Signs `authorization` under `domain`, giving a 65-byte signature with `v` 27/28.
pub fn sign_authorization(
    signer: &PrivateKeySigner,
    authorization: Authorization,
    domain: &Eip712Domain,
) -> Result<ExactEvmPayload, SignError> {
    let signature = signer
        .sign_hash_sync(&signing_hash(&authorization, domain))
        .map_err(|e| SignError::Signer(e.to_string()))?;
    Ok(ExactEvmPayload {
        signature: signature.as_bytes().to_vec().into(),
        authorization,
    })
}

/// Buyer side: a fresh authorization paying `requirements` exactly, with a random
/// nonce, valid from `now - 600` until `now + maxTimeoutSeconds`.
pub fn authorize(
    signer: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    now: impl Into<UnixTimestamp>,
) -> Result<ExactEvmPayload, SignError> {
    let timeout = match requirements.max_timeout_seconds {
        0 => DEFAULT_TIMEOUT_SECONDS,
        t => t,
    };
    authorize_for(signer, requirements, now, timeout)
}

/// Like [`authorize`], but valid for exactly `timeout` seconds after `now`, for buyers
/// that choose their own window (the x402 client caps it, see
/// `client::validity_seconds`) instead of trusting the seller's `maxTimeoutSeconds`.
pub fn authorize_for(
    signer: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    now: impl Into<UnixTimestamp>,
    timeout: u64,
) -> Result<ExactEvmPayload, SignError> {
    let now = now.into();
    if requirements.scheme != SCHEME_EXACT {
        return Err(SignError::Scheme(requirements.scheme.clone()));
    }
    let domain = requirement_domain(requirements)?;
    let authorization = Authorization {
        from: signer.address(),
        to: requirements.pay_to,
        value: requirements.amount,
        valid_after: now.saturating_sub(VALID_AFTER_SKEW_SECONDS).to_u256(),
        valid_before: now.saturating_add(timeout).to_u256(),
        nonce: B256::random(),
    };
    sign_authorization(signer, authorization, &domain)
}

/// Recovers the EOA that signed `payload` under `domain`.
///
/// Only 65-byte ECDSA signatures are understood; contract-wallet signatures (EIP-1271,
/// ERC-6492) are refused as an unsupported signature type rather than misjudged.
pub fn recover_signer(
    payload: &ExactEvmPayload,
    domain: &Eip712Domain,
) -> Result<Address, Invalid> {
    let bytes = payload.signature.as_ref();
    let Ok(raw) = <[u8; 65]>::try_from(bytes) else {
        return Err(Invalid::new(
            ErrorReason::InvalidSignature,
            format!(
                "unsupported signature type: a {}-byte signature looks like a smart-contract wallet (EIP-1271/ERC-6492), which is not supported yet; sign with an EOA key (65-byte ECDSA)",
                bytes.len()
            ),
        ));
    };
    let bad = |why: &str| {
        Invalid::new(
            ErrorReason::InvalidSignature,
            format!("invalid signature: {why}"),
        )
    };
    let signature =
        Signature::from_raw(bytes).map_err(|_| bad("v must be 27 or 28 (or 0 or 1)"))?;
    if signature.s() > SECP256K1_HALF_ORDER {
        return Err(bad("s is in the upper half of the curve order (malleable)"));
    }
    recovered::signer(
        signing_hash(&payload.authorization, domain),
        raw,
        &signature,
    )
    .ok_or_else(|| bad("no public key recovers from it"))
}

/// The `transferWithAuthorization(..., v, r, s)` call that settles an EOA-signed
/// payload; the token re-checks everything on chain.
pub fn settlement_call(
    payload: &ExactEvmPayload,
) -> Result<IEip3009Token::transferWithAuthorization_0Call, Invalid> {
    let bytes = payload.signature.as_ref();
    let signature = Signature::from_raw(bytes).map_err(|_| {
        Invalid::new(
            ErrorReason::InvalidSignature,
            format!(
                "only 65-byte EOA signatures can be settled with (v, r, s); got {} bytes",
                bytes.len()
            ),
        )
    })?;
    let auth = &payload.authorization;
    Ok(IEip3009Token::transferWithAuthorization_0Call {
        from: auth.from,
        to: auth.to,
        value: auth.value,
        validAfter: auth.valid_after,
        validBefore: auth.valid_before,
        nonce: auth.nonce,
        v: 27 + u8::from(signature.v()),
        r: signature.r().into(),
        s: signature.s().into(),
    })
}

/// The offline half of verification: [`verify_signature`] and [`check_validity`].
/// Returns the payer the signature recovers to.
pub fn verify_offline(
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
    now: impl Into<UnixTimestamp>,
) -> Result<Address, Invalid> {
    let signer = verify_signature(payment, requirements)?;
    check_validity(&payment.payload.authorization, now)?;
    Ok(signer)
}

/// Everything about a payment that never changes: scheme, network, the signature over
/// the token's EIP-712 domain, recipient and value. A gateway runs this before it
/// holds anything for the payment (so forged payments cost it nothing), and a
/// settlement that is being resumed after its authorization expired still passes it.
pub fn verify_signature(
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> Result<Address, Invalid> {
    if payment.scheme != SCHEME_EXACT || requirements.scheme != SCHEME_EXACT {
        return Err(Invalid::new(
            ErrorReason::InvalidScheme,
            format!(
                "scheme {:?} paid against {:?}; only \"exact\" is supported",
                payment.scheme, requirements.scheme
            ),
        ));
    }
    let Some((name, version)) = requirements.eip712_domain() else {
        return Err(Invalid::new(
            ErrorReason::MissingEip712Domain,
            "the payment requirement has no extra.name/extra.version for the token's EIP-712 domain",
        ));
    };
    let chain_id = match (&payment.network, requirements.network.chain_id()) {
        (paid, Some(id)) if *paid == requirements.network => id,
        (paid, _) => {
            return Err(Invalid::new(
                ErrorReason::InvalidNetwork,
                format!(
                    "payment is for {paid} but the requirement is {}",
                    requirements.network
                ),
            ));
        }
    };
    let auth = &payment.payload.authorization;
    let domain = domain(name, version, chain_id, requirements.asset);
    let signer = recover_signer(&payment.payload, &domain)?;
    if signer != auth.from {
        return Err(Invalid::new(
            ErrorReason::InvalidSignature,
            format!(
                "invalid signature: it recovers to {signer}, not to authorization.from {}; check the EIP-712 domain (name {name:?}, version {version:?}, chain {chain_id}, token {})",
                auth.from, requirements.asset
            ),
        ));
    }
    if auth.to != requirements.pay_to {
        return Err(Invalid::new(
            ErrorReason::RecipientMismatch,
            format!(
                "authorization pays {} but the seller is {}",
                auth.to, requirements.pay_to
            ),
        ));
    }
    if auth.value != requirements.amount {
        return Err(Invalid::new(
            ErrorReason::ValueMismatch,
            format!(
                "authorization value {} must equal the price {} exactly",
                auth.value, requirements.amount
            ),
        ));
    }
    Ok(signer)
}

/// Whether the authorization can be used at `now`: not expired (with the reference's
/// minimum remaining validity) and already valid.
pub fn check_validity(auth: &Authorization, now: impl Into<UnixTimestamp>) -> Result<(), Invalid> {
    let now = now.into();
    if auth.valid_before < now.saturating_add(MIN_REMAINING_VALIDITY_SECONDS).to_u256() {
        return Err(Invalid::new(
            ErrorReason::ValidBefore,
            format!(
                "authorization expired or expires within {MIN_REMAINING_VALIDITY_SECONDS}s (validBefore {}, now {now}); sign a new one",
                auth.valid_before
            ),
        ));
    }
    if auth.valid_after > now.to_u256() {
        return Err(Invalid::new(
            ErrorReason::ValidAfter,
            format!(
                "authorization is not valid yet (validAfter {}, now {now}); check the clock",
                auth.valid_after
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;

    use super::*;
    use crate::network::Network;
    use crate::wire::X402Version;

    const NOW: u64 = 1_800_000_000;

    fn requirements() -> PaymentRequirements {
        let asset = Network::BASE_SEPOLIA.default_asset().unwrap();
        PaymentRequirements::exact(
            Network::BASE_SEPOLIA,
            &asset,
            U256::from(1000),
            address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            60,
        )
    }

    fn pay(signer: &PrivateKeySigner, req: &PaymentRequirements) -> PaymentPayload {
        PaymentPayload {
            x402_version: X402Version::V2,
            scheme: req.scheme.clone(),
            network: req.network.clone(),
            accepted: Some(req.clone()),
            resource: None,
            payload: authorize(signer, req, NOW).unwrap(),
            extensions: None,
        }
    }

    fn resign(signer: &PrivateKeySigner, payment: &mut PaymentPayload, name: &str) {
        let domain = domain(name, "2", 84532, payment.accepted.as_ref().unwrap().asset);
        let auth = payment.payload.authorization.clone();
        payment.payload = sign_authorization(signer, auth, &domain).unwrap();
    }

    fn reason(payment: &PaymentPayload, req: &PaymentRequirements) -> ErrorReason {
        verify_offline(payment, req, NOW).unwrap_err().reason
    }

    #[test]
    fn buyer_signature_verifies_and_names_the_payer() {
        let signer = PrivateKeySigner::random();
        let req = requirements();
        let payment = pay(&signer, &req);
        let auth = &payment.payload.authorization;
        assert_eq!(auth.valid_after, U256::from(NOW - 600));
        assert_eq!(auth.valid_before, U256::from(NOW + 60));
        assert_eq!(auth.value, U256::from(1000));
        assert_eq!(verify_offline(&payment, &req, NOW), Ok(signer.address()));
        assert_ne!(
            pay(&signer, &req).payload.authorization.nonce,
            auth.nonce,
            "nonces must be random"
        );
    }

    #[test]
    fn each_bad_payment_gets_its_reason() {
        let signer = PrivateKeySigner::random();
        let req = requirements();
        let good = pay(&signer, &req);

        let mut other_scheme = req.clone();
        other_scheme.scheme = "upto".into();
        assert_eq!(reason(&good, &other_scheme), ErrorReason::InvalidScheme);

        let mut no_domain = req.clone();
        no_domain.extra = None;
        assert_eq!(reason(&good, &no_domain), ErrorReason::MissingEip712Domain);

        let mut other_chain = req.clone();
        other_chain.network = Network::Eip155(8453);
        assert_eq!(reason(&good, &other_chain), ErrorReason::InvalidNetwork);

        let mut wrong_name = good.clone();
        resign(&signer, &mut wrong_name, "USD Coin");
        assert_eq!(reason(&wrong_name, &req), ErrorReason::InvalidSignature);

        let mut forged_from = good.clone();
        forged_from.payload.authorization.from = PrivateKeySigner::random().address();
        assert_eq!(reason(&forged_from, &req), ErrorReason::InvalidSignature);

        let mut wrong_to = good.clone();
        wrong_to.payload.authorization.to = Address::ZERO;
        resign(&signer, &mut wrong_to, "USDC");
        assert_eq!(reason(&wrong_to, &req), ErrorReason::RecipientMismatch);

        let mut expired = good.clone();
        expired.payload.authorization.valid_before = U256::from(NOW + 5);
        resign(&signer, &mut expired, "USDC");
        assert_eq!(reason(&expired, &req), ErrorReason::ValidBefore);

        let mut early = good.clone();
        early.payload.authorization.valid_after = U256::from(NOW + 1);
        resign(&signer, &mut early, "USDC");
        assert_eq!(reason(&early, &req), ErrorReason::ValidAfter);

        for value in [999u64, 1001] {
            let mut wrong_value = good.clone();
            wrong_value.payload.authorization.value = U256::from(value);
            resign(&signer, &mut wrong_value, "USDC");
            assert_eq!(reason(&wrong_value, &req), ErrorReason::ValueMismatch);
        }
    }

    #[test]
    fn signature_shapes_are_checked() {
        let signer = PrivateKeySigner::random();
        let req = requirements();
        let good = pay(&signer, &req);

        let mut contract_wallet = good.clone();
        contract_wallet.payload.signature = vec![1u8; 130].into();
        let err = verify_offline(&contract_wallet, &req, NOW).unwrap_err();
        assert_eq!(err.reason, ErrorReason::InvalidSignature);
        assert!(
            err.message.contains("unsupported signature type"),
            "{}",
            err.message
        );

        let mut bad_v = good.clone();
        let mut bytes = bad_v.payload.signature.to_vec();
        bytes[64] = 29;
        bad_v.payload.signature = bytes.into();
        assert_eq!(reason(&bad_v, &req), ErrorReason::InvalidSignature);

        // Flip s to n - s: the same signer recovers, but tokens refuse malleable signatures.
        let sig = Signature::from_raw(&good.payload.signature).unwrap();
        let n = SECP256K1_HALF_ORDER * U256::from(2) + U256::from(1);
        let high_s = Signature::new(sig.r(), n - sig.s(), !sig.v());
        let mut malleable = good.clone();
        malleable.payload.signature = high_s.as_bytes().to_vec().into();
        let err = verify_offline(&malleable, &req, NOW).unwrap_err();
        assert!(err.message.contains("malleable"), "{}", err.message);
    }

    #[test]
    fn low_v_signatures_from_the_wire_verify() {
        let signer = PrivateKeySigner::random();
        let req = requirements();
        let payment = pay(&signer, &req);
        let mut json = serde_json::to_value(&payment).unwrap();
        let sig = json["payload"]["signature"].as_str().unwrap().to_string();
        let v = u8::from_str_radix(&sig[130..], 16).unwrap() - 27;
        json["payload"]["signature"] = format!("{}{v:02x}", &sig[..130]).into();
        let parsed: PaymentPayload = serde_json::from_value(json).unwrap();
        assert_eq!(verify_offline(&parsed, &req, NOW), Ok(signer.address()));
    }

    #[test]
    fn signing_refuses_what_it_cannot_sign() {
        let signer = PrivateKeySigner::random();
        let mut req = requirements();
        req.extra = None;
        assert_eq!(authorize(&signer, &req, NOW), Err(SignError::MissingDomain));
        let mut req = requirements();
        req.scheme = "upto".into();
        assert!(matches!(
            authorize(&signer, &req, NOW),
            Err(SignError::Scheme(_))
        ));
        let mut req = requirements();
        req.max_timeout_seconds = 0;
        let p = authorize(&signer, &req, NOW).unwrap();
        assert_eq!(
            p.authorization.valid_before,
            U256::from(NOW + DEFAULT_TIMEOUT_SECONDS)
        );
    }
}
