//! The ERC-8004 registrar for a devnet account, against the registry the devnet
//! installs.

use devnet::Devnet;
use erc8004::registrar::Registrar;

/// A registrar that sends from devnet account `account`.
pub async fn registrar(chain: &Devnet, account: usize) -> Registrar {
    let account = &chain.accounts()[account];
    Registrar::connect(
        chain.provider_for(account.signer()).unwrap(),
        devnet::IDENTITY_REGISTRY_ADDRESS,
        account.address(),
    )
    .await
    .unwrap()
}
