//! The embedded facilitator on a devnet: account 0 settles, the journal lives in a
//! directory the test owns.

use std::path::Path;
use std::sync::Arc;

use devnet::Devnet;
use facilitator::{ChainConfig, EmbeddedConfig, EmbeddedFacilitator};

/// The devnet's chain reached at `rpc_url` (the chain's own, or a proxy in front of
/// it), settled by account 0, journaled in `dir/facilitator.db`.
pub fn config_via(chain: &Devnet, rpc_url: &str, dir: &Path) -> EmbeddedConfig {
    EmbeddedConfig::new(
        vec![ChainConfig {
            network: chain.network(),
            rpc_url: rpc_url.to_string(),
        }],
        chain.accounts()[0].signer(),
        dir.join("facilitator.db"),
    )
}

/// [`config_via`] the chain's own RPC.
pub fn config(chain: &Devnet, dir: &Path) -> EmbeddedConfig {
    config_via(chain, chain.rpc_url(), dir)
}

/// Opens the facilitator `config` describes.
pub async fn open(config: EmbeddedConfig) -> Arc<EmbeddedFacilitator> {
    Arc::new(EmbeddedFacilitator::open(config).await.unwrap())
}

/// The facilitator of [`config`], open.
pub async fn facilitator(chain: &Devnet, dir: &Path) -> Arc<EmbeddedFacilitator> {
    open(config(chain, dir)).await
}
