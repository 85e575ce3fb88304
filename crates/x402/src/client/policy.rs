//! Choosing what to pay: the user's [`Policy`] (caps, networks, assets, budget) and
//! the wallet's balances pick one offer of a 402, or refuse before anything is signed.
//!
//! Every refusal is typed and its message names the price in decimal units and the
//! limit it met, in the terms of this API ([`Policy`]'s cap, networks, assets and
//! budget); a front end adds what its user types to change the answer (the `agora`
//! CLI names its flags).

use std::collections::HashMap;
use std::fmt;

use alloy::primitives::{Address, U256};

use super::challenge::{Challenge, Offer};
use crate::money::Money;
use crate::network::Network;
use crate::wire::SCHEME_EXACT;

/// The decimals of a token allowed by address alone (`--allow-asset`), whose real
/// decimals agora does not know: taken as USDC's, so caps and budgets given in USDC
/// compare with its atomic units one for one. One named rule for the buyer, its probe
/// and the paywall's suggested command.
pub const UNLISTED_ASSET_DECIMALS: u8 = crate::network::USDC_DECIMALS;

/// A token the user allowed besides the known USDC table (`--allow-asset`), with its
/// own cap because its units are not USDC's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAsset {
    /// Where the token lives.
    pub network: Network,
    /// The token contract.
    pub address: Address,
    /// Its decimals, to show prices.
    pub decimals: u8,
    /// Ticker shown in messages.
    pub symbol: String,
    /// Most paid per call, atomic units of this token.
    pub max_per_call: U256,
}

/// What the user allows one call to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Most paid per call in any known USDC (atomic, 6 decimals), from `--max`.
    pub max_usdc: U256,
    /// Networks allowed (`--network`); empty means any EVM network.
    pub networks: Vec<Network>,
    /// Tokens allowed besides each known chain's USDC (`--allow-asset`).
    pub extra_assets: Vec<AllowedAsset>,
    /// What is left of the budget (atomic USDC), from the ledger; `None` for no budget.
    pub remaining_budget: Option<U256>,
}

impl Policy {
    /// Pays known USDC on any network, up to `max_usdc` atomic units per call.
    pub fn new(max_usdc: U256) -> Self {
        Self {
            max_usdc,
            networks: Vec::new(),
            extra_assets: Vec::new(),
            remaining_budget: None,
        }
    }

    /// Restricts payment to `network` (repeatable).
    pub fn allow_network(mut self, network: Network) -> Self {
        self.networks.push(network);
        self
    }

    /// Allows a token outside the USDC table.
    pub fn allow_asset(mut self, asset: AllowedAsset) -> Self {
        self.extra_assets.push(asset);
        self
    }

    /// Caps the call at what is left of the budget.
    pub fn with_budget(mut self, remaining: U256) -> Self {
        self.remaining_budget = Some(remaining);
        self
    }

    /// The cap and display units for `asset` on `network`, if it is allowed.
    fn asset_terms(&self, network: &Network, asset: Address) -> Option<(U256, u8, String)> {
        if let Some(chain) = network.known()
            && chain.usdc.address == asset
        {
            return Some((self.max_usdc, chain.usdc.decimals, chain.usdc.symbol.into()));
        }
        self.extra_assets
            .iter()
            .find(|a| &a.network == network && a.address == asset)
            .map(|a| (a.max_per_call, a.decimals, a.symbol.clone()))
    }
}

/// What the wallet holds, per network and token, when the caller knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances(HashMap<(Network, Address), U256>);

impl Balances {
    /// Records that the wallet holds `amount` of `asset` on `network`.
    pub fn insert(&mut self, network: Network, asset: Address, amount: U256) {
        self.0.insert((network, asset), amount);
    }

    /// The known balance, if any.
    pub fn get(&self, network: &Network, asset: Address) -> Option<U256> {
        self.0.get(&(network.clone(), asset)).copied()
    }
}

/// A price with its units, shown as a decimal (`0.001 USDC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// The amount and its decimals.
    pub money: Money,
    /// Ticker, or the token address when unknown.
    pub symbol: String,
    /// Where it is paid.
    pub network: Network,
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} on {}",
            self.money,
            self.symbol,
            self.network.v1_name()
        )
    }
}

/// Why an offer (or the whole 402) was refused before signing. Each message names the
/// price and the limit it met; the fields carry what a front end needs to say how to
/// change that limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Above the per-call cap.
    #[error(
        "the price {price} is above the per-call cap of {}",
        Money::from_atomic(*max, price.money.decimals)
    )]
    AboveMax {
        /// What the server asks.
        price: Price,
        /// The cap, atomic, in the price's units.
        max: U256,
    },
    /// Above what is left of the budget.
    #[error(
        "the price {price} is above the {} {} left of your budget",
        Money::from_atomic(*remaining, price.money.decimals),
        price.symbol
    )]
    AboveBudget {
        /// What the server asks.
        price: Price,
        /// What is left, atomic, in the price's units.
        remaining: U256,
    },
    /// A network the user did not allow.
    #[error("the offer of {price} is on {network}, which is not allowed")]
    NetworkNotAllowed {
        /// What the server asks.
        price: Price,
        /// Its network (v1 name where one exists).
        network: String,
    },
    /// A token outside the USDC table and the policy's allowed assets.
    #[error(
        "the offer of {atomic} atomic units of token {asset} on {network} is not in the known USDC table"
    )]
    AssetNotAllowed {
        /// The token.
        asset: Address,
        /// Its network.
        network: String,
        /// What the server asks, atomic.
        atomic: U256,
    },
    /// A scheme other than `exact`.
    #[error("the offer on {network} uses scheme {scheme:?}; only \"exact\" can be paid")]
    Scheme {
        /// The scheme.
        scheme: String,
        /// Its network.
        network: String,
    },
    /// No EIP-712 domain (`extra.name`/`extra.version`) to sign under.
    #[error(
        "the offer of {price} names no EIP-712 domain (extra.name/extra.version), so it cannot be signed; ask the seller to fix it"
    )]
    NoDomain {
        /// What the server asks.
        price: Price,
    },
    /// Every allowed offer costs more than the wallet holds there.
    #[error(
        "the wallet holds {} {} on {}, less than the price {price}",
        Money::from_atomic(*balance, price.money.decimals),
        price.symbol,
        price.network.v1_name()
    )]
    InsufficientBalance {
        /// The cheapest allowed offer.
        price: Price,
        /// What the wallet holds there, atomic.
        balance: U256,
    },
    /// Several offers, each refused for its own reason (listed).
    #[error("no offer is acceptable: {}", list(offered, skipped))]
    NothingAcceptable {
        /// Each offer's refusal, in the server's order.
        offered: Vec<Refusal>,
        /// Networks offered that this client cannot pay on (non-EVM).
        skipped: Vec<String>,
    },
}

