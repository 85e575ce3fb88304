//! Choosing and refusing, on 402s built as servers write them: each refusal is the
//! right variant and its message names the price and the flag to change.

use alloy::primitives::{Address, U256, address};
use serde_json::{Value, json};

use super::*;
use crate::client::challenge::Challenge;

const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const OTHER_TOKEN: Address = address!("0x1111111111111111111111111111111111111111");

fn offer(network: &str, asset: &str, amount: u64) -> Value {
    json!({
        "scheme": "exact", "network": network, "amount": amount.to_string(),
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "asset": asset,
        "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}
    })
}

fn challenge(offers: Vec<Value>) -> Challenge {
    Challenge::from_json(&json!({"x402Version": 2, "accepts": offers})).unwrap()
}

fn usdc(atomic: u64) -> U256 {
    U256::from(atomic)
}

#[test]
fn the_cheapest_acceptable_offer_is_chosen() {
    let c = challenge(vec![
        offer("eip155:8453", BASE_USDC, 3000),
        offer("eip155:84532", BASE_SEPOLIA_USDC, 1000),
        offer("eip155:84532", &OTHER_TOKEN.to_string(), 1),
    ]);
    let choice = choose(&c, &Policy::new(usdc(5000)), None).unwrap();
    assert_eq!(choice.offer.index, 1);
    assert_eq!(choice.price.to_string(), "0.001 USDC on base-sepolia");
}

#[test]
fn a_network_where_the_wallet_holds_enough_is_preferred() {
    let c = challenge(vec![
        offer("eip155:84532", BASE_SEPOLIA_USDC, 1000),
        offer("eip155:8453", BASE_USDC, 3000),
    ]);
    let mut balances = Balances::default();
    balances.insert(
        Network::BASE_SEPOLIA,
        BASE_SEPOLIA_USDC.parse().unwrap(),
        usdc(999),
    );
    balances.insert(
        Network::Eip155(8453),
        BASE_USDC.parse().unwrap(),
        usdc(10_000),
    );
    let choice = choose(&c, &Policy::new(usdc(5000)), Some(&balances)).unwrap();
    assert_eq!(choice.offer.index, 1);

    // Known to hold enough beats not known, even when dearer.
    let mut partly = Balances::default();
    partly.insert(
        Network::Eip155(8453),
        BASE_USDC.parse().unwrap(),
        usdc(10_000),
    );
    let choice = choose(&c, &Policy::new(usdc(5000)), Some(&partly)).unwrap();
    assert_eq!(choice.offer.index, 1);

    let mut poor = Balances::default();
    poor.insert(
        Network::BASE_SEPOLIA,
        BASE_SEPOLIA_USDC.parse().unwrap(),
        usdc(10),
    );
    let only = challenge(vec![offer("eip155:84532", BASE_SEPOLIA_USDC, 1000)]);
    let e = choose(&only, &Policy::new(usdc(5000)), Some(&poor)).unwrap_err();
    assert!(matches!(e, Refusal::InsufficientBalance { .. }), "{e}");
    assert!(e.to_string().contains("0.00001 USDC"), "{e}");
}

#[test]
fn above_max_names_the_price_and_the_cap() {
    let c = challenge(vec![offer("eip155:84532", BASE_SEPOLIA_USDC, 2500)]);
    let e = choose(&c, &Policy::new(usdc(1000)), None).unwrap_err();
    assert!(matches!(e, Refusal::AboveMax { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("0.0025 USDC on base-sepolia"), "{text}");
    assert!(text.contains("above the per-call cap of 0.001"), "{text}");
    assert!(
        !text.contains("--"),
        "no CLI flag in a library error: {text}"
    );

    let two = challenge(vec![
        offer("eip155:8453", BASE_USDC, 9000),
        offer("eip155:84532", BASE_SEPOLIA_USDC, 2500),
    ]);
    match choose(&two, &Policy::new(usdc(1000)), None).unwrap_err() {
        Refusal::AboveMax { price, .. } => assert_eq!(price.money.atomic, usdc(2500)),
        other => panic!("{other}"),
    }
}

#[test]
fn above_budget_is_refused_with_what_is_left() {
    let c = challenge(vec![offer("eip155:84532", BASE_SEPOLIA_USDC, 2000)]);
    let policy = Policy::new(usdc(5000)).with_budget(usdc(1500));
    let e = choose(&c, &policy, None).unwrap_err();
    assert!(matches!(e, Refusal::AboveBudget { .. }), "{e}");
    assert!(e.to_string().contains("0.0015 USDC left"), "{e}");
    assert!(e.to_string().contains("budget"), "{e}");
}

#[test]
fn networks_and_assets_must_be_allowed() {
    let c = challenge(vec![offer("eip155:8453", BASE_USDC, 1000)]);
    let policy = Policy::new(usdc(5000)).allow_network(Network::BASE_SEPOLIA);
    let e = choose(&c, &policy, None).unwrap_err();
    assert!(matches!(e, Refusal::NetworkNotAllowed { .. }), "{e}");
    assert!(
        e.to_string().contains("is on base, which is not allowed"),
        "{e}"
    );
    assert!(e.to_string().contains("0.001 USDC"), "{e}");

    let token = challenge(vec![offer("eip155:84532", &OTHER_TOKEN.to_string(), 7)]);
    let e = choose(&token, &Policy::new(usdc(5000)), None).unwrap_err();
    assert!(matches!(e, Refusal::AssetNotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("not in the known USDC table"), "{e}");

    let allowed = Policy::new(usdc(0)).allow_asset(AllowedAsset {
        network: Network::BASE_SEPOLIA,
        address: OTHER_TOKEN,
        decimals: 2,
        symbol: "TOK".into(),
        max_per_call: U256::from(10),
    });
    let choice = choose(&token, &allowed, None).unwrap();
    assert_eq!(choice.price.to_string(), "0.07 TOK on base-sepolia");
}

#[test]
fn nothing_acceptable_lists_each_offer() {
    let c = Challenge::from_json(&json!({"x402Version": 2, "accepts": [
        offer("eip155:8453", BASE_USDC, 1000),
        offer("eip155:84532", &OTHER_TOKEN.to_string(), 1),
        {"scheme": "exact", "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "amount": "1"},
    ]}))
    .unwrap();
    let policy = Policy::new(usdc(5000)).allow_network(Network::BASE_SEPOLIA);
    let e = choose(&c, &policy, None).unwrap_err();
    let Refusal::NothingAcceptable { offered, skipped } = &e else {
        panic!("{e}")
    };
    assert_eq!(offered.len(), 2);
    assert_eq!(skipped.len(), 1);
    let text = e.to_string();
    assert!(
        text.contains("not allowed") && text.contains("not in the known USDC table"),
        "{text}"
    );
    assert!(text.contains("solana"), "{text}");

    let mut no_domain = offer("eip155:84532", BASE_SEPOLIA_USDC, 1);
    no_domain.as_object_mut().unwrap().remove("extra");
    let e = choose(&challenge(vec![no_domain]), &Policy::new(usdc(5)), None).unwrap_err();
    assert!(matches!(e, Refusal::NoDomain { .. }), "{e}");
}
