//! Nothing internal reaches buyers when a route cannot be served: a dead upstream and
//! a dead facilitator, both at URLs with a secret-looking path, leave the 503, the
//! storefront, the catalog documents and the metrics free of those paths, while the
//! operator's conditions keep the detail. Real loopback servers, no chain needed.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use gateway::{Gateway, GatewayConfig};
use offers::{Reconciler, ReconcilerConfig, ServiceOffer, Store};
use testkit::loopback::{free_port, serve};
use x402::{Facilitator, HttpFacilitator};

const SECRETS: [&str; 3] = ["secret-UP-1", "secret-UP-2", "secret-FAC"];

fn manifest(name: &str, upstream: &str) -> ServiceOffer {
    ServiceOffer::from_manifest(&format!(
        "metadata: {{name: {name}}}\nspec:\n  upstream: {{url: '{upstream}', healthPath: /health}}\n  payment: {{network: base-sepolia, payTo: '0x1111111111111111111111111111111111111111', price: {{perRequest: '0.001'}}}}\n"
    ))
    .unwrap()
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[tokio::test]
async fn unavailable_routes_show_buyers_no_upstream_health_or_facilitator_url() {
    let dir = tempfile::tempdir().unwrap();
    let facilitator_url = format!("http://127.0.0.1:{}/secret-FAC/", free_port());
    let facilitator: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(&facilitator_url).unwrap());
    let store = Arc::new(Store::open(&dir.path().join("agora.db")).unwrap());
    let gateway = Gateway::new(GatewayConfig::default(), facilitator.clone()).unwrap();
    let public_server = serve(gateway.router()).await;
    let operator_server = serve(gateway.operator_router()).await;
    let (public, operator) = (public_server.url(), operator_server.url());
    let reconciler = Reconciler::new(
        store.clone(),
        gateway,
        facilitator,
        ReconcilerConfig::default(),
    )
    .unwrap();

    // "down": nothing listens at its upstream. "nofac": the upstream is healthy but
    // the facilitator is unreachable.
    let alive_server = serve(Router::new().fallback(|| async { "ok" })).await;
    let alive = alive_server.url();
    let down = format!("http://127.0.0.1:{}/secret-UP-1/", free_port());
    store.put(&manifest("down", &down)).unwrap();
    store
        .put(&manifest("nofac", &format!("{alive}/secret-UP-2/")))
        .unwrap();
    reconciler.pass().await.unwrap();

    // The operator keeps every detail, so the secrets were there to leak.
    let detail = |name: &str| -> String {
        let offer = store.get(name).unwrap().unwrap();
        offer
            .status
            .conditions
            .iter()
            .map(|c| c.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(detail("down").contains("secret-UP-1"), "{}", detail("down"));
    assert!(
        detail("nofac").contains("secret-FAC"),
        "{}",
        detail("nofac")
    );

    let http = testkit::http();
    for (name, reason) in [
        ("down", "the service is not healthy"),
        ("nofac", "payments cannot be settled right now"),
    ] {
        for payment in [None, Some("not-a-payment")] {
            let mut request = http.post(format!("{public}/services/{name}/x"));
            if let Some(p) = payment {
                request = request.header("payment-signature", p);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 503, "{name}");
            let headers = format!("{:?}", response.headers());
            let body = response.text().await.unwrap();
            assert_clean(&format!("{name} 503 headers"), &headers);
            assert_clean(&format!("{name} 503 body"), &body);
            assert!(body.contains(reason), "{name}: {body}");
        }
    }

    for path in [
        "/",
        "/api/services.json",
        "/openapi.json",
        "/skill.md",
        "/.well-known/x402",
        "/metrics",
    ] {
        let response = http.get(format!("{public}{path}")).send().await.unwrap();
        let headers = format!("{:?}", response.headers());
        let body = response.text().await.unwrap();
        assert_clean(path, &headers);
        assert_clean(path, &body);
    }
    let services = testkit::get_json(&format!("{public}/api/services.json")).await;
    assert_eq!(
        services["services"][0]["unavailableReason"],
        "the service is not healthy"
    );
    let metrics = http
        .get(format!("{operator}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outcome=\"unavailable\""), "{metrics}");
    assert_clean("operator /metrics", &metrics);
}
