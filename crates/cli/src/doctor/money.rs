//! The doctor checks on how the seller is paid: the network and an RPC for it, a
//! facilitator that settles it, who receives payments, the wallet's USDC and the
//! settlement key's gas. Kept apart from what the daemon serves (`daemon.rs`) so each
//! file reads as one question.

use alloy::primitives::{Address, U256};
use seller::FacilitatorInfo;
use serde_json::json;
use wallet::budget::usdc_text;
use wallet::chain::{self, Chain};
use wallet::home;
use x402::{Facilitator, HttpFacilitator, Network};

use super::{CHECK_TIMEOUT, Check, DoctorArgs};
use crate::env;
use crate::serve_cmd::DEFAULT_FACILITATOR;

/// The daemon's embedded facilitator, as its status describes it.
pub(super) struct Embedded {
    networks: Vec<Network>,
    signer: Address,
}

impl Embedded {
    /// The embedded facilitator of `info`, when the daemon settles itself.
    pub(super) fn of(info: &FacilitatorInfo) -> Option<Self> {
        match info {
            FacilitatorInfo::Embedded { networks, signer } => Some(Self {
                networks: networks.clone(),
                signer: *signer,
            }),
            FacilitatorInfo::Remote { .. } => None,
        }
    }
}

/// The network the checks are for, and a connection to it for balances (or why none).
pub(super) async fn connect_chain(
    args: &DoctorArgs,
    configured: Option<String>,
    embedded: Option<&Embedded>,
) -> (Result<Chain, String>, Network) {
    let named = args.network.clone().or(configured);
    let fallback = embedded
        .and_then(|e| e.networks.first().cloned())
        .unwrap_or(Network::BASE_SEPOLIA);
    let wanted = match named.as_deref().map(Network::parse) {
        Some(Ok(network)) => Some(network),
        Some(Err(e)) => return (Err(format!("{e}")), fallback),
        None => None,
    };
    // Without a named network, an --rpc decides; without either, the fallback.
    let network_arg = match (&wanted, &args.rpc) {
        (Some(n), _) => Some(n.caip2()),
        (None, Some(_)) => None,
        (None, None) => Some(fallback.caip2()),
    };
    let connected = tokio::time::timeout(
        CHECK_TIMEOUT,
        chain::connect(network_arg.as_deref(), args.rpc.as_ref()),
    )
    .await;
    match connected {
        Ok(Ok(chain)) => {
            let network = chain.network.clone();
            (Ok(chain), network)
        }
        Ok(Err(e)) => (Err(format!("{e:#}")), wanted.unwrap_or(fallback)),
        Err(_) => (
            Err("the RPC did not answer within 5 s".into()),
            wanted.unwrap_or(fallback),
        ),
    }
}

/// The facilitator settles the network: the embedded one by its chains, a remote one by
/// its `/supported`.
pub(super) async fn facilitator_check(
    network: &Network,
    label: Option<&str>,
    embedded: Option<&Embedded>,
) -> Check {
    let caip2 = network.caip2();
    if let Some(embedded) = embedded {
        let served: Vec<String> = embedded.networks.iter().map(Network::caip2).collect();
        return if embedded.networks.contains(network) {
            Check::ok(
                "facilitator",
                format!("the daemon settles {caip2} itself ({})", served.join(", ")),
            )
        } else {
            Check::fail(
                "facilitator",
                format!(
                    "the daemon settles {} itself, not {caip2}",
                    served.join(", ")
                ),
                format!(
                    "restart the daemon with the RPC of {caip2}: agora serve --stop && agora serve --rpc URL"
                ),
            )
        };
    }
    let url = match label {
        Some(url) => url.to_string(),
        None => facilitator_to_be_used(),
    };
    let fix_url = format!(
        "agora sell pricing --facilitator-url {DEFAULT_FACILITATOR} (or a facilitator that settles {caip2}), then restart the daemon: agora serve --stop && agora serve"
    );
    let remote = match HttpFacilitator::new(&url) {
        Ok(remote) => remote.with_timeout(CHECK_TIMEOUT),
        Err(e) => return Check::fail("facilitator", format!("{url}: {e}"), fix_url),
    };
    match remote.supported().await {
        Ok(supported) if supported.supports("exact", network) => {
            Check::ok("facilitator", format!("{url} settles {caip2} (/supported)"))
        }
        Ok(supported) => {
            let listed: Vec<String> = supported
                .kinds
                .iter()
                .map(|k| format!("{} {}", k.scheme, k.network.caip2()))
                .collect();
            Check::fail(
                "facilitator",
                format!(
                    "{url} does not settle exact payments on {caip2}; its /supported lists: {}",
                    listed.join(", ")
                ),
                format!(
                    "sell on a network it settles (agora sell pricing --network NAME), or {fix_url}"
                ),
            )
        }
        Err(e) => Check::fail(
            "facilitator",
            format!("{url}/supported did not answer: {e}"),
            fix_url,
        ),
    }
}