fn list(offered: &[Refusal], skipped: &[String]) -> String {
    let mut parts: Vec<String> = offered.iter().map(ToString::to_string).collect();
    if !skipped.is_empty() {
        parts.push(format!(
            "offers on {} cannot be paid by this client (EVM networks only)",
            skipped.join(", ")
        ));
    }
    parts.join("; ")
}

/// The offer chosen and its price.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The offer to pay.
    pub offer: Offer,
    /// Its price with units.
    pub price: Price,
}

/// One offer judged: acceptable with its price and scale, or refused.
fn judge(policy: &Policy, offer: &Offer) -> Result<(Price, U256), Refusal> {
    let r = &offer.requirement;
    let network = r.network.v1_name();
    if r.scheme != SCHEME_EXACT {
        return Err(Refusal::Scheme {
            scheme: r.scheme.clone(),
            network,
        });
    }
    let Some((max, decimals, symbol)) = policy.asset_terms(&r.network, r.asset) else {
        return Err(Refusal::AssetNotAllowed {
            asset: r.asset,
            network,
            atomic: r.amount,
        });
    };
    let price = Price {
        money: Money::from_atomic(r.amount, decimals),
        symbol,
        network: r.network.clone(),
    };
    if !policy.networks.is_empty() && !policy.networks.contains(&r.network) {
        return Err(Refusal::NetworkNotAllowed { price, network });
    }
    if r.eip712_domain().is_none() {
        return Err(Refusal::NoDomain { price });
    }
    if r.amount > max {
        return Err(Refusal::AboveMax { price, max });
    }
    if let Some(remaining) = policy.remaining_budget
        && r.amount > remaining
    {
        return Err(Refusal::AboveBudget { price, remaining });
    }
    // Comparable across decimals: atomic units scaled to 36 decimals.
    let scale = U256::from(10).pow(U256::from(36u8.saturating_sub(decimals)));
    Ok((price, r.amount.saturating_mul(scale)))
}

/// Chooses the cheapest acceptable offer, preferring one the wallet can afford, or
/// says why none can be paid. Signs nothing.
pub fn choose(
    challenge: &Challenge,
    policy: &Policy,
    balances: Option<&Balances>,
) -> Result<Choice, Refusal> {
    let mut acceptable = Vec::new();
    let mut refused = Vec::new();
    for offer in &challenge.offers {
        match judge(policy, offer) {
            Ok((price, scaled)) => {
                let held = balances
                    .and_then(|b| b.get(&offer.requirement.network, offer.requirement.asset));
                // 2: known to hold enough, 1: not known, 0: known to hold too little.
                let rank = match held {
                    Some(h) if h >= offer.requirement.amount => 2u8,
                    None => 1,
                    Some(_) => 0,
                };
                acceptable.push((rank, scaled, offer, price, held));
            }
            Err(refusal) => refused.push(refusal),
        }
    }
    // Known to be affordable first, then not known, then cheapest, then server order.
    acceptable.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if let Some((rank, _, offer, price, held)) = acceptable.into_iter().next() {
        if rank == 0 {
            return Err(Refusal::InsufficientBalance {
                balance: held.unwrap_or_default(),
                price,
            });
        }
        return Ok(Choice {
            offer: offer.clone(),
            price,
        });
    }
    Err(summarize(refused, challenge.skipped.clone()))
}

/// One refusal when one fix serves (a single offer, or every offer above the cap or
/// the budget: the cheapest is named); otherwise the list.
fn summarize(mut refused: Vec<Refusal>, skipped: Vec<String>) -> Refusal {
    if refused.len() == 1 && skipped.is_empty() {
        return refused.remove(0);
    }
    let cheapest = |pick: fn(&Refusal) -> Option<&Price>| -> Option<Refusal> {
        if refused.is_empty() || !refused.iter().all(|r| pick(r).is_some()) {
            return None;
        }
        refused
            .iter()
            .filter(|r| pick(r).is_some_and(|p| p.symbol == "USDC"))
            .min_by_key(|r| pick(r).map(|p| p.money.atomic))
            .cloned()
    };
    let above_max = cheapest(|r| match r {
        Refusal::AboveMax { price, .. } => Some(price),
        _ => None,
    });
    let above_budget = cheapest(|r| match r {
        Refusal::AboveBudget { price, .. } => Some(price),
        _ => None,
    });
    above_max
        .or(above_budget)
        .unwrap_or(Refusal::NothingAcceptable {
            offered: refused,
            skipped,
        })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
