//! The gateway tests' own fixture on top of testkit: the gateway serving on an
//! ephemeral port with the means to stop it gracefully, and a devnet with the
//! embedded facilitator and testkit's recording upstream sold as `echo`. Everything
//! stops when the fixture is dropped.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::Devnet;
use facilitator::EmbeddedFacilitator;
use gateway::{Documents, Gateway, GatewayConfig, Route, Site};
use reqwest::Url;
use testkit::upstream::Recording;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use x402::{Facilitator, PaymentRequirements};

/// A gateway being served, with the means to stop it.
pub struct Served {
    pub gateway: Gateway,
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Starts serving `gateway` on an ephemeral loopback port.
    pub async fn start(gateway: Gateway) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let g = gateway.clone();
        let done = tokio::spawn(async move {
            gateway::serve(&g, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            gateway,
            url,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Begins a graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A recording upstream sold as `echo` to account 1 by a gateway with `config` that
/// settles through `facilitator`.
pub async fn sell_echo(
    chain: &Devnet,
    facilitator: Arc<dyn Facilitator>,
    config: GatewayConfig,
) -> (Recording, Served) {
    let seller = chain.accounts()[1].address();
    let upstream = testkit::upstream::recording().await;
    let gateway = Gateway::new(config, facilitator).unwrap();
    install(
        &gateway,
        vec![route_for(chain, seller, upstream.url.clone(), "echo")],
    );
    (upstream, Served::start(gateway).await)
}

/// Devnet + embedded facilitator + upstream + gateway.
pub struct Fixture {
    pub chain: Devnet,
    pub facilitator: Arc<EmbeddedFacilitator>,
    pub upstream: Recording,
    pub served: Served,
    pub seller: Address,
    _db: tempfile::TempDir,
}

/// Accounts: 0 settles (facilitator), 1 is the seller, the rest are buyers.
pub async fn fixture() -> Fixture {
    fixture_with(GatewayConfig::default()).await
}

pub async fn fixture_with(config: GatewayConfig) -> Fixture {
    let chain = testkit::chain::devnet(6).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let (upstream, served) = sell_echo(&chain, facilitator.clone(), config).await;
    Fixture {
        seller: chain.accounts()[1].address(),
        chain,
        facilitator,
        upstream,
        served,
        _db: db,
    }
}

/// The paid route `name` at `/services/<name>` in front of `upstream`.
pub fn route_for(chain: &Devnet, seller: Address, upstream: Url, name: &str) -> Route {
    let requirement = testkit::pay::requirement(chain, seller, 300);
    let mut route = Route::new(
        name,
        format!("/services/{name}"),
        upstream,
        vec![requirement],
    );
    route.description = format!("{name} test service");
    route.free_paths = vec!["/health".to_string()];
    route
}

/// Installs `routes` with documents derived from them.
pub fn install(gateway: &Gateway, routes: Vec<Route>) {
    let documents = Documents::build(&Site::default(), &routes, None);
    gateway.install(routes, documents);
}

impl Fixture {
    /// Buyer `i` (1-based among the buyers).
    pub fn buyer(&self, i: usize) -> PrivateKeySigner {
        self.chain.accounts()[1 + i].signer()
    }

    /// The route's requirement as the gateway offers it.
    pub fn requirement(&self) -> PaymentRequirements {
        self.served.gateway.routes()[0].accepts[0].clone()
    }

    /// A v2 payment header for the route, signed by `buyer`.
    pub fn pay_header(&self, buyer: &PrivateKeySigner) -> String {
        testkit::pay::header(buyer, &self.requirement())
    }

    pub async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }

    pub fn calls(&self) -> usize {
        self.upstream.calls()
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}/services/echo{rest}", self.served.url)
    }

    /// Waits until the upstream has received one call.
    pub async fn until_called(&self) {
        testkit::eventually(
            "the upstream to receive the call",
            Duration::from_secs(10),
            || async move { self.calls() == 1 },
        )
        .await;
    }
}
