//! The bindings against the Identity Registry the devnet installs: every declared
//! function and event works on the real contract, agent ids start at 0, and a
//! registration document stored inline as a data URI comes back unchanged.

#![allow(clippy::unwrap_used)]

use alloy::primitives::{Bytes, U256, keccak256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolEvent;
use erc8004::{
    AgentProfile, AgentRegistration, IIdentityRegistry, OfferEntry, Registration, identity_registry,
};

fn logs<E: SolEvent>(receipt: &TransactionReceipt) -> Vec<E> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.topic0() == Some(&E::SIGNATURE_HASH))
        .map(|l| E::decode_log(&l.inner).unwrap().data)
        .collect()
}

fn offer() -> OfferEntry {
    OfferEntry {
        name: "my-qwen".into(),
        endpoint_url: "https://seller.example/services/my-qwen".into(),
        description: "qwen3:0.6b inference via x402".into(),
        skills: vec![
            "natural_language_processing/natural_language_generation/text_completion".into(),
        ],
        domains: vec!["technology/data_science".into()],
        x402: true,
    }
}

#[tokio::test]
async fn register_update_and_read_back_on_the_devnet() {
    let chain = testkit::chain::devnet(3).await;
    let owner = &chain.accounts()[1];
    let stranger = &chain.accounts()[2];
    let address = identity_registry(&chain.network()).unwrap();
    assert_eq!(address, devnet::IDENTITY_REGISTRY_ADDRESS);
    let registry = IIdentityRegistry::new(address, chain.provider_for(owner.signer()).unwrap());
    assert_eq!(registry.getVersion().call().await.unwrap(), "2.0.0");

    let profile = AgentProfile {
        name: "seller".into(),
        ..AgentProfile::default()
    };
    let unregistered = Registration::for_offers(&profile, &[offer()], &[]).unwrap();
    let metadata = vec![IIdentityRegistry::MetadataEntry {
        metadataKey: "x402.supported".into(),
        metadataValue: Bytes::from_static(&[1]),
    }];
    let receipt = registry
        .register_2(unregistered.to_data_uri(), metadata)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());

    let minted = logs::<IIdentityRegistry::Transfer>(&receipt);
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].from, alloy::primitives::Address::ZERO);
    assert_eq!(minted[0].to, owner.address());
    let registered = logs::<IIdentityRegistry::Registered>(&receipt);
    assert_eq!(registered.len(), 1);
    let agent_id = registered[0].agentId;
    assert_eq!(agent_id, U256::ZERO, "the first agent is 0");
    assert_eq!(registered[0].owner, owner.address());
    let set = logs::<IIdentityRegistry::MetadataSet>(&receipt);
    let keys: Vec<&str> = set.iter().map(|e| e.metadataKey.as_str()).collect();
    assert_eq!(keys, ["agentWallet", "x402.supported"]);
    assert_eq!(set[1].indexedMetadataKey, keccak256("x402.supported"));
    assert_eq!(set[0].metadataValue.as_ref(), owner.address().as_slice());

    let stored = registry.tokenURI(agent_id).call().await.unwrap();
    assert_eq!(Registration::from_data_uri(&stored).unwrap(), unregistered);
    assert_eq!(
        registry.ownerOf(agent_id).call().await.unwrap(),
        owner.address()
    );
    assert_eq!(
        registry.getAgentWallet(agent_id).call().await.unwrap(),
        owner.address()
    );
    assert_eq!(
        registry
            .getMetadata(agent_id, "x402.supported".into())
            .call()
            .await
            .unwrap(),
        Bytes::from_static(&[1])
    );
    assert!(
        registry
            .isAuthorizedOrOwner(owner.address(), agent_id)
            .call()
            .await
            .unwrap()
    );
    assert!(
        !registry
            .isAuthorizedOrOwner(stranger.address(), agent_id)
            .call()
            .await
            .unwrap()
    );

    let listed = Registration::for_offers(
        &profile,
        &[offer()],
        &[AgentRegistration {
            agent_id: 0,
            chain_id: devnet::CHAIN_ID,
            registry: address,
        }],
    )
    .unwrap();
    let receipt = registry
        .setAgentURI(agent_id, listed.to_data_uri())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let updated = logs::<IIdentityRegistry::URIUpdated>(&receipt);
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].updatedBy, owner.address());
    let stored =
        Registration::from_data_uri(&registry.tokenURI(agent_id).call().await.unwrap()).unwrap();
    assert_eq!(stored, listed);
    assert_eq!(
        stored.registrations[0].agent_registry,
        "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"
    );

    let receipt = registry
        .setMetadata(
            agent_id,
            "service.type".into(),
            Bytes::from_static(b"inference"),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(
        logs::<IIdentityRegistry::MetadataSet>(&receipt)[0].metadataKey,
        "service.type"
    );

    let receipt = registry
        .register_0()
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(
        logs::<IIdentityRegistry::Registered>(&receipt)[0].agentId,
        U256::from(1)
    );
    let receipt = registry
        .register_1("https://seller.example/.well-known/agent-registration.json".into())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(
        logs::<IIdentityRegistry::Registered>(&receipt)[0].agentId,
        U256::from(2)
    );

    let missing = registry.ownerOf(U256::from(99)).call().await.unwrap_err();
    let decoded = missing
        .as_decoded_interface_error::<IIdentityRegistry::IIdentityRegistryErrors>()
        .unwrap();
    assert!(matches!(
        decoded,
        IIdentityRegistry::IIdentityRegistryErrors::ERC721NonexistentToken(e) if e.tokenId == U256::from(99)
    ));
    chain.stop().await;
}
