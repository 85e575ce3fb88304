//! What an offer charges and to whom: the recipient wallet, the token (the network's
//! USDC or an EIP-3009 token named with its EIP-712 domain) and exactly one price,
//! checked into exact atomic amounts.

use alloy::primitives::Address;
use x402::money::{Money, Price};
use x402::network::{Asset, Network};

use super::ValidationError;
use crate::spec::ServiceOffer;

/// Parses a recipient: `0x` or `0X` and 40 hex digits.
pub fn parse_wallet(input: &str) -> Result<Address, ValidationError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::RecipientRequired);
    }
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .filter(|h| h.len() == 40 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| ValidationError::InvalidWallet(input.to_string()))?;
    format!("0x{hex}")
        .parse()
        .map_err(|_| ValidationError::InvalidWallet(input.to_string()))
}

/// Parses a decimal price flag or key into an amount of a `decimals`-decimal token.
pub fn parse_price(field: &str, value: &str, decimals: u8) -> Result<Money, ValidationError> {
    Money::parse(value, decimals).map_err(|e| ValidationError::InvalidPrice {
        field: field.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// The token the offer is paid in: the network's USDC unless the spec names another.
pub(super) fn resolve_asset(
    offer: &ServiceOffer,
    network: &Network,
) -> Result<Asset, ValidationError> {
    let Some(spec) = &offer.spec.payment.asset else {
        return network
            .default_asset()
            .map_err(|e| ValidationError::Network(e.to_string()));
    };
    if let Some(method) = &spec.transfer_method
        && method != "eip3009"
    {
        return Err(ValidationError::Asset(format!(
            "asset transfer method {method:?} is not supported; agora settles EIP-3009 tokens (transferMethod: eip3009)"
        )));
    }
    let address = parse_wallet(&spec.address).map_err(|_| {
        ValidationError::Asset(format!(
            "invalid asset address {:?}: must be 0x-prefixed 40-char hex",
            spec.address
        ))
    })?;
    let known = network.known().filter(|c| c.usdc.address == address);
    match (known, &spec.eip712_name, &spec.eip712_version) {
        (Some(chain), _, _) => Ok(chain.usdc.to_asset()),
        (None, Some(name), Some(version)) => Ok(Asset {
            address,
            decimals: spec.decimals,
            symbol: spec.symbol.clone().unwrap_or_else(|| "TOKEN".into()),
            eip712_name: name.clone(),
            eip712_version: version.clone(),
        }),
        _ => Err(ValidationError::Asset(format!(
            "asset {address} needs eip712Name and eip712Version (its EIP-712 domain) so buyers can sign for it"
        ))),
    }
}

/// The one price the spec sets, in units of `asset`.
pub(super) fn resolve_price(offer: &ServiceOffer, asset: &Asset) -> Result<Price, ValidationError> {
    let p = &offer.spec.payment.price;
    let set: Vec<&str> = [
        ("perRequest", &p.per_request),
        ("perMTok", &p.per_mtok),
        ("perHour", &p.per_hour),
        ("perEpoch", &p.per_epoch),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| *k)
    .collect();
    if set.len() > 1 {
        return Err(ValidationError::SeveralPrices(set.join(", ")));
    }
    match (&p.per_request, &p.per_mtok, &p.per_hour, &p.per_epoch) {
        (Some(v), ..) => Ok(Price::PerRequest(parse_price(
            "perRequest",
            v,
            asset.decimals,
        )?)),
        (_, Some(v), ..) => Ok(Price::PerMTok(parse_price("perMTok", v, asset.decimals)?)),
        (_, _, Some(v), _) => Ok(Price::PerHour(parse_price("perHour", v, asset.decimals)?)),
        (_, _, _, Some(v)) => Err(ValidationError::PerEpoch(v.clone())),
        _ => Err(ValidationError::PriceRequired),
    }
}

/// The spec key a price was set with, as the user wrote it.
pub(super) fn price_key(price: &Price) -> &'static str {
    match price {
        Price::PerRequest(_) => "perRequest",
        Price::PerMTok(_) => "perMTok",
        Price::PerHour(_) => "perHour",
    }
}

/// The price's amount as a decimal, for messages.
pub(super) fn price_value(price: &Price) -> String {
    match price {
        Price::PerRequest(m) | Price::PerMTok(m) | Price::PerHour(m) => m.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallets_follow_the_reference_rule() {
        assert!(parse_wallet("0X70997970C51812dc3A010C7d01b50e0d17dc79C8").is_ok());
        for bad in [
            "70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "0x1234",
            "0xZZ997970C51812dc3A010C7d01b50e0d17dc79C8",
        ] {
            assert_eq!(
                parse_wallet(bad).unwrap_err().to_string(),
                format!("invalid wallet address {bad:?}: must be 0x-prefixed 40-char hex")
            );
        }
        assert_eq!(
            parse_wallet("").unwrap_err().to_string(),
            "recipient required: the offer names no payTo address"
        );
    }
}
