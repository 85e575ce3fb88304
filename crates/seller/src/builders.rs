//! What a daemon is built from: the embedded facilitator on a set of RPCs, the
//! on-chain registrar of the seller's agent, and the selling defaults kept in the
//! home. `agora serve` and `agora demo` build their [`crate::DaemonConfig`] with these.

use std::path::Path;
use std::sync::Arc;

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use facilitator::{BatchConfig, ChainConfig, EmbeddedConfig, EmbeddedFacilitator, OpenError};
use x402::Facilitator;

use crate::admin::{FacilitatorInfo, Settings};

/// Why a facilitator or registrar could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The embedded facilitator did not open (database, RPC).
    #[error("cannot start the embedded facilitator")]
    Facilitator(#[source] OpenError),
    /// The registry RPC did not say its chain.
    #[error("cannot read the chain id of the registry RPC {rpc}")]
    RegistryChain {
        /// The endpoint.
        rpc: String,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// No Identity Registry is known on the chain, and none was named.
    #[error("no known ERC-8004 Identity Registry on {}", .network.caip2())]
    UnknownRegistry {
        /// The registry RPC's chain.
        network: x402::Network,
    },
    /// The registry RPC is not a URL.
    #[error("the registry RPC {rpc} is not a URL")]
    RegistryUrl {
        /// What was given.
        rpc: String,
        /// Why.
        #[source]
        source: <reqwest::Url as std::str::FromStr>::Err,
    },
    /// The registrar could not read the registry.
    #[error(transparent)]
    Registrar(#[from] erc8004::registrar::RegistrarError),
}

/// The embedded facilitator settling on `chains` (see [`ChainConfig::from_rpcs`])
/// from `signer`'s key, its journal in `home/facilitator.db`, and its description
/// for status output.
pub async fn embedded_facilitator(
    home: &Path,
    chains: Vec<ChainConfig>,
    signer: PrivateKeySigner,
    batch: BatchConfig,
) -> Result<(Arc<dyn Facilitator>, FacilitatorInfo), BuildError> {
    let networks = chains.iter().map(|c| c.network.clone()).collect();
    let mut config = EmbeddedConfig::new(chains, signer, home.join("facilitator.db"));
    config.batch = batch;
    let embedded = EmbeddedFacilitator::open(config)
        .await
        .map_err(BuildError::Facilitator)?;
    let info = FacilitatorInfo::Embedded {
        networks,
        signer: embedded.signer_address(),
    };
    Ok((Arc::new(embedded), info))
}

/// Connects a registrar for `signer` to the Identity Registry on `rpc`'s chain: the
/// one at `registry`, else the chain's known ERC-8004 deployment.
pub async fn registry_config(
    rpc: &str,
    signer: PrivateKeySigner,
    registry: Option<Address>,
    inline: bool,
) -> Result<offers::RegistryConfig, BuildError> {
    let network =
        facilitator::network_of_rpc(rpc)
            .await
            .map_err(|source| BuildError::RegistryChain {
                rpc: rpc.to_string(),
                source,
            })?;
    let registry = match registry {
        Some(address) => address,
        None => {
            erc8004::identity_registry(&network).ok_or(BuildError::UnknownRegistry { network })?
        }
    };
    let url = rpc.parse().map_err(|source| BuildError::RegistryUrl {
        rpc: rpc.to_string(),
        source,
    })?;
    let sender = signer.address();
    let provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(signer))
        .connect_http(url)
        .erased();
    let registrar = erc8004::registrar::Registrar::connect(provider, registry, sender).await?;
    Ok(offers::RegistryConfig { registrar, inline })
}

/// The selling defaults kept in `home` (`/v1/settings` of a daemon that is not
/// running), or `None` when the home has no offer database or it cannot be read.
/// Reading never creates the database.
pub fn stored_settings(home: &Path) -> Option<Settings> {
    let db = home.join(crate::OFFER_DB);
    if !db.exists() {
        return None;
    }
    let store = offers::Store::open(&db).ok()?;
    crate::admin::server::read_settings(&store).ok()
}
