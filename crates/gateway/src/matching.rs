//! Matching a buyer's payment to one of the route's requirements, before any
//! facilitator is asked.
//!
//! Cheap field checks here turn the common mistakes (wrong network, wrong price, wrong
//! recipient) into a precise 402 naming the right value, without a network round trip.
//! The authorization itself (signature, validity window) is checked by
//! `x402::eip3009`, once, against the requirement chosen here; this file only calls
//! those checks, in the order that keeps forgeries cheap.

use axum::http::HeaderValue;
use x402::eip3009::{self, AuthorizationKey};
use x402::header::HeaderError;
use x402::reason::{ErrorReason, Invalid};
use x402::wire::{Authorization, PaymentPayload, PaymentRequirements, SCHEME_EXACT};

use alloy::primitives::U256;

/// The payment in a `PAYMENT-SIGNATURE` or `X-PAYMENT` header (v1 or v2).
pub fn decode(header: &HeaderValue) -> Result<PaymentPayload, HeaderError> {
    header
        .to_str()
        .map_err(|_| HeaderError::NotBase64("non-ASCII bytes".into()))
        .and_then(x402::header::decode_payment)
}

/// The requirement `payment` pays and the key the replay guard holds it under. The
/// signature must recover to the payer first, so a forgery costs a hash and holds
/// nothing.
pub fn matched(
    payment: &PaymentPayload,
    offered: &[PaymentRequirements],
) -> Result<(PaymentRequirements, AuthorizationKey), Invalid> {
    let chosen = select(payment, offered)?.clone();
    eip3009::verify_signature(payment, &chosen)?;
    let key = AuthorizationKey::of(payment, &chosen).ok_or_else(|| {
        Invalid::new(
            ErrorReason::InvalidNetwork,
            format!("{} is not an EVM network", chosen.network),
        )
    })?;
    Ok((chosen, key))
}

/// For a first use: the authorization is valid `now` and stays valid for the
/// `required` seconds a paid call may take (`floor` is what the 402 asked for).
pub fn valid_long_enough(
    authorization: &Authorization,
    now: u64,
    required: u64,
    floor: u64,
) -> Result<(), Invalid> {
    eip3009::check_validity(authorization, now)?;
    let needed = now.saturating_add(required);
    if authorization.valid_before < U256::from(needed) {
        return Err(Invalid::new(
            ErrorReason::ExpiresTooSoon,
            format!(
                "the authorization is valid until {}, but this service may take {}s to answer and settle, so it must be valid until at least {needed}; sign one with validBefore >= {needed} (now + {floor}s is safe)",
                authorization.valid_before, required
            ),
        ));
    }
    Ok(())
}

/// Picks the requirement `payment` pays, or says precisely why none matches.
///
/// v2 payloads echo the requirement they chose (`accepted`), which must equal one we
/// offer on scheme, network, asset, recipient and amount; v1 payloads name only scheme
/// and network, so the authorization's recipient and value pick the entry.
pub fn select<'r>(
    payment: &PaymentPayload,
    offered: &'r [PaymentRequirements],
) -> Result<&'r PaymentRequirements, Invalid> {
    if payment.scheme != SCHEME_EXACT {
        return Err(Invalid::new(
            ErrorReason::InvalidScheme,
            format!(
                "scheme {:?} is not accepted here; pay with the \"exact\" scheme",
                payment.scheme
            ),
        ));
    }
    let on_network: Vec<&PaymentRequirements> = offered
        .iter()
        .filter(|r| r.network == payment.network && r.scheme == SCHEME_EXACT)
        .collect();
    if on_network.is_empty() {
        let accepted: Vec<String> = offered.iter().map(|r| r.network.caip2()).collect();
        return Err(Invalid::new(
            ErrorReason::InvalidNetwork,
            format!(
                "payment is on {}, but this service accepts {}",
                payment.network.caip2(),
                accepted.join(", ")
            ),
        ));
    }
    let authorization = &payment.payload.authorization;
    let chosen = match &payment.accepted {
        Some(accepted) => on_network
            .iter()
            .copied()
            .find(|r| same_terms(r, accepted))
            .ok_or_else(|| {
                mismatch(
                    accepted.asset,
                    accepted.pay_to,
                    accepted.amount,
                    &on_network,
                )
            })?,
        None => on_network
            .iter()
            .copied()
            .find(|r| r.pay_to == authorization.to && r.amount == authorization.value)
            .ok_or_else(|| {
                mismatch(
                    on_network[0].asset,
                    authorization.to,
                    authorization.value,
                    &on_network,
                )
            })?,
    };
    Ok(chosen)
}

