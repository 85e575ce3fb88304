//! What the wallet asks a chain: its id (so `--rpc` and `--network` cannot disagree
//! silently), the USDC balance (`balanceOf` on the network's USDC from x402's table),
//! the gas coin's balance (`eth_getBalance`), and `authorizationState(payer, nonce)`,
//! which tells the ledger whether an authorization whose answer was lost was charged.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use anyhow::{Context, bail};
use reqwest::Url;
use x402::Network;
use x402::eip3009::IEip3009Token;

use super::ledger::ChainState;

/// A public RPC for networks people use without one of their own; others need `--rpc`.
fn public_rpc(network: &Network) -> Option<&'static str> {
    match network.chain_id()? {
        84532 => Some("https://sepolia.base.org"),
        8453 => Some("https://mainnet.base.org"),
        _ => None,
    }
}

/// The gas coin's ticker (ETH on Base and Ethereum).
pub fn gas_symbol(network: &Network) -> &'static str {
    match network.chain_id() {
        Some(137 | 80002) => "POL",
        Some(43114 | 43113) => "AVAX",
        _ => "ETH",
    }
}

/// A connected chain and the network it serves.
pub struct Chain {
    /// The network, as read from the RPC's chain id.
    pub network: Network,
    /// The RPC as given (never printed beyond its origin).
    pub rpc: Url,
    provider: DynProvider,
}

/// Connects to `rpc` (or the network's public RPC), reads its chain id and checks it
/// against `network` when one was named. `network` defaults to base-sepolia when no
/// `--rpc` is given; with an `--rpc` alone, the RPC's chain decides.
pub async fn connect(network: Option<&str>, rpc: Option<&Url>) -> anyhow::Result<Chain> {
    let wanted = network
        .map(|n| Network::parse(n).with_context(|| format!("--network {n:?}")))
        .transpose()?;
    let rpc = match (rpc, &wanted) {
        (Some(url), _) => url.clone(),
        (None, named) => {
            let network = named.clone().unwrap_or(Network::BASE_SEPOLIA);
            let Some(public) = public_rpc(&network) else {
                bail!(
                    "no public RPC is built in for {}; pass --rpc URL (a JSON-RPC endpoint of that chain)",
                    network.caip2()
                );
            };
            public.parse().context("the built-in RPC URL")?
        }
    };
    let origin = x402::redact::origin(rpc.as_str());
    let provider = ProviderBuilder::new().connect_http(rpc.clone()).erased();
    let chain_id = provider.get_chain_id().await.with_context(|| {
        format!("cannot read the chain id from {origin} (is the RPC up? pass --rpc URL)")
    })?;
    let served = Network::Eip155(chain_id);
    if let Some(named) = wanted
        && named != served
    {
        bail!(
            "--rpc {origin} serves {} but --network is {}; pass the RPC of {} or drop --network",
            served.caip2(),
            named.caip2(),
            named.caip2()
        );
    }
    Ok(Chain {
        network: served,
        rpc,
        provider,
    })
}

/// A wallet's balances on one chain, atomic.
#[derive(Debug, Clone, Copy)]
pub struct Balances {
    /// The network's USDC contract.
    pub usdc_address: Address,
    /// USDC, 6 decimals.
    pub usdc: U256,
    /// The gas coin, in wei.
    pub gas: U256,
}

impl Chain {
    /// `who`'s USDC (from x402's table for this network) and gas-coin balances.
    pub async fn balances(&self, who: Address) -> anyhow::Result<Balances> {
        let asset = self.network.default_asset().map_err(|e| {
            anyhow::anyhow!("{e}; agora wallet balance shows USDC on the networks x402 knows")
        })?;
        let origin = x402::redact::origin(self.rpc.as_str());
        let usdc = IEip3009Token::new(asset.address, &self.provider)
            .balanceOf(who)
            .call()
            .await
            .with_context(|| format!("cannot read the USDC balance from {origin}"))?;
        let gas = self.provider.get_balance(who).await.with_context(|| {
            format!(
                "cannot read the {} balance from {origin}",
                gas_symbol(&self.network)
            )
        })?;
        Ok(Balances {
            usdc_address: asset.address,
            usdc,
            gas,
        })
    }

    /// `authorizationState(payer, nonce)` on `asset`: whether that authorization was
    /// used. Pass it to `Ledger::resolve_open` as the check.
    pub async fn authorization_state(
        &self,
        asset: Address,
        payer: Address,
        nonce: B256,
    ) -> anyhow::Result<ChainState> {
        let used = IEip3009Token::new(asset, &self.provider)
            .authorizationState(payer, nonce)
            .call()
            .await
            .context("cannot read authorizationState")?;
        Ok(if used {
            ChainState::Used
        } else {
            ChainState::Unused
        })
    }
}
