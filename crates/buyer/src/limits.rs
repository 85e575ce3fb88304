//! What one paid call may spend, from typed values: the caller's per-call cap, the
//! networks and extra tokens it allows, and the chains to read balances from. The
//! wallet's own budgets (per call, per 24 hours) come from its ledger at pay time and
//! apply on top: the lower cap binds, and the refusal says which one did.

use alloy::primitives::{Address, U256};
use reqwest::Url;
use x402::Network;
use x402::client::{AllowedAsset, Policy, UNLISTED_ASSET_DECIMALS};

/// The caller's limits for one call (the wallet's budgets are added by the buyer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most one call may cost, atomic USDC; `None` leaves only the wallet's per-call
    /// budget (and without one, a 402 is refused naming its price).
    pub max: Option<U256>,
    /// Networks the payment may use; empty means any network with known USDC.
    pub networks: Vec<Network>,
    /// Tokens besides the known USDC, counted with USDC's 6 decimals against the cap.
    pub assets: Vec<(Network, Address)>,
    /// Chains whose RPC tells the wallet's USDC: an offer where it holds enough is
    /// preferred, and a price it cannot cover is refused before signing.
    pub balances_from: Vec<Url>,
    /// Sign a new payment even though one for the same URL is still open (both may
    /// be charged); without it such a call is refused before signing.
    pub new_while_open: bool,
}

impl Limits {
    /// No cap of its own: the wallet's budgets only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps one call at `atomic` USDC (6 decimals: 10_000 is 0.01 USDC).
    pub fn max(mut self, atomic: U256) -> Self {
        self.max = Some(atomic);
        self
    }

    /// Allows `network` (repeatable; none allows every network with known USDC).
    pub fn network(mut self, network: Network) -> Self {
        self.networks.push(network);
        self
    }

    /// Also pays the token at `address` on `network`.
    pub fn asset(mut self, network: Network, address: Address) -> Self {
        self.assets.push((network, address));
        self
    }

    /// Reads the wallet's USDC over `rpc` before choosing an offer.
    pub fn balances_from(mut self, rpc: Url) -> Self {
        self.balances_from.push(rpc);
        self
    }

    /// Signs even while an earlier payment for the URL is open.
    pub fn new_while_open(mut self, yes: bool) -> Self {
        self.new_while_open = yes;
        self
    }

    /// The per-call cap: the lower of [`Limits::max`] and the wallet's per-call
    /// budget, or `None` when neither is set.
    pub fn cap(&self, per_call_budget: Option<U256>) -> Option<Cap> {
        per_call_cap(self.max, per_call_budget)
    }

    /// The x402 policy under `cap`: its networks, and its extra tokens capped alike.
    pub fn policy(&self, cap: U256) -> Policy {
        let mut policy = Policy::new(cap);
        for network in &self.networks {
            policy = policy.allow_network(network.clone());
        }
        for (network, address) in &self.assets {
            policy = policy.allow_asset(allowed_asset(network.clone(), *address, cap));
        }
        policy
    }
}

/// The cap that binds one call, and whose it is, so a refusal names the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Atomic USDC.
    pub atomic: U256,
    /// The wallet's per-call budget, not the caller's max, is the lower one.
    pub from_wallet: bool,
}

/// The lower of the caller's `max` and the wallet's `per_call` budget.
pub fn per_call_cap(max: Option<U256>, per_call: Option<U256>) -> Option<Cap> {
    let cap = |atomic, from_wallet| Cap {
        atomic,
        from_wallet,
    };
    match (max, per_call) {
        (Some(m), Some(p)) if p < m => Some(cap(p, true)),
        (Some(m), _) => Some(cap(m, false)),
        (None, Some(p)) => Some(cap(p, true)),
        (None, None) => None,
    }
}

/// A token outside the USDC table, paid up to `cap` of its atomic units and shown as
/// `units of 0x…` with USDC's decimals (its own are not known here).
pub fn allowed_asset(network: Network, address: Address, cap: U256) -> AllowedAsset {
    AllowedAsset {
        network,
        address,
        decimals: UNLISTED_ASSET_DECIMALS,
        symbol: format!("units of {}", address.to_checksum(None)),
        max_per_call: cap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_cap_applies_and_says_whose_it_is() {
        let p = Some(U256::from(5_000));
        let cap = |atomic: u64, from_wallet| {
            Some(Cap {
                atomic: U256::from(atomic),
                from_wallet,
            })
        };
        assert_eq!(per_call_cap(Some(U256::from(10_000)), p), cap(5_000, true));
        assert_eq!(per_call_cap(Some(U256::from(1_000)), p), cap(1_000, false));
        assert_eq!(per_call_cap(None, p), cap(5_000, true));
        assert_eq!(per_call_cap(None, None), None);
        assert_eq!(Limits::new().max(U256::from(7)).cap(None), cap(7, false));
    }

    #[test]
    fn extra_assets_share_the_cap_and_show_their_address() {
        let network = Network::parse("eip155:84532").expect("network");
        let address: Address = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse()
            .expect("address");
        let policy = Limits::new()
            .network(network.clone())
            .asset(network.clone(), address)
            .policy(U256::from(9));
        assert_eq!(policy.networks, vec![network.clone()]);
        let asset = &policy.extra_assets[0];
        assert_eq!(asset.max_per_call, U256::from(9));
        assert_eq!(asset.decimals, 6);
        assert_eq!(
            asset.symbol,
            "units of 0x036CbD53842c5426634e7929541eC2318f3dCF7e"
        );
        assert_eq!(asset.network.chain_id(), Some(84532));
    }
}
