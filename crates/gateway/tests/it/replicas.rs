//! Two gateway replicas behind a load balancer that sends a buyer's retry anywhere,
//! as in the Kubernetes deployment (issue 21, M7): a payment whose settlement's
//! outcome was unknown (`settling`), or which was charged while its buyer hung up
//! (`paid`), is retried at the other replica, and after the first replica's pod
//! moved. The buyer must be served exactly once and charged once; a different
//! request with the same header gets nothing.
//!
//! Real pieces throughout: anvil, the embedded facilitator served over HTTP as the
//! cluster's one `agora facilitator`, both gateways with their own SQLite ledger on
//! loopback, and a recording upstream. Faults come from pausing the miner.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use devnet::Devnet;
use facilitator::EmbeddedFacilitator;
use gateway::replicas::Replicas;
use gateway::{Gateway, GatewayConfig};
use reqwest::Url;
use serde_json::Value;
use support::{install, route_for};
use testkit::loopback::Server;
use testkit::pay::PRICE;
use testkit::upstream::Recording;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use x402::eip3009::AuthorizationKey;
use x402::wire::SettleResponse;
use x402::{Facilitator, HttpFacilitator, PaymentRequirements};

/// One gateway replica serving on a fixed loopback address, stoppable gracefully.
struct Replica {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Replica {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The cluster: a devnet, the shared facilitator, one upstream, two replicas.
struct Cluster {
    chain: Devnet,
    facilitator: Arc<EmbeddedFacilitator>,
    remote: Arc<dyn Facilitator>,
    upstream: Recording,
    replicas: Vec<Option<Replica>>,
    addresses: Vec<SocketAddr>,
    set: Vec<Url>,
    seller: Address,
    dir: tempfile::TempDir,
    _facilitator_api: Server,
}

impl Cluster {
    async fn start(receipt_timeout: Duration) -> Self {
        let chain = testkit::chain::devnet(4).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = testkit::embedded::config_via(&chain, chain.rpc_url(), dir.path());
        config.receipt_timeout = receipt_timeout;
        let facilitator = testkit::embedded::open(config).await;
        let api = testkit::loopback::serve(facilitator::router(facilitator.clone())).await;
        let remote: Arc<dyn Facilitator> = Arc::new(HttpFacilitator::new(&api.url()).unwrap());
        let upstream = testkit::upstream::recording().await;
        let mut addresses = Vec::new();
        let mut listeners = Vec::new();
        for _ in 0..2 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.push(listener.local_addr().unwrap());
            listeners.push(listener);
        }
        let set = addresses
            .iter()
            .map(|a| Url::parse(&format!("http://{a}")).unwrap())
            .collect();
        let mut cluster = Self {
            seller: chain.accounts()[1].address(),
            chain,
            facilitator,
            remote,
            upstream,
            replicas: Vec::new(),
            addresses,
            set,
            dir,
            _facilitator_api: api,
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let replica = cluster.serve(index, listener);
            cluster.replicas.push(Some(replica));
        }
        cluster
    }

    fn ledger(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("payments-{index}.db"))
    }

