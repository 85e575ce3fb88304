//! Networks (CAIP-2 ids and x402 v1 names) and the USDC deployment on each.
//!
//! x402 v1 names networks (`base-sepolia`), v2 uses CAIP-2 (`eip155:84532`); buyers and
//! sellers in the wild send either, so both parse to one [`Network`] value and each
//! protocol version writes its own form back out.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::{Address, address};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A payment network: an EVM chain by id, or another CAIP-2 namespace we carry but
/// cannot pay on (so a 402 offering Solana next to Base still parses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Network {
    /// `eip155:<chainId>`.
    Eip155(u64),
    /// Any other CAIP-2 id, kept verbatim (e.g. `solana:5eykt…`).
    Other(String),
}

/// A token that can be paid with the exact EVM scheme, with the EIP-712 domain its
/// `transferWithAuthorization` expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// The token contract.
    pub address: Address,
    /// Atomic units per whole token, as a power of ten.
    pub decimals: u8,
    /// Ticker shown to people.
    pub symbol: String,
    /// EIP-712 domain `name` (Base Sepolia's USDC is "USDC", mainnet's "USD Coin").
    pub eip712_name: String,
    /// EIP-712 domain `version`.
    pub eip712_version: String,
}

/// A chain we know by name, with its USDC deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownChain {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The x402 v1 network name.
    pub v1_name: &'static str,
    /// Other spellings people type.
    pub aliases: &'static [&'static str],
    /// Human name.
    pub display_name: &'static str,
    /// Whether this is a test network.
    pub testnet: bool,
    /// USDC (or the chain's x402 stablecoin) on this chain.
    pub usdc: KnownAsset,
}

/// Static form of [`Asset`] for the built-in table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAsset {
    /// Token contract address.
    pub address: Address,
    /// Decimals.
    pub decimals: u8,
    /// Ticker.
    pub symbol: &'static str,
    /// EIP-712 domain name.
    pub eip712_name: &'static str,
    /// EIP-712 domain version.
    pub eip712_version: &'static str,
}

/// USDC's decimals on every chain in [`KNOWN_CHAINS`]: the one place agora writes them,
/// so budgets, flags and prices typed in USDC read the table's truth.
pub const USDC_DECIMALS: u8 = 6;

const fn usdc(address: Address, eip712_name: &'static str) -> KnownAsset {
    KnownAsset {
        address,
        decimals: USDC_DECIMALS,
        symbol: "USDC",
        eip712_name,
        eip712_version: "2",
    }
}

