//! The buyer who spends its own authorization while the seller is still working on
//! the call it paid for: it cancels the authorization (`cancelAuthorization`) or
//! spends the same nonce on another transfer (1 unit to itself). Either way the token
//! marks the nonce used, and no seller was paid. Every test of "the nonce is used is
//! not the seller was paid" attacks with these.

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::Devnet;
use x402::eip3009::{self, IEip3009Token, VALID_AFTER_SKEW_SECONDS};
use x402::time::unix_now;
use x402::{Authorization, PaymentRequirements};

/// How the buyer spends its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// `cancelAuthorization(buyer, nonce)`.
    Cancel,
    /// A second authorization with the same nonce: 1 atomic unit to the buyer itself.
    SelfTransfer,
}

/// `buyer` spends its authorization `nonce` of `requirement`'s token the way `how`
/// says, in a transaction sent (and paid for) by `sender`; returns its hash once it
/// mined with success.
pub async fn spend(
    chain: &Devnet,
    sender: PrivateKeySigner,
    buyer: &PrivateKeySigner,
    requirement: &PaymentRequirements,
    nonce: B256,
    how: Spend,
) -> B256 {
    let token = IEip3009Token::new(requirement.asset, chain.provider_for(sender).unwrap());
    let pending = match how {
        Spend::Cancel => {
            let (name, version) = requirement.eip712_domain().unwrap();
            let domain = eip3009::domain(
                name,
                version,
                requirement.network.chain_id().unwrap(),
                requirement.asset,
            );
            let signature = eip3009::sign_cancel(buyer, nonce, &domain).unwrap();
            let call = eip3009::cancel_call(buyer.address(), nonce, &signature);
            token
                .cancelAuthorization(call.authorizer, call.nonce, call.v, call.r, call.s)
                .send()
                .await
                .unwrap()
        }
        Spend::SelfTransfer => {
            let now = unix_now();
            let authorization = Authorization {
                from: buyer.address(),
                to: buyer.address(),
                value: U256::from(1),
                valid_after: U256::from(now - VALID_AFTER_SKEW_SECONDS),
                valid_before: U256::from(now + 600),
                nonce,
            };
            let payload = crate::pay::resign(buyer, requirement, authorization);
            let call = eip3009::settlement_call(&payload).unwrap();
            token
                .transferWithAuthorization_0(
                    call.from,
                    call.to,
                    call.value,
                    call.validAfter,
                    call.validBefore,
                    call.nonce,
                    call.v,
                    call.r,
                    call.s,
                )
                .send()
                .await
                .unwrap()
        }
    };
    let receipt = pending.get_receipt().await.unwrap();
    assert!(
        receipt.status(),
        "the buyer's own {how:?} mined with success"
    );
    receipt.transaction_hash
}
