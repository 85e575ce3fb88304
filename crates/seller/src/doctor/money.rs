//! The doctor checks on how the seller is paid: the network and an RPC for it, a
//! facilitator that settles it, who receives payments, the wallet's USDC and the
//! settlement key's gas. Kept apart from what the daemon serves (`daemon.rs`) so each
//! file reads as one question.

use alloy::primitives::{Address, U256};
use wallet::budget::usdc_text;
use wallet::chain::{self, Chain};
use x402::{Facilitator, HttpFacilitator, Network};

use super::{CHECK_TIMEOUT, Check, Details, Fix, Options};
use crate::FacilitatorInfo;

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
    options: &Options,
    configured: Option<String>,
    embedded: Option<&Embedded>,
) -> (Result<Chain, String>, Network) {
    let named = options.network.clone().or(configured);
    let fallback = embedded
        .and_then(|e| e.networks.first().cloned())
        .unwrap_or(Network::BASE_SEPOLIA);
    let wanted = match named.as_deref().map(Network::parse) {
        Some(Ok(network)) => Some(network),
        Some(Err(e)) => return (Err(format!("{e}")), fallback),
        None => None,
    };
    // Without a named network, an RPC decides; without either, the fallback.
    let network_arg = match (&wanted, &options.rpc) {
        (Some(n), _) => Some(n.caip2()),
        (None, Some(_)) => None,
        (None, None) => Some(fallback.caip2()),
    };
    let connected = tokio::time::timeout(
        CHECK_TIMEOUT,
        chain::connect(network_arg.as_deref(), options.rpc.as_ref()),
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

/// The facilitator settles the network: the embedded one by its chains, the one at
/// `url` by its `/supported`.
pub(super) async fn facilitator_check(
    network: &Network,
    url: &str,
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
                Fix::SettleNetwork {
                    network: network.clone(),
                },
            )
        };
    }
    let use_another = Fix::UseFacilitator {
        network: network.clone(),
    };
    let remote = match HttpFacilitator::new(url) {
        Ok(remote) => remote.with_timeout(CHECK_TIMEOUT),
        Err(e) => return Check::fail("facilitator", format!("{url}: {e}"), use_another),
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
                Fix::SellOnSettledNetwork {
                    network: network.clone(),
                },
            )
        }
        Err(e) => Check::fail(
            "facilitator",
            format!("{url}/supported did not answer: {e}"),
            use_another,
        ),
    }
}

/// Who gets paid: the daemon's configured recipient, else the default wallet.
pub(super) fn recipient_check(pay_to: Option<String>) -> Check {
    if let Some(address) = pay_to {
        return Check::ok("recipient", format!("payments go to {address}"))
            .fix(Fix::ChangeRecipient);
    }
    match wallet::default_wallet() {
        Ok(Some((name, address))) => Check::ok(
            "recipient",
            format!("payments go to the default wallet {name} ({address})"),
        ),
        Ok(None) => Check::fail(
            "recipient",
            "no recipient: no address to pay is set and no wallet",
            Fix::AddRecipient,
        ),
        Err(e) => Check::fail("recipient", format!("{e:#}"), Fix::ListWallets),
    }
}

/// The default wallet exists and holds USDC on the network (it pays for paid probes
/// and any buying).
pub(super) async fn wallet_check(network: &Network, chain: &Result<Chain, String>) -> Check {
    let caip2 = network.caip2();
    let pass_rpc = || Fix::PassRpc {
        network: network.clone(),
    };
    let (name, address) = match wallet::default_wallet() {
        Ok(Some(found)) => found,
        Ok(None) => return Check::fail("wallet", "no agora wallet", Fix::CreateWallet),
        Err(e) => return Check::fail("wallet", format!("{e:#}"), Fix::ListWallets),
    };
    let chain = match chain {
        Ok(chain) => chain,
        Err(e) => {
            return Check::fail(
                "wallet",
                format!("cannot read {name}'s balance on {caip2}: {e}"),
                pass_rpc(),
            );
        }
    };
    match chain.balances(address).await {
        Ok(b) if b.usdc.is_zero() => Check::fail(
            "wallet",
            format!("wallet {name} ({address}) holds no USDC on {caip2}"),
            Fix::FundWallet {
                network: network.clone(),
                address,
            },
        )
        .details(Details::Wallet {
            address,
            usdc: "0".into(),
        }),
        Ok(b) => Check::ok(
            "wallet",
            format!(
                "wallet {name} ({address}) holds {} USDC on {caip2}",
                usdc_text(b.usdc)
            ),
        )
        .details(Details::Wallet {
            address,
            usdc: usdc_text(b.usdc),
        }),
        Err(e) => Check::fail(
            "wallet",
            format!("cannot read {name}'s balance: {e:#}"),
            pass_rpc(),
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
    let pass_rpc = || Fix::PassRpc {
        network: network.clone(),
    };
    let chain = match chain {
        Ok(chain) => chain,
        Err(e) => {
            return Check::fail(
                "settlement_gas",
                format!("cannot read the settlement key's {symbol}: {e}"),
                pass_rpc(),
            );
        }
    };
    match chain.balances(signer).await {
        Ok(b) if b.gas == U256::ZERO => Check::fail(
            "settlement_gas",
            format!(
                "the settlement key {signer} holds no {symbol} on {caip2}, so no payment can settle"
            ),
            Fix::FundSettlementKey {
                network: network.clone(),
                symbol,
                signer,
            },
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
            pass_rpc(),
        ),
    }
}