fn same_terms(ours: &PaymentRequirements, theirs: &PaymentRequirements) -> bool {
    ours.asset == theirs.asset && ours.pay_to == theirs.pay_to && ours.amount == theirs.amount
}

fn mismatch(
    asset: alloy::primitives::Address,
    pay_to: alloy::primitives::Address,
    amount: U256,
    candidates: &[&PaymentRequirements],
) -> Invalid {
    let first = candidates[0];
    if !candidates.iter().any(|r| r.asset == asset) {
        return Invalid::new(
            ErrorReason::InvalidPayload,
            format!("token {asset} is not accepted; pay with {}", first.asset),
        );
    }
    if !candidates.iter().any(|r| r.pay_to == pay_to) {
        return Invalid::new(
            ErrorReason::RecipientMismatch,
            format!(
                "payment is to {pay_to}; this service is paid to {}",
                first.pay_to
            ),
        );
    }
    Invalid::new(
        ErrorReason::ValueMismatch,
        format!(
            "payment is for {amount} atomic units; this service costs exactly {}",
            first.amount
        ),
    )
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, Bytes, address};
    use x402::network::Network;
    use x402::wire::{ExactEvmPayload, X402Version};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const SELLER: Address = address!("0x1111111111111111111111111111111111111111");

    fn requirement(amount: u64) -> PaymentRequirements {
        let net = Network::BASE_SEPOLIA;
        PaymentRequirements::exact(
            net.clone(),
            &net.default_asset().unwrap(),
            U256::from(amount),
            SELLER,
            300,
        )
    }

    fn payload(to: Address, value: u64, valid_before: u64) -> ExactEvmPayload {
        ExactEvmPayload {
            signature: Bytes::from(vec![0u8; 65]),
            authorization: Authorization {
                from: address!("0x2222222222222222222222222222222222222222"),
                to,
                value: U256::from(value),
                valid_after: U256::ZERO,
                valid_before: U256::from(valid_before),
                nonce: B256::repeat_byte(7),
            },
        }
    }

    fn v1(payload: ExactEvmPayload, network: Network) -> PaymentPayload {
        PaymentPayload {
            x402_version: X402Version::V1,
            scheme: "exact".into(),
            network,
            accepted: None,
            resource: None,
            payload,
            extensions: None,
        }
    }

    #[test]
    fn picks_the_entry_the_payment_pays() {
        let offered = vec![requirement(1000), requirement(2000)];
        let p = PaymentPayload::v2(&offered[1], payload(SELLER, 2000, NOW + 300));
        assert_eq!(select(&p, &offered).unwrap().amount, U256::from(2000));
        let p = v1(payload(SELLER, 1000, NOW + 300), Network::BASE_SEPOLIA);
        assert_eq!(select(&p, &offered).unwrap().amount, U256::from(1000));
    }

    #[test]
    fn each_mismatch_has_its_reason() {
        let offered = vec![requirement(1000)];
        let cases = [
            (
                v1(payload(SELLER, 1000, NOW + 300), Network::Eip155(8453)),
                ErrorReason::InvalidNetwork,
            ),
            (
                PaymentPayload::v2(&requirement(999), payload(SELLER, 999, NOW + 300)),
                ErrorReason::ValueMismatch,
            ),
            (
                v1(
                    payload(Address::ZERO, 1000, NOW + 300),
                    Network::BASE_SEPOLIA,
                ),
                ErrorReason::RecipientMismatch,
            ),
            (
                v1(payload(SELLER, 999, NOW + 300), Network::BASE_SEPOLIA),
                ErrorReason::ValueMismatch,
            ),
        ];
        for (payment, reason) in cases {
            assert_eq!(select(&payment, &offered).unwrap_err().reason, reason);
        }
        let mut other_scheme = PaymentPayload::v2(&offered[0], payload(SELLER, 1000, NOW + 300));
        other_scheme.scheme = "upto".into();
        assert_eq!(
            select(&other_scheme, &offered).unwrap_err().reason,
            ErrorReason::InvalidScheme
        );
    }
}