/// Every EVM chain with USDC that the x402 SDKs list (reference/x402.md §4).
pub const KNOWN_CHAINS: &[KnownChain] = &[
    KnownChain {
        chain_id: 8453,
        v1_name: "base",
        aliases: &["base-mainnet"],
        display_name: "Base",
        testnet: false,
        usdc: usdc(
            address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 84532,
        v1_name: "base-sepolia",
        aliases: &["base_sepolia", "basesepolia", "base-testnet"],
        display_name: "Base Sepolia",
        testnet: true,
        usdc: usdc(
            address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
            "USDC",
        ),
    },
    KnownChain {
        chain_id: 1,
        v1_name: "ethereum",
        aliases: &["mainnet", "eth", "ethereum-mainnet"],
        display_name: "Ethereum",
        testnet: false,
        usdc: usdc(
            address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 137,
        v1_name: "polygon",
        aliases: &["matic", "polygon-mainnet"],
        display_name: "Polygon",
        testnet: false,
        usdc: usdc(
            address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 80002,
        v1_name: "polygon-amoy",
        aliases: &["amoy", "polygon_amoy"],
        display_name: "Polygon Amoy",
        testnet: true,
        usdc: usdc(
            address!("0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582"),
            "USDC",
        ),
    },
    KnownChain {
        chain_id: 43114,
        v1_name: "avalanche",
        aliases: &["avax", "avalanche-c"],
        display_name: "Avalanche C-Chain",
        testnet: false,
        usdc: usdc(
            address!("0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 43113,
        v1_name: "avalanche-fuji",
        aliases: &["fuji", "avalanche_fuji"],
        display_name: "Avalanche Fuji",
        testnet: true,
        usdc: usdc(
            address!("0x5425890298aed601595a70AB815c96711a31Bc65"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 42161,
        v1_name: "arbitrum",
        aliases: &["arbitrum-one", "arb"],
        display_name: "Arbitrum One",
        testnet: false,
        usdc: usdc(
            address!("0xaf88d065e77c8cC2239327C5EDb3A432268e5831"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 421614,
        v1_name: "arbitrum-sepolia",
        aliases: &["arbitrum_sepolia", "arb-sepolia"],
        display_name: "Arbitrum Sepolia",
        testnet: true,
        usdc: usdc(
            address!("0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 143,
        v1_name: "monad",
        aliases: &["monad-mainnet"],
        display_name: "Monad",
        testnet: false,
        usdc: usdc(
            address!("0x754704Bc059F8C67012fEd69BC8A327a5aafb603"),
            "USD Coin",
        ),
    },
    KnownChain {
        chain_id: 1329,
        v1_name: "sei",
        aliases: &["sei-mainnet"],
        display_name: "Sei",
        testnet: false,
        usdc: usdc(
            address!("0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"),
            "USDC",
        ),
    },
    KnownChain {
        chain_id: 4689,
        v1_name: "iotex",
        aliases: &["iotex-mainnet"],
        display_name: "IoTeX",
        testnet: false,
        usdc: usdc(
            address!("0xcdf79194c6c285077a58da47641d4dbe51f63542"),
            "Bridged USDC",
        ),
    },
];

/// Solana's v1 names and their CAIP-2 ids, so a mixed 402 round-trips.
const SOLANA_NAMES: &[(&str, &str)] = &[
    ("solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
    ("solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
];

/// Why a network string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Neither a known name nor a CAIP-2 id.
    #[error(
        "unknown network {input:?}{hint}; use a name such as base-sepolia or base, or a CAIP-2 id such as eip155:84532"
    )]
    Unknown {
        /// What was given.
        input: String,
        /// A did-you-mean suffix, possibly empty.
        hint: String,
    },
    /// `eip155:` followed by something that is not a chain id.
    #[error("invalid CAIP-2 network {0:?}: the part after eip155: must be a decimal chain id")]
    BadChainId(String),
    /// The chain has no built-in USDC, so the asset must be given.
    #[error(
        "network {0} has no built-in USDC; pass the token explicitly (address, decimals, EIP-712 name and version)"
    )]
    NoDefaultAsset(String),
}

impl Network {
    /// Base Sepolia, the default selling network.
    pub const BASE_SEPOLIA: Network = Network::Eip155(84532);

    /// Parses a v1 name, an alias, or a CAIP-2 id (case-insensitive for names).
    ///
    /// ```rust
    /// use x402::Network;
    ///
    /// // v1 names and v2 CAIP-2 ids are one value, written back in each version's form.
    /// let network = Network::parse("base-sepolia")?;
    /// assert_eq!(network, Network::parse("eip155:84532")?);
    /// assert_eq!(network.caip2(), "eip155:84532");
    /// assert_eq!(network.v1_name(), "base-sepolia");
    /// assert_eq!(network.chain_id(), Some(84532));
    ///
    /// // Other namespaces are carried, though nothing here can pay on them.
    /// assert_eq!(Network::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")?.chain_id(), None);
    /// # Ok::<(), x402::NetworkError>(())
    /// ```
    pub fn parse(input: &str) -> Result<Self, NetworkError> {
        let trimmed = input.trim();
        if let Some(reference) = trimmed.strip_prefix("eip155:") {
            return reference
                .parse::<u64>()
                .map(Network::Eip155)
                .map_err(|_| NetworkError::BadChainId(trimmed.to_string()));
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(chain) = KNOWN_CHAINS
            .iter()
            .find(|c| c.v1_name == lower || c.aliases.contains(&lower.as_str()))
        {
            return Ok(Network::Eip155(chain.chain_id));
        }
        if let Some((_, caip2)) = SOLANA_NAMES.iter().find(|(name, _)| *name == lower) {
            return Ok(Network::Other((*caip2).to_string()));
        }
        if is_caip2(trimmed) {
            return Ok(Network::Other(trimmed.to_string()));
        }
        Err(NetworkError::Unknown {
            input: trimmed.to_string(),
            hint: did_you_mean(&lower),
        })
    }

    /// The EVM chain id, if this is an EVM network.
    pub fn chain_id(&self) -> Option<u64> {
        match self {
            Network::Eip155(id) => Some(*id),
            Network::Other(_) => None,
        }
    }

    /// The built-in table entry, if we know this chain.
    pub fn known(&self) -> Option<&'static KnownChain> {
        let id = self.chain_id()?;
        KNOWN_CHAINS.iter().find(|c| c.chain_id == id)
    }

    /// The CAIP-2 id (v2 wire form).
    pub fn caip2(&self) -> String {
        match self {
            Network::Eip155(id) => format!("eip155:{id}"),
            Network::Other(id) => id.clone(),
        }
    }

    /// The v1 wire form: the legacy name where one exists, else the CAIP-2 id.
    pub fn v1_name(&self) -> String {
        if let Some(chain) = self.known() {
            return chain.v1_name.to_string();
        }
        if let Network::Other(id) = self
            && let Some((name, _)) = SOLANA_NAMES.iter().find(|(_, caip2)| caip2 == id)
        {
            return (*name).to_string();
        }
        self.caip2()
    }

    /// The chain's USDC, or an error telling the user to pass an asset.
    pub fn default_asset(&self) -> Result<Asset, NetworkError> {
        self.known()
            .map(|c| c.usdc.to_asset())
            .ok_or_else(|| NetworkError::NoDefaultAsset(self.caip2()))
    }
}

impl KnownAsset {
    /// Owned copy for use in requirements.
    pub fn to_asset(&self) -> Asset {
        Asset {
            address: self.address,
            decimals: self.decimals,
            symbol: self.symbol.to_string(),
            eip712_name: self.eip712_name.to_string(),
            eip712_version: self.eip712_version.to_string(),
        }
    }
}

fn is_caip2(s: &str) -> bool {
    let Some((namespace, reference)) = s.split_once(':') else {
        return false;
    };
    (3..=8).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && (1..=32).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn did_you_mean(lower: &str) -> String {
    let names = KNOWN_CHAINS
        .iter()
        .map(|c| c.v1_name)
        .chain(SOLANA_NAMES.iter().map(|(n, _)| *n));
    names
        .map(|name| (strsim::levenshtein(lower, name), name))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, name)| format!(" (did you mean {name}?)"))
        .unwrap_or_default()
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.caip2())
    }
}

impl FromStr for Network {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::parse(s)
    }
}

/// Serializes as CAIP-2 (the v2 form); v1 writers call [`Network::v1_name`].
impl Serialize for Network {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.caip2())
    }
}

/// Accepts a v1 name, an alias or a CAIP-2 id.
impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Network::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_chain_parses_by_name_alias_and_caip2() {
        for chain in KNOWN_CHAINS {
            let by_id = Network::Eip155(chain.chain_id);
            assert_eq!(Network::parse(chain.v1_name).unwrap(), by_id);
            assert_eq!(Network::parse(&by_id.caip2()).unwrap(), by_id);
            for alias in chain.aliases {
                assert_eq!(Network::parse(alias).unwrap(), by_id, "{alias}");
            }
            assert_eq!(by_id.v1_name(), chain.v1_name);
            assert_eq!(by_id.default_asset().unwrap().decimals, 6);
        }
    }

    #[test]
    fn base_sepolia_usdc_is_named_usdc_and_base_is_usd_coin() {
        let sepolia = Network::parse("base-sepolia")
            .unwrap()
            .default_asset()
            .unwrap();
        assert_eq!(sepolia.eip712_name, "USDC");
        assert_eq!(sepolia.eip712_version, "2");
        assert_eq!(
            sepolia.address,
            address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e")
        );
        let base = Network::parse("BASE").unwrap().default_asset().unwrap();
        assert_eq!(base.eip712_name, "USD Coin");
    }

    #[test]
    fn chain_ids_in_table_are_unique() {
        let mut ids: Vec<u64> = KNOWN_CHAINS.iter().map(|c| c.chain_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KNOWN_CHAINS.len());
    }

    #[test]
    fn unknown_evm_chain_needs_an_explicit_asset() {
        let local = Network::parse("eip155:31337").unwrap();
        assert_eq!(local.chain_id(), Some(31337));
        assert_eq!(local.v1_name(), "eip155:31337");
        assert_eq!(
            local.default_asset(),
            Err(NetworkError::NoDefaultAsset("eip155:31337".into()))
        );
    }

    #[test]
    fn solana_round_trips_between_v1_and_caip2() {
        let sol = Network::parse("solana-devnet").unwrap();
        assert_eq!(sol.caip2(), "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
        assert_eq!(sol.v1_name(), "solana-devnet");
        assert_eq!(sol.chain_id(), None);
        assert_eq!(Network::parse(&sol.caip2()).unwrap(), sol);
    }

    #[test]
    fn bad_networks_say_what_to_type() {
        let err = Network::parse("base-sepolai").unwrap_err();
        assert!(
            err.to_string().contains("did you mean base-sepolia?"),
            "{err}"
        );
        assert!(matches!(
            Network::parse("eip155:abc"),
            Err(NetworkError::BadChainId(_))
        ));
        assert!(matches!(
            Network::parse(""),
            Err(NetworkError::Unknown { .. })
        ));
        assert!(matches!(
            Network::parse("nonsense"),
            Err(NetworkError::Unknown { .. })
        ));
    }

    #[test]
    fn serde_reads_names_and_writes_caip2() {
        let n: Network = serde_json::from_str("\"base-sepolia\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"eip155:84532\"");
    }
}
