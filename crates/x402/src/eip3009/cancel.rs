//! EIP-3009 `cancelAuthorization`: how a payer withdraws an authorization it signed
//! but that was never used. A buyer whose payment was refused can cancel it so that
//! nobody can submit it later (the calldata of a failed settlement stays public until
//! `validBefore`); and it is the move a facilitator must never mistake for payment,
//! since the token then marks the nonce used just as a transfer does.

use alloy::primitives::{Address, B256, Signature};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};

use super::{IEip3009Token, SignError};

sol! {
    /// The EIP-3009 cancellation struct, hashed per EIP-712.
    #[derive(Debug)]
    struct CancelAuthorization {
        address authorizer;
        bytes32 nonce;
    }
}

/// `authorizer`'s signature cancelling its authorization `nonce` under the token's
/// `domain` (the same domain its payments are signed under).
pub fn sign_cancel(
    signer: &PrivateKeySigner,
    nonce: B256,
    domain: &Eip712Domain,
) -> Result<Signature, SignError> {
    let digest = CancelAuthorization {
        authorizer: signer.address(),
        nonce,
    }
    .eip712_signing_hash(domain);
    signer
        .sign_hash_sync(&digest)
        .map_err(|e| SignError::Signer(e.to_string()))
}

/// The `cancelAuthorization(authorizer, nonce, v, r, s)` call carrying `signature`;
/// anyone may submit it, the token checks the signature.
pub fn cancel_call(
    authorizer: Address,
    nonce: B256,
    signature: &Signature,
) -> IEip3009Token::cancelAuthorizationCall {
    IEip3009Token::cancelAuthorizationCall {
        authorizer,
        nonce,
        v: 27 + u8::from(signature.v()),
        r: signature.r().into(),
        s: signature.s().into(),
    }
}
