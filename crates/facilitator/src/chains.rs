//! Which chains a facilitator serves, read from its RPCs rather than taken on trust:
//! each endpoint's chain id is asked at start, two endpoints of one chain are refused,
//! and an optional list of networks narrows what is served. Shared by `agora
//! facilitator` and the seller daemon's embedded facilitator.

use std::collections::BTreeMap;

use x402::Network;

use crate::{ChainConfig, OpenError, network_of_rpc};

/// Why a set of RPCs does not make a set of chains to serve.
#[derive(Debug, thiserror::Error)]
pub enum ChainsError {
    /// The RPC did not say its chain id.
    #[error("cannot read the chain id of {rpc} (is the node running?)")]
    Unreachable {
        /// The endpoint asked.
        rpc: String,
        /// What went wrong.
        #[source]
        source: OpenError,
    },
    /// The RPC's chain is not an EVM chain.
    #[error("{rpc} does not serve an EVM chain")]
    NotEvm {
        /// The endpoint.
        rpc: String,
    },
    /// Two RPCs of one chain: which one settles would be a guess.
    #[error("{rpc} and {other} both serve {network}; give one RPC per chain")]
    SameChain {
        /// The later endpoint.
        rpc: String,
        /// The earlier endpoint of the same chain.
        other: String,
        /// The chain, as CAIP-2.
        network: String,
    },
    /// A network asked for is not an EVM network.
    #[error("{network} is not an EVM network; agora's facilitator settles eip155 chains")]
    NetworkNotEvm {
        /// The network asked for.
        network: Network,
    },
    /// A network asked for has no RPC among those given.
    #[error("{} has no matching RPC; the RPCs given serve {}. Add the JSON-RPC endpoint of a {} node", .network.caip2(), .served.join(", "), node_name(.network))]
    Unserved {
        /// The network asked for.
        network: Network,
        /// What the RPCs serve, as `caip2 (rpc)`.
        served: Vec<String>,
    },
}

/// How a node of `network` is called in advice: its display name when known.
pub fn node_name(network: &Network) -> String {
    network
        .known()
        .map_or_else(|| network.caip2(), |k| k.display_name.to_string())
}

impl ChainConfig {
    /// The chains behind `rpcs`, one per chain id, in chain-id order; with `networks`
    /// not empty, only those (a chain left out is logged, a network without an RPC is
    /// an error).
    pub async fn from_rpcs(
        rpcs: &[String],
        networks: &[Network],
    ) -> Result<Vec<ChainConfig>, ChainsError> {
        let mut by_chain: BTreeMap<u64, ChainConfig> = BTreeMap::new();
        for rpc in rpcs {
            let network = network_of_rpc(rpc)
                .await
                .map_err(|source| ChainsError::Unreachable {
                    rpc: rpc.clone(),
                    source,
                })?;
            let Some(chain_id) = network.chain_id() else {
                return Err(ChainsError::NotEvm { rpc: rpc.clone() });
            };
            if let Some(other) = by_chain.get(&chain_id) {
                return Err(ChainsError::SameChain {
                    rpc: rpc.clone(),
                    other: other.rpc_url.clone(),
                    network: network.caip2(),
                });
            }
            by_chain.insert(
                chain_id,
                ChainConfig {
                    network,
                    rpc_url: rpc.clone(),
                },
            );
        }
        if networks.is_empty() {
            return Ok(by_chain.into_values().collect());
        }
        let mut wanted = Vec::new();
        for network in networks {
            let Some(chain_id) = network.chain_id() else {
                return Err(ChainsError::NetworkNotEvm {
                    network: network.clone(),
                });
            };
            if !wanted.contains(&chain_id) {
                wanted.push(chain_id);
            }
            if !by_chain.contains_key(&chain_id) {
                return Err(ChainsError::Unserved {
                    network: network.clone(),
                    served: by_chain
                        .values()
                        .map(|c| format!("{} ({})", c.network.caip2(), c.rpc_url))
                        .collect(),
                });
            }
        }
        let mut chains = Vec::new();
        for (chain_id, chain) in by_chain {
            if wanted.contains(&chain_id) {
                chains.push(chain);
            } else {
                tracing::warn!(
                    rpc = %chain.rpc_url,
                    "not serving {}: it is not among the networks asked for",
                    chain.network.caip2()
                );
            }
        }
        Ok(chains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_network_without_an_rpc_is_refused_naming_what_is_served() {
        // No RPCs and no networks: nothing to serve, and nothing was asked.
        assert!(ChainConfig::from_rpcs(&[], &[]).await.unwrap().is_empty());
        // A network without an RPC names what would serve it.
        let err = ChainConfig::from_rpcs(&[], &[Network::BASE_SEPOLIA])
            .await
            .unwrap_err();
        assert!(matches!(err, ChainsError::Unserved { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("eip155:84532 has no matching RPC"), "{text}");
        assert!(!text.contains("--"), "no CLI flag in {text}");
    }

    #[tokio::test]
    async fn a_dead_rpc_is_named_without_flags() {
        let err = ChainConfig::from_rpcs(&["http://127.0.0.1:9".into()], &[])
            .await
            .unwrap_err();
        assert!(matches!(err, ChainsError::Unreachable { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot read the chain id of http://127.0.0.1:9"),
            "{err}"
        );
    }
}
