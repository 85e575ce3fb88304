//! Four sellers with different OASF skills and domains (three inline `data:` documents,
//! one served over HTTP with an MCP service and no x402), found by every filter the API
//! has; then a URI update and an ERC-721 transfer show up in the same filters.

use alloy::primitives::Address;
use alloy::sol;
use axum::Router;
use axum::routing::get;
use erc8004::registrar::{AgentMetadata, ServiceType};
use erc8004::registration::Service;
use indexer::{AgentQuery, Indexer, TagFilter, TagKind};

use crate::common::{self, document, serve};

sol! {
    /// The ERC-721 transfer the registry inherits.
    #[sol(rpc)]
    interface IErc721 {
        function transferFrom(address from, address to, uint256 tokenId) external;
    }
}

const TEXT_COMPLETION: &str =
    "natural_language_processing/natural_language_generation/text_completion";
const SUMMARIZATION: &str = "natural_language_processing/natural_language_generation/summarization";
const TRANSLATION: &str = "natural_language_processing/language_translation/translation";
const MODEL_VERSIONING: &str = "devops_mlops/model_versioning";
const MONITORING: &str = "devops_mlops/monitoring_alerting";
const SCIENTIFIC_RESEARCH: &str = "research_and_development/scientific_research";

fn set(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn sellers_are_found_by_skill_domain_search_owner_and_protocol() {
    let chain = testkit::chain::devnet(6).await;
    let db = tempfile::tempdir().unwrap();
    let owner = |i: usize| chain.accounts()[i].address();

    let alpha = document(
        "alpha",
        "Small QWEN chat model, pay per request",
        &[TEXT_COMPLETION],
        &["technology/data_science"],
    );
    let beta = document(
        "beta",
        "Versioned model registry for training runs",
        &[MODEL_VERSIONING],
        &[SCIENTIFIC_RESEARCH],
    );
    testkit::registrar::registrar(&chain, 1)
        .await
        .ensure_registered(
            owner(1),
            &alpha.to_data_uri(),
            &AgentMetadata::seller(ServiceType::Inference),
        )
        .await
        .unwrap();
    testkit::registrar::registrar(&chain, 2)
        .await
        .ensure_registered(
            owner(2),
            &beta.to_data_uri(),
            &AgentMetadata::seller(ServiceType::Http),
        )
        .await
        .unwrap();

    let indexer = Indexer::open(common::config(chain.rpc_url(), db.path()))
        .await
        .unwrap();
    assert_eq!(
        indexer.chain_id(),
        devnet::CHAIN_ID,
        "detected with eth_chainId"
    );
    assert_eq!(indexer.registry(), devnet::IDENTITY_REGISTRY_ADDRESS);

    // In process, without the API: what a one-off registry scan asks.
    loop {
        let report = indexer.sync().await.unwrap();
        if report.indexed_block >= Some(report.target_block) {
            break;
        }
    }
    indexer.fetch_pending().await.unwrap();
    let query = |filter: &str| AgentQuery {
        tags: vec![(TagKind::Skill, TagFilter::new(filter))],
        x402: Some(true),
        limit: 10,
        ..AgentQuery::default()
    };
    let (found, total) = indexer.agents(query("devops_mlops/*")).await.unwrap();
    let names: Vec<&str> = found.iter().map(|a| a.name.as_str()).collect();
    assert_eq!((names, total), (vec!["beta"], 1));
    let (found, total) = indexer.agents(query(TEXT_COMPLETION)).await.unwrap();
    assert_eq!((found[0].name.as_str(), total), ("alpha", 1));
    let api = serve(indexer).await;

    let gamma = document(
        "gamma",
        "Summaries and translations of papers",
        &[SUMMARIZATION, TRANSLATION],
        &[SCIENTIFIC_RESEARCH, "technology/data_science/big_data"],
    );
    testkit::registrar::registrar(&chain, 3)
        .await
        .ensure_registered(
            owner(3),
            &gamma.to_data_uri(),
            &AgentMetadata::seller(ServiceType::Inference),
        )
        .await
        .unwrap();
    let mut delta = document(
        "delta",
        "Training monitor with an MCP endpoint",
        &[MONITORING],
        &["technology/software_engineering/mlops"],
    );
    delta.x402_support = false;
    delta.services.push(Service {
        name: "MCP".into(),
        endpoint: "https://delta.example/mcp".into(),
        version: Some("2025-06-18".into()),
        skills: vec![],
        domains: vec![],
    });
    let served_doc = serde_json::to_value(&delta).unwrap();
    let docs_server = testkit::loopback::serve(Router::new().route(
        "/agent.json",
        get(move || async move { axum::Json(served_doc) }),
    ))
    .await;
    let docs = docs_server.addr;
    let delta_id = common::register(&chain, 4, &format!("http://{docs}/agent.json")).await;
    assert_eq!(delta_id, alloy::primitives::U256::from(3));

    api.settle(&chain).await;
    assert_eq!(api.names("").await.len(), 4);
    assert_eq!(
        api.names("").await,
        ["delta", "gamma", "beta", "alpha"],
        "newest first by default"
    );
    assert_eq!(
        api.names("sort=registered_asc").await,
        ["alpha", "beta", "gamma", "delta"]
    );
    assert_eq!(
        api.names("sort=name").await,
        ["alpha", "beta", "delta", "gamma"]
    );

    let cases: [(&str, &[&str]); 17] = [
        ("skill=natural_language_processing/*", &["alpha", "gamma"]),
        (
            "skill=natural_language_processing/natural_language_generation/*",
            &["alpha", "gamma"],
        ),
        (
            "skill=natural_language_processing/language_translation/*",
            &["gamma"],
        ),
        (&format!("skill={MODEL_VERSIONING}"), &["beta"]),
        ("skill=devops_mlops/*", &["beta", "delta"]),
        ("skill=devops_mlops", &[]),
        ("domain=research_and_development/*", &["beta", "gamma"]),
        ("domain=technology/*", &["alpha", "delta", "gamma"]),
        ("domain=technology/data_science/*", &["alpha", "gamma"]),
        (
            "skill=natural_language_processing/*&domain=research_and_development/*",
            &["gamma"],
        ),
        ("search=qwen", &["alpha"]),
        ("search=MODEL", &["alpha", "beta"]),
        ("protocol=mcp", &["delta"]),
        ("protocol=web", &["alpha", "beta", "delta", "gamma"]),
        ("x402=false", &["delta"]),
        ("x402=true", &["alpha", "beta", "gamma"]),
        ("chainId=1", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(api.name_set(query).await, set(expected), "{query}");
    }
    assert_eq!(
        api.name_set(&format!("ownerAddress={}", owner(2))).await,
        ["beta"]
    );
    let lowercase = owner(3).to_string().to_lowercase();
    assert_eq!(
        api.name_set(&format!("ownerAddress={lowercase}")).await,
        ["gamma"]
    );

    let (status, page) = api
        .get("/api/v1/public/agents?limit=3&page=2&sort=registered_asc")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (page["total"].as_u64(), page["page"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(page["limit"], 3);
    assert_eq!(page["items"][0]["name"], "delta");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let alpha_record = api.agent(0).await;
    assert_eq!(alpha_record["agent_id"], 0);
    assert_eq!(alpha_record["chain_id"], 84532);
    assert_eq!(
        alpha_record["id"],
        "84532:0x8004a818bfb912233c491871b3d84c89a494bd9e:0"
    );
    assert_eq!(
        alpha_record["agent_registry"],
        "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"
    );
    assert_eq!(alpha_record["service_type"], "inference");
    assert_eq!(alpha_record["metadata"]["x402.supported"]["hex"], "0x01");
    assert_eq!(
        alpha_record["metadata"]["service.type"]["text"],
        "inference"
    );
    assert_eq!(alpha_record["fetch_status"], "ok");
    assert_eq!(alpha_record["oasf_skills"][0], TEXT_COMPLETION);
    assert_eq!(alpha_record["registration"]["name"], "alpha");

    let delta_record = api.agent(3).await;
    assert_eq!(
        delta_record["supported_protocols"],
        serde_json::json!(["web", "OASF", "MCP"])
    );
    assert_eq!(delta_record["x402_supported"], false);
    assert_eq!(delta_record["fetch_status"], "ok");

    let (status, found) = api.get("/api/v1/public/agents/search?q=Translations").await;
    assert_eq!(status, 200);
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["name"], "gamma");

    let (status, stats) = api.get("/api/v1/public/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_agents"], 4);
    assert_eq!(stats["total_users"], 4);
    assert_eq!(stats["x402_agents"], 3);
    assert_eq!(stats["fetch"]["ok"], 4);
    assert_eq!(
        stats["total_events"],
        common::registry_event_count(&chain).await
    );

    for (path, status) in [
        ("/api/v1/public/agents/84532/99", 404),
        ("/api/v1/public/agents/84532/abc", 400),
        ("/api/v1/public/agents?limit=1000", 400),
        ("/api/v1/public/agents?skill=*", 400),
        ("/api/v1/public/agents?x402=perhaps", 400),
        ("/api/v1/public/agents?ownerAddress=0x1234", 400),
        ("/api/v1/public/agents?sort=popular", 400),
        ("/api/v1/public/agents?colour=red", 400),
        ("/api/v1/public/agents/search", 400),
        ("/api/v2/nothing", 404),
    ] {
        let (got, body) = api.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"].is_string() && body["hint"].is_string(),
            "{path}: {body}"
        );
    }

    // alpha moves to a new document with a DevOps skill; beta is sold to account 5.
    let alpha_v2 = document(
        "alpha ops",
        "Now a CI/CD helper",
        &["devops_mlops/ci_cd_configuration"],
        &[],
    );
    testkit::registrar::registrar(&chain, 1)
        .await
        .set_agent_uri(alloy::primitives::U256::ZERO, &alpha_v2.to_data_uri())
        .await
        .unwrap();
    let nft = IErc721::new(
        devnet::IDENTITY_REGISTRY_ADDRESS,
        chain.provider_for(chain.accounts()[2].signer()).unwrap(),
    );
    let receipt = nft
        .transferFrom(owner(2), owner(5), alloy::primitives::U256::from(1))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());

    api.settle(&chain).await;
    assert_eq!(
        api.name_set("skill=natural_language_processing/*").await,
        ["gamma"]
    );
    assert_eq!(
        api.name_set("skill=devops_mlops/*").await,
        ["alpha ops", "beta", "delta"]
    );
    assert!(api.name_set("search=qwen").await.is_empty());
    assert!(
        api.name_set(&format!("ownerAddress={}", owner(2)))
            .await
            .is_empty()
    );
    assert_eq!(
        api.name_set(&format!("ownerAddress={}", owner(5))).await,
        ["beta"]
    );
    let beta_record = api.agent(1).await;
    let new_owner: Address = beta_record["owner_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(new_owner, owner(5));
    assert!(
        beta_record["metadata"].get("agentWallet").is_none(),
        "the transfer cleared agentWallet"
    );
    assert_eq!(
        api.names("sort=updated_desc&limit=2").await,
        ["beta", "alpha ops"]
    );
    assert_eq!(
        api.get("/api/v1/public/stats").await.1["total_events"],
        common::registry_event_count(&chain).await
    );

    api.stop().await;
    chain.stop().await;
}
