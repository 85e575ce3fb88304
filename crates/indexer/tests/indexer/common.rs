//! Fixtures of the indexer's integration tests on top of testkit: an indexer serving
//! on a loopback port with fast polling, registration documents, registering agents
//! through the erc8004 registrar, and waiting for the index to settle on the chain
//! head.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use devnet::Devnet;
use erc8004::registrar::AgentMetadata;
use erc8004::{AgentProfile, OfferEntry, Registration};
use indexer::{FetchConfig, Indexer, IndexerConfig, IndexerError};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any wait in these tests may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Fast polling, short document limits, and loopback documents allowed.
pub fn config(rpc_url: &str, db: &Path) -> IndexerConfig {
    let mut config = IndexerConfig::new(rpc_url, db.join("index.db"));
    config.poll_interval = Duration::from_millis(100);
    config.rpc_timeout = Duration::from_secs(5);
    config.fetch = FetchConfig {
        timeout: Duration::from_millis(1500),
        retries: 1,
        backoff: Duration::from_millis(50),
        allow_private_addresses: true,
        ..FetchConfig::default()
    };
    config
}

/// A running indexer and a client for its API.
pub struct Served {
    pub base: String,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), IndexerError>>,
}

pub async fn serve(indexer: Indexer) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(indexer.serve(listener, async {
        let _ = stopped.await;
    }));
    Served {
        base,
        client: testkit::http(),
        stop,
        task,
    }
}

impl Served {
    /// GETs `path` and returns the status and JSON body (checking the CORS header).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "every API answer is readable cross-origin ({path})"
        );
        (status, response.json().await.unwrap())
    }

    /// The agent names a list query returns, in its order.
    pub async fn names(&self, query: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/api/v1/public/agents?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Sorted names, for set comparisons.
    pub async fn name_set(&self, query: &str) -> Vec<String> {
        let mut names = self.names(query).await;
        names.sort();
        names
    }

    pub async fn agent(&self, agent_id: u64) -> Value {
        let (status, body) = self
            .get(&format!("/api/v1/public/agents/84532/{agent_id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the index has reached the chain's current head and no document is
    /// waiting to be fetched.
    pub async fn settle(&self, chain: &Devnet) {
        let head = chain.provider().unwrap().get_block_number().await.unwrap();
        testkit::eventually("the index settles on the head", PATIENCE, || async move {
            let (status, health) = self.get("/health").await;
            let (_, stats) = self.get("/api/v1/public/stats").await;
            status == 200
                && health["indexed_block"].as_u64().is_some_and(|b| b >= head)
                && stats["fetch"]["pending"].as_u64().unwrap_or(0) == 0
        })
        .await;
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A seller's registration document with OASF skills and domains.
pub fn document(name: &str, description: &str, skills: &[&str], domains: &[&str]) -> Registration {
    let offer = OfferEntry {
        name: name.replace(' ', "-"),
        endpoint_url: format!("https://{}.example/services/x", name.replace(' ', "-")),
        description: description.into(),
        skills: skills.iter().map(|s| s.to_string()).collect(),
        domains: domains.iter().map(|s| s.to_string()).collect(),
        x402: true,
    };
    let profile = AgentProfile {
        name: name.into(),
        description: description.into(),
        ..AgentProfile::default()
    };
    Registration::for_offers(&profile, &[offer], &[]).unwrap()
}

/// Registers an agent at `uri` from `account` and returns its id.
pub async fn register(chain: &Devnet, account: usize, uri: &str) -> U256 {
    testkit::registrar::registrar(chain, account)
        .await
        .register(uri, &AgentMetadata::default())
        .await
        .unwrap()
        .0
}

/// The registry events the indexer follows that are on the chain now, to compare the
/// stored event count with.
pub async fn registry_event_count(chain: &Devnet) -> u64 {
    use alloy::sol_types::SolEvent;
    use erc8004::IIdentityRegistry::{MetadataSet, Registered, Transfer, URIUpdated};
    let filter = alloy::rpc::types::Filter::new()
        .address(devnet::IDENTITY_REGISTRY_ADDRESS)
        .event_signature(vec![
            Registered::SIGNATURE_HASH,
            URIUpdated::SIGNATURE_HASH,
            MetadataSet::SIGNATURE_HASH,
            Transfer::SIGNATURE_HASH,
        ])
        .from_block(0);
    chain
        .provider()
        .unwrap()
        .get_logs(&filter)
        .await
        .unwrap()
        .len() as u64
}
