//! The registrar against the devnet's Identity Registry: registering twice with the
//! same URI mints one agent (id 0 first), metadata is written only when it differs and
//! reads back, setAgentURI moves the agent, transfers move what `find_existing` finds,
//! and misuse fails with messages that say what to do.

#![allow(clippy::unwrap_used)]

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol;
use erc8004::registrar::{
    AgentMetadata, Registrar, RegistrarError, SERVICE_TYPE_KEY, ServiceType, X402_SUPPORTED_KEY,
};
use erc8004::{AgentProfile, IIdentityRegistry, OfferEntry, Registration};
use testkit::registrar;

sol! {
    /// The ERC-721 transfer the registry inherits, to move an agent between owners.
    #[sol(rpc)]
    interface IErc721 {
        function transferFrom(address from, address to, uint256 tokenId) external;
    }
}

fn document(name: &str) -> String {
    let offer = OfferEntry {
        name: name.into(),
        endpoint_url: format!("https://{name}.example/services/{name}"),
        description: format!("{name} via x402"),
        skills: vec!["devops_mlops/model_versioning".into()],
        domains: vec![],
        x402: true,
    };
    Registration::for_offers(&AgentProfile::default(), &[offer], &[])
        .unwrap()
        .to_data_uri()
}

#[tokio::test]
async fn ensure_registered_is_idempotent_and_updates_only_what_differs() {
    let chain = testkit::chain::devnet(3).await;
    let seller = chain.accounts()[1].address();
    let registrar = registrar::registrar(&chain, 1).await;
    assert_eq!(registrar.chain_id(), devnet::CHAIN_ID);
    assert_eq!(registrar.sender(), seller);
    let uri = document("alpha");
    let inference = AgentMetadata::seller(ServiceType::Inference);

    assert_eq!(registrar.find_existing(seller, &uri).await.unwrap(), None);
    let first = registrar
        .ensure_registered(seller, &uri, &inference)
        .await
        .unwrap();
    assert_eq!(first.agent_id, U256::ZERO, "the first agent is 0");
    assert!(first.minted);
    assert_eq!(first.transactions.len(), 1);

    let again = registrar
        .ensure_registered(seller, &uri, &inference)
        .await
        .unwrap();
    assert_eq!(again.agent_id, U256::ZERO);
    assert!(!again.minted);
    assert!(
        again.transactions.is_empty(),
        "nothing differs, nothing sent"
    );

    assert_eq!(
        registrar
            .metadata(U256::ZERO, X402_SUPPORTED_KEY)
            .await
            .unwrap(),
        Bytes::from_static(&[1])
    );
    assert_eq!(
        registrar
            .metadata(U256::ZERO, SERVICE_TYPE_KEY)
            .await
            .unwrap(),
        Bytes::from_static(b"inference")
    );

    let http = AgentMetadata::seller(ServiceType::Http);
    let changed = registrar
        .ensure_registered(seller, &uri, &http)
        .await
        .unwrap();
    assert_eq!(changed.agent_id, U256::ZERO);
    assert_eq!(changed.transactions.len(), 1, "only service.type changed");
    assert_eq!(
        registrar
            .metadata(U256::ZERO, SERVICE_TYPE_KEY)
            .await
            .unwrap(),
        Bytes::from_static(b"http")
    );

    let other = registrar
        .ensure_registered(seller, &document("beta"), &http)
        .await
        .unwrap();
    assert_eq!(other.agent_id, U256::from(1));
    assert!(other.minted);

    let moved = document("alpha-v2");
    registrar.set_agent_uri(U256::ZERO, &moved).await.unwrap();
    let registry =
        IIdentityRegistry::new(devnet::IDENTITY_REGISTRY_ADDRESS, chain.provider().unwrap());
    assert_eq!(registry.tokenURI(U256::ZERO).call().await.unwrap(), moved);
    assert_eq!(registrar.find_existing(seller, &uri).await.unwrap(), None);
    assert_eq!(
        registrar.find_existing(seller, &moved).await.unwrap(),
        Some(U256::ZERO)
    );

    let (id, _) = registrar
        .register("", &AgentMetadata::default())
        .await
        .unwrap();
    assert_eq!(id, U256::from(2));
    chain.stop().await;
}

#[tokio::test]
async fn transfers_move_agents_and_strangers_are_refused() {
    let chain = testkit::chain::devnet(3).await;
    let seller = chain.accounts()[1].address();
    let buyer = chain.accounts()[2].address();
    let registrar = registrar::registrar(&chain, 1).await;
    let uri = document("gamma");
    let minted = registrar
        .ensure_registered(seller, &uri, &AgentMetadata::seller(ServiceType::Http))
        .await
        .unwrap();

    let nft = IErc721::new(
        devnet::IDENTITY_REGISTRY_ADDRESS,
        chain.provider_for(chain.accounts()[1].signer()).unwrap(),
    );
    let receipt = nft
        .transferFrom(seller, buyer, minted.agent_id)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(registrar.find_existing(seller, &uri).await.unwrap(), None);
    let buyers = registrar::registrar(&chain, 2).await;
    assert_eq!(
        buyers.find_existing(buyer, &uri).await.unwrap(),
        Some(minted.agent_id),
        "an agent received by transfer is found"
    );

    let err = registrar
        .set_agent_uri(minted.agent_id, "https://elsewhere.example/agent.json")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistrarError::NotAuthorized { owner, .. } if owner == buyer),
        "{err}"
    );
    assert!(
        err.to_string().contains("sign with the owner's key"),
        "{err}"
    );

    let err = registrar
        .set_metadata(U256::from(99), SERVICE_TYPE_KEY, Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistrarError::UnknownAgent(id) if id == U256::from(99)),
        "{err}"
    );

    let err = registrar
        .set_metadata(minted.agent_id, "agentWallet", Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistrarError::ReservedKey(_)), "{err}");

    let err = registrar
        .ensure_registered(buyer, &document("delta"), &AgentMetadata::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistrarError::OwnerIsNotSender { .. }),
        "{err}"
    );
    chain.stop().await;
}

#[tokio::test]
async fn an_address_without_a_registry_is_named_in_the_error() {
    let chain = testkit::chain::devnet(1).await;
    let nowhere = Address::repeat_byte(0x42);
    let err = Registrar::connect(
        chain.provider().unwrap(),
        nowhere,
        chain.accounts()[0].address(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            RegistrarError::NoRegistry {
                chain_id: 84532,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "no ERC-8004 Identity Registry at {nowhere} on chain 84532; "
        )),
        "{message}"
    );
    chain.stop().await;
}
