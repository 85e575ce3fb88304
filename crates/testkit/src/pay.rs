//! The buyer's side of a payment: a requirement for the devnet's USDC, an EIP-3009
//! authorization signed for it, and the v1 or v2 header or facilitator request that
//! carries it.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::Devnet;
use x402::eip3009;
use x402::time::unix_now;
use x402::wire::X402Version;
use x402::{
    Authorization, ExactEvmPayload, FacilitatorRequest, PaymentPayload, PaymentRequirements,
};

/// The price the tests sell at, atomic USDC (0.001).
pub const PRICE: u64 = 1000;

/// An exact [`PRICE`] of the devnet's USDC, paid to `pay_to`, signable for
/// `max_timeout` seconds.
pub fn requirement(chain: &Devnet, pay_to: Address, max_timeout: u64) -> PaymentRequirements {
    PaymentRequirements::exact(
        chain.network(),
        chain.usdc(),
        U256::from(PRICE),
        pay_to,
        max_timeout,
    )
}

/// `buyer`'s authorization for `requirement`, valid from now for its max timeout.
pub fn authorize(buyer: &PrivateKeySigner, requirement: &PaymentRequirements) -> ExactEvmPayload {
    eip3009::authorize(buyer, requirement, unix_now()).unwrap()
}

/// `authorization` signed by `buyer` under `requirement`'s token domain, for
/// authorizations a test edited after signing.
pub fn resign(
    buyer: &PrivateKeySigner,
    requirement: &PaymentRequirements,
    authorization: Authorization,
) -> ExactEvmPayload {
    let (name, version) = requirement
        .eip712_domain()
        .expect("the requirement names the token's EIP-712 domain");
    let chain_id = requirement
        .network
        .chain_id()
        .expect("the requirement is on an eip155 chain");
    let domain = eip3009::domain(name, version, chain_id, requirement.asset);
    eip3009::sign_authorization(buyer, authorization, &domain).unwrap()
}

/// The v2 payment header carrying `payload` for `requirement`.
pub fn encode(requirement: &PaymentRequirements, payload: ExactEvmPayload) -> String {
    x402::header::encode(&PaymentPayload::v2(requirement, payload)).unwrap()
}

/// The v1 payment header (`X-PAYMENT`) carrying `payload` for `requirement`.
pub fn encode_v1(requirement: &PaymentRequirements, payload: ExactEvmPayload) -> String {
    let mut payment = PaymentPayload::v2(requirement, payload);
    payment.x402_version = X402Version::V1;
    payment.accepted = None;
    x402::header::encode(&payment).unwrap()
}

/// A fresh v2 payment header for `requirement`, signed by `buyer`.
pub fn header(buyer: &PrivateKeySigner, requirement: &PaymentRequirements) -> String {
    encode(requirement, authorize(buyer, requirement))
}

/// A fresh v2 facilitator request for `requirement`, signed by `buyer`.
pub fn request(buyer: &PrivateKeySigner, requirement: &PaymentRequirements) -> FacilitatorRequest {
    FacilitatorRequest::v2(requirement, authorize(buyer, requirement))
}

/// One signed authorization and the header that carries it.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The v2 header.
    pub header: String,
    /// Who signed.
    pub payer: Address,
    /// The authorization's nonce, to ask the token whether it was used.
    pub nonce: B256,
}

/// A fresh authorization for `requirement` as an x402 client signs it, in a v2
/// header.
pub fn sign(buyer: &PrivateKeySigner, requirement: &PaymentRequirements) -> Signed {
    signed(requirement, authorize(buyer, requirement))
}

/// A fresh authorization for `requirement` that is valid only until `valid_before`.
pub fn sign_valid_until(
    buyer: &PrivateKeySigner,
    requirement: &PaymentRequirements,
    valid_before: u64,
) -> Signed {
    let mut authorization = authorize(buyer, requirement).authorization;
    authorization.valid_before = U256::from(valid_before);
    signed(requirement, resign(buyer, requirement, authorization))
}

fn signed(requirement: &PaymentRequirements, payload: ExactEvmPayload) -> Signed {
    let payer = payload.authorization.from;
    let nonce = payload.authorization.nonce;
    Signed {
        header: encode(requirement, payload),
        payer,
        nonce,
    }
}
