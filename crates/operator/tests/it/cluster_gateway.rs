//! A gateway fed from the cluster's caches: offers and Services as the two reflectors
//! hold them (filled here the way a watch fills them, since no API server runs
//! here), the real reconciler, a real gateway on loopback, a devnet with the
//! embedded facilitator and a real upstream.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use gateway::{Gateway, GatewayConfig};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{reflector, watcher};
use offers::{Reconciler, ReconcilerConfig};
use operator::ServiceOffer;
use operator::policy::Policy;
use operator::store::ClusterOffers;
use testkit::loopback::serve;
use testkit::status_of;
use testkit::upstream::echo;
use tokio::net::TcpListener;
use x402::Facilitator;

fn offer(name: &str, upstream: &str, seller: &str) -> ServiceOffer {
    serde_norway::from_str(&format!(
        "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  upstream: {upstream}\n  payment: {{network: base-sepolia, payTo: '{seller}', price: {{perRequest: '0.001'}}}}\n"
    ))
    .unwrap()
}

fn open_policy() -> Policy {
    Policy {
        cluster_domain: "cluster.local".into(),
        allow_cross_namespace_upstreams: true,
    }
}

fn service(name: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"ports": [{"port": 8080}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn routes_come_from_offers_and_their_services_and_a_missing_service_is_not_routed() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator: Arc<dyn Facilitator> =
        testkit::embedded::facilitator(&chain, dir.path()).await;
    let seller = chain.accounts()[1].address().to_string();
    let upstream = serve(echo()).await;

    let (offers, mut offer_writer) = reflector::store::<ServiceOffer>();
    let (services, mut service_writer) = reflector::store::<Service>();
    for o in [
        offer("direct", &format!("{{url: '{}'}}", upstream.url()), &seller),
        offer("in-cluster", "{service: worker, port: 8080}", &seller),
        offer("no-service", "{service: missing, port: 8080}", &seller),
    ] {
        offer_writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    service_writer.apply_watcher_event(&watcher::Event::Apply(service("worker")));
    // "direct" is a loopback URL, which only the cluster admin's opt-in routes.
    let store = Arc::new(ClusterOffers::new(offers, services, open_policy()));

    let listed: Vec<(String, Option<String>)> = offers::OfferStore::list(store.as_ref())
        .unwrap()
        .into_iter()
        .map(|o| (o.metadata.name, o.spec.upstream.url))
        .collect();
    assert_eq!(
        listed,
        [
            ("direct".to_string(), Some(upstream.url())),
            (
                "in-cluster".to_string(),
                Some("http://worker.shop.svc.cluster.local:8080".to_string())
            ),
        ]
    );

    let gateway = Gateway::new(GatewayConfig::default(), facilitator.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = gateway.clone();
    tokio::spawn(async move {
        gateway::serve(&served, listener, std::future::pending())
            .await
            .unwrap()
    });
    let reconciler =
        Reconciler::new(store, gateway, facilitator, ReconcilerConfig::default()).unwrap();
    let summary = reconciler.pass().await.unwrap();
    assert_eq!((summary.offers, summary.ready, summary.routed), (2, 1, 2));

    // Reachable: the 402 challenge. Routed but its Service's name resolves nowhere
    // from here: 503, never a charge. No Service: no route.
    assert_eq!(status_of(&format!("{url}/services/direct")).await, 402);
    assert_eq!(status_of(&format!("{url}/services/in-cluster")).await, 503);
    assert_eq!(status_of(&format!("{url}/services/no-service")).await, 404);
}

/// What a gateway replica routes when tenants turn hostile, by default: an offer in
/// `shop` whose URL is not a Service of `shop` (the metadata endpoint, another
/// namespace) is left out whatever its status says, and so is a newer offer in
/// another namespace that claims `shop`'s path.
#[test]
fn a_replica_routes_neither_foreign_upstreams_nor_a_stolen_path() {
    let seller = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let (offers, mut offer_writer) = reflector::store::<ServiceOffer>();
    let (services, mut service_writer) = reflector::store::<Service>();
    let mut owner = offer("shop-api", "{service: worker, port: 8080}", seller);
    owner.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-12-01T00:00:00Z".parse().unwrap(),
    ));
    let mut thief = offer("aaa", "{service: worker, port: 8080}", seller);
    thief.metadata.namespace = Some("aaa".into());
    thief.spec.offer.path = Some("/services/shop-api".into());
    for o in [
        owner,
        thief,
        offer(
            "metadata",
            "{url: 'http://169.254.169.254/latest/'}",
            seller,
        ),
        offer(
            "dns",
            "{service: kube-dns, namespace: kube-system, port: 53}",
            seller,
        ),
        offer(
            "own-url",
            "{url: 'http://worker.shop.svc.cluster.local:8080'}",
            seller,
        ),
    ] {
        offer_writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    service_writer.apply_watcher_event(&watcher::Event::Apply(service("worker")));
    let mut kube_dns = service("kube-dns");
    kube_dns.metadata.namespace = Some("kube-system".into());
    service_writer.apply_watcher_event(&watcher::Event::Apply(kube_dns));
    let mut theirs = service("worker");
    theirs.metadata.namespace = Some("aaa".into());
    service_writer.apply_watcher_event(&watcher::Event::Apply(theirs));

    let strict = Policy {
        allow_cross_namespace_upstreams: false,
        ..open_policy()
    };
    let store = ClusterOffers::new(offers, services, strict);
    let listed: Vec<String> = offers::OfferStore::list(&store)
        .unwrap()
        .into_iter()
        .map(|o| format!("{}/{}", o.metadata.namespace.unwrap(), o.metadata.name))
        .collect();
    assert_eq!(listed, ["shop/own-url", "shop/shop-api"]);
}