/// The facilitator a daemon started now would use: the flag's variable, else the
/// `agora sell pricing` setting, else the public default.
fn facilitator_to_be_used() -> String {
    if let Some(url) = env::var(env::FACILITATOR_URL) {
        return url;
    }
    // Reading does not create the database in a home that has none.
    let stored = home::agora_home()
        .ok()
        .and_then(|home| seller::stored_settings(&home)?.facilitator);
    stored.unwrap_or_else(|| DEFAULT_FACILITATOR.to_string())
}

/// Who gets paid: `agora sell pricing --pay-to`, else the default wallet.
pub(super) fn recipient_check(pay_to: Option<String>) -> Check {
    if let Some(address) = pay_to {
        return Check::ok(
            "recipient",
            format!("payments go to {address} (agora sell pricing)"),
        );
    }
    match wallet::default_wallet() {
        Ok(Some((name, address))) => Check::ok(
            "recipient",
            format!("payments go to the default wallet {name} ({address})"),
        ),
        Ok(None) => Check::fail(
            "recipient",
            "no recipient: no agora sell pricing --pay-to and no wallet",
            "agora wallet new (or: agora sell pricing --pay-to 0xYOUR_ADDRESS)",
        ),
        Err(e) => Check::fail("recipient", format!("{e:#}"), "agora wallet list"),
    }
}

/// The default wallet exists and holds USDC on the network (it pays for
/// `agora sell probe --paid` and any buying).
pub(super) async fn wallet_check(network: &Network, chain: &Result<Chain, String>) -> Check {
    let caip2 = network.caip2();
    let (name, address) = match wallet::default_wallet() {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Check::fail("wallet", "no agora wallet", "agora wallet new");
        }
        Err(e) => return Check::fail("wallet", format!("{e:#}"), "agora wallet list"),
    };
    let chain = match chain {
        Ok(chain) => chain,
        Err(e) => {
            return Check::fail(
                "wallet",
                format!("cannot read {name}'s balance on {caip2}: {e}"),
                format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
            );
        }
    };
    match chain.balances(address).await {
        Ok(b) if b.usdc.is_zero() => Check::fail(
            "wallet",
            format!("wallet {name} ({address}) holds no USDC on {caip2}"),
            format!(
                "send USDC on {caip2} to {address} (test USDC: https://faucet.circle.com), then check: agora wallet balance"
            ),
        )
        .details(json!({ "address": address, "usdc": "0" })),
        Ok(b) => Check::ok(
            "wallet",
            format!(
                "wallet {name} ({address}) holds {} USDC on {caip2}",
                usdc_text(b.usdc)
            ),
        )
        .details(json!({ "address": address, "usdc": usdc_text(b.usdc) })),
        Err(e) => Check::fail(
            "wallet",
            format!("cannot read {name}'s balance: {e:#}"),
            format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
        ),
    }
}

/// When the daemon settles itself, its settlement key pays the gas of every settlement.
pub(super) async fn gas_check(
    network: &Network,
    chain: &Result<Chain, String>,
    embedded: Option<&Embedded>,
) -> Check {
    let Some(signer) = embedded.map(|e| e.signer) else {
        return Check::skip(
            "settlement_gas",
            "not settling itself: the facilitator pays the gas",
        );
    };
    let symbol = chain::gas_symbol(network);
    let caip2 = network.caip2();
    let chain = match chain {
        Ok(chain) => chain,
        Err(e) => {
            return Check::fail(
                "settlement_gas",
                format!("cannot read the settlement key's {symbol}: {e}"),
                format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
            );
        }
    };
    match chain.balances(signer).await {
        Ok(b) if b.gas == U256::ZERO => Check::fail(
            "settlement_gas",
            format!(
                "the settlement key {signer} holds no {symbol} on {caip2}, so no payment can settle"
            ),
            format!("send {symbol} on {caip2} to {signer}"),
        ),
        Ok(b) => Check::ok(
            "settlement_gas",
            format!(
                "the settlement key {signer} holds {} wei of {symbol}",
                b.gas
            ),
        ),
        Err(e) => Check::fail(
            "settlement_gas",
            format!("cannot read the settlement key's {symbol}: {e:#}"),
            format!("pass the RPC of {caip2}: agora doctor --rpc URL"),
        ),
    }
}