    /// Replica `index` with its own ledger file (its volume), serving on `listener`.
    fn serve(&self, index: usize, listener: TcpListener) -> Replica {
        let config = GatewayConfig {
            ledger: Some(self.ledger(index)),
            replicas: Some(Replicas::new(self.set.clone(), index).unwrap()),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(config, self.remote.clone()).unwrap();
        install(
            &gateway,
            vec![route_for(
                &self.chain,
                self.seller,
                self.upstream.url.clone(),
                "echo",
            )],
        );
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            gateway::serve(&gateway, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Replica {
            url,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Replica `index`'s pod moves: it stops, and starts again on its volume.
    async fn move_pod(&mut self, index: usize) {
        if let Some(old) = self.replicas[index].take() {
            old.stop().await;
        }
        let listener = TcpListener::bind(self.addresses[index]).await.unwrap();
        let replica = self.serve(index, listener);
        self.replicas[index] = Some(replica);
    }

    fn requirement(&self) -> PaymentRequirements {
        testkit::pay::requirement(&self.chain, self.seller, 300)
    }

    /// A buyer's header whose home (the replica keeping its ledger) is `home`.
    fn header_homed_at(&self, home: usize) -> String {
        let requirement = self.requirement();
        let set = Replicas::new(self.set.clone(), 0).unwrap();
        loop {
            let signed = testkit::pay::sign(&self.chain.accounts()[2].signer(), &requirement);
            let key = AuthorizationKey {
                chain_id: requirement.network.chain_id().unwrap(),
                asset: requirement.asset,
                payer: signed.payer,
                nonce: signed.nonce,
            };
            if set.home(&key) == home {
                return signed.header;
            }
        }
    }

    fn url(&self, index: usize, rest: &str) -> String {
        let replica = self.replicas[index].as_ref().unwrap();
        format!("{}/services/echo{rest}", replica.url)
    }

    async fn send(&self, index: usize, rest: &str, header: &str) -> reqwest::Response {
        testkit::http()
            .get(self.url(index, rest))
            .header("payment-signature", header)
            .send()
            .await
            .unwrap()
    }

    async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }
}

fn receipt(response: &reqwest::Response) -> SettleResponse {
    x402::header::decode(response.headers()["payment-response"].to_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_pending_settlement_retried_at_the_other_replica_is_served_once_and_charged_once() {
    let cluster = Cluster::start(Duration::from_millis(500)).await;
    let before = cluster.seller_balance().await;
    let header = cluster.header_homed_at(0);

    cluster.chain.set_automine(false).await.unwrap();
    let first = cluster.send(0, "/ok", &header).await;
    assert_eq!(first.status(), 503, "the outcome is unknown: pending");
    let hash = receipt(&first).transaction.expect("names the transaction");

    // The load balancer sends the retry to the other replica.
    let elsewhere = cluster.send(1, "/ok", &header).await;
    assert_eq!(
        elsewhere.status(),
        503,
        "still pending, never a 402 for a payment that may have moved money"
    );
    assert_eq!(
        receipt(&elsewhere).transaction,
        Some(hash),
        "no second transaction"
    );

    cluster.chain.set_automine(true).await.unwrap();
    cluster.chain.mine().await.unwrap();
    let served = cluster.send(1, "/ok", &header).await;
    assert_eq!(
        served.status(),
        200,
        "charged, so served, wherever it lands"
    );
    assert_eq!(
        receipt(&served).transaction,
        Some(hash),
        "the original receipt"
    );
    assert_eq!(served.json::<Value>().await.unwrap()["path"], "/ok");
    assert_eq!(cluster.seller_balance().await - before, U256::from(PRICE));

    for index in [0, 1] {
        assert_eq!(
            cluster.send(index, "/ok", &header).await.status(),
            402,
            "spent at replica {index} too"
        );
    }
    assert_eq!(cluster.upstream.calls(), 2, "one cut call, one answer");
    assert_eq!(
        cluster.seller_balance().await - before,
        U256::from(PRICE),
        "charged once"
    );
    assert_eq!(cluster.facilitator.journal().unwrap().len(), 1);
}

#[tokio::test]
async fn a_buyer_who_hung_up_is_served_at_the_other_replica_after_the_pod_moved() {
    let mut cluster = Cluster::start(Duration::from_secs(20)).await;
    let before = cluster.seller_balance().await;
    let header = cluster.header_homed_at(0);

    // The buyer reaches replica 0, the payment's home, and hangs up while the
    // settlement waits for a block.
    cluster.chain.set_automine(false).await.unwrap();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(cluster.url(0, "/ok"))
        .header("payment-signature", &header)
        .send()
        .await;
    assert!(gave_up.is_err(), "the buyer hung up");
    cluster.chain.set_automine(true).await.unwrap();
    cluster.chain.mine().await.unwrap();
    let facilitator = cluster.facilitator.clone();
    testkit::eventually(
        "the settlement to be confirmed",
        Duration::from_secs(30),
        || {
            let facilitator = facilitator.clone();
            async move {
                facilitator
                    .journal()
                    .unwrap()
                    .first()
                    .is_some_and(|s| s.status == facilitator::store::SettlementStatus::Confirmed)
            }
        },
    )
    .await;
    assert_eq!(cluster.seller_balance().await - before, U256::from(PRICE));

    // Replica 0's pod moves; its ledger is on its volume.
    cluster.move_pod(0).await;

    // Someone who saw the header asks another replica for another answer with it:
    // refused, because the payment's home knows which request it paid for.
    let other = cluster.send(1, "/other", &header).await;
    assert_eq!(other.status(), 402);
    let body = other.text().await.unwrap();
    assert!(body.contains("payment_bound_to_another_request"), "{body}");

    // The buyer's retry of the same request lands on replica 1: served, with the
    // receipt of the settlement it paid, and nothing charged again.
    let mut answer = None;
    for _ in 0..100 {
        let response = cluster.send(1, "/ok", &header).await;
        if response.status() == 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        answer = Some(response);
        break;
    }
    let served = answer.expect("answered once the settlement is known");
    assert_eq!(served.status(), 200, "charged, so served");
    let journal = cluster.facilitator.journal().unwrap();
    assert_eq!(receipt(&served).transaction, journal[0].tx_hash);
    assert_eq!(served.json::<Value>().await.unwrap()["path"], "/ok");
    for index in [0, 1] {
        assert_eq!(cluster.send(index, "/ok", &header).await.status(), 402);
    }
    assert_eq!(
        cluster.seller_balance().await - before,
        U256::from(PRICE),
        "charged once"
    );
    assert_eq!(journal.len(), 1);
}
