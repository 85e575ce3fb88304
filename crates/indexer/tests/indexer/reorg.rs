//! Chain reorganisations and restarts: an agent that only existed on a branch anvil
//! abandoned (evm_snapshot, register, evm_revert, then a longer branch) disappears and
//! its id is taken by the agent of the new branch; an indexer stopped and started again
//! on the same database resumes from its cursor and stores no event twice.

use alloy::providers::Provider;
use erc8004::registrar::{AgentMetadata, ServiceType};
use indexer::Indexer;

use crate::common::{self, document, serve};

#[tokio::test]
async fn a_reorg_rolls_back_agents_of_the_abandoned_branch() {
    let chain = testkit::chain::devnet(3).await;
    let db = tempfile::tempdir().unwrap();
    let api = serve(
        Indexer::open(common::config(chain.rpc_url(), db.path()))
            .await
            .unwrap(),
    )
    .await;
    let kept = document("kept", "Registered before the fork", &[], &[]);
    common::register(&chain, 1, &kept.to_data_uri()).await;
    api.settle(&chain).await;

    let provider = chain.provider().unwrap();
    let snapshot: String = provider
        .raw_request("evm_snapshot".into(), ())
        .await
        .unwrap();
    let abandoned = document("abandoned", "Only on the old branch", &[], &[]);
    let seller = testkit::registrar::registrar(&chain, 1).await;
    let (id, _) = seller
        .register(
            &abandoned.to_data_uri(),
            &AgentMetadata::seller(ServiceType::Inference),
        )
        .await
        .unwrap();
    assert_eq!(id, alloy::primitives::U256::from(1));
    let rewritten = document("rewritten", "Changed on the old branch", &[], &[]);
    seller
        .set_agent_uri(alloy::primitives::U256::ZERO, &rewritten.to_data_uri())
        .await
        .unwrap();
    let old_head = provider.get_block_number().await.unwrap();
    api.settle(&chain).await;
    assert_eq!(api.name_set("").await, ["abandoned", "rewritten"]);

    let reverted: bool = provider
        .raw_request("evm_revert".into(), (snapshot,))
        .await
        .unwrap();
    assert!(reverted);
    let replacement = document("replacement", "On the new branch", &[], &[]);
    let id = common::register(&chain, 2, &replacement.to_data_uri()).await;
    assert_eq!(id, alloy::primitives::U256::from(1), "the id is reused");
    for _ in 0..3 {
        chain.mine().await.unwrap();
    }
    assert!(provider.get_block_number().await.unwrap() > old_head);

    api.settle(&chain).await;
    assert_eq!(api.name_set("").await, ["kept", "replacement"]);
    assert!(api.name_set("search=abandoned").await.is_empty());
    let agent = api.agent(1).await;
    assert_eq!(agent["name"], "replacement");
    assert_eq!(
        agent["service_type"],
        serde_json::Value::Null,
        "old branch metadata is gone"
    );
    assert_eq!(
        agent["metadata"].as_object().unwrap().len(),
        1,
        "only agentWallet"
    );
    assert_eq!(
        api.agent(0).await["name"],
        "kept",
        "the old branch's URI update is undone"
    );
    assert_eq!(
        agent["owner_address"].as_str().unwrap().to_lowercase(),
        chain.accounts()[2].address().to_string().to_lowercase()
    );
    let (_, health) = api.get("/health").await;
    assert!(health["reorgs"].as_u64().unwrap() >= 1, "{health}");
    let (_, stats) = api.get("/api/v1/public/stats").await;
    assert_eq!(
        stats["total_events"],
        common::registry_event_count(&chain).await,
        "no event of the abandoned branch is left"
    );
    api.stop().await;
    chain.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_cursor_without_duplicates() {
    let chain = testkit::chain::devnet(2).await;
    let db = tempfile::tempdir().unwrap();
    for name in ["one", "two"] {
        let doc = document(name, "before the first run", &[], &[]);
        common::register(&chain, 1, &doc.to_data_uri()).await;
    }
    let first = Indexer::open(common::config(chain.rpc_url(), db.path()))
        .await
        .unwrap();
    let report = first.sync().await.unwrap();
    let before = common::registry_event_count(&chain).await;
    assert_eq!(report.events as u64, before);
    assert_eq!(first.fetch_pending().await.unwrap(), 2);
    let api = serve(first).await;
    api.settle(&chain).await;
    api.stop().await;

    let three = document("three", "while the indexer was down", &[], &[]);
    common::register(&chain, 1, &three.to_data_uri()).await;
    let after = common::registry_event_count(&chain).await;

    let second = Indexer::open(common::config(chain.rpc_url(), db.path()))
        .await
        .unwrap();
    let report = second.sync().await.unwrap();
    assert_eq!(
        report.events as u64,
        after - before,
        "only the new blocks are read"
    );
    assert_eq!(report.reorgs, 0);
    let again = second.sync().await.unwrap();
    assert_eq!(
        (again.events, again.indexed_block),
        (0, report.indexed_block)
    );
    let api = serve(second).await;
    api.settle(&chain).await;
    assert_eq!(api.name_set("").await, ["one", "three", "two"]);
    let (_, stats) = api.get("/api/v1/public/stats").await;
    assert_eq!(stats["total_events"], after);
    assert_eq!(stats["fetch"]["ok"], 3);
    api.stop().await;
    chain.stop().await;
}
