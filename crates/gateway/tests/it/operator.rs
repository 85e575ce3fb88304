//! Revenue stays with the operator: after a real settlement on a devnet, the public
//! listener's `/metrics` shows no per-route amount or count (404 with the flag to use),
//! and the operator router, served on its own loopback listener, shows both.

#![allow(clippy::unwrap_used)]

use crate::support;

use support::fixture;
use testkit::pay::PRICE;

#[tokio::test]
async fn per_route_revenue_is_on_the_operator_listener_only() {
    let f = fixture().await;
    let http = testkit::http();
    let paid = http
        .get(f.url("/x"))
        .header("payment-signature", f.pay_header(&f.buyer(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);

    let public = http
        .get(format!("{}/metrics", f.served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let body = public.text().await.unwrap();
    assert!(!body.contains("agora_gateway"), "{body}");
    assert!(!body.contains(&PRICE.to_string()), "{body}");
    assert!(
        body.contains("--metrics-listen 127.0.0.1:9402"),
        "says where to read them: {body}"
    );

    let operator_server = testkit::loopback::serve(f.served.gateway.operator_router()).await;
    let operator = operator_server.url();
    let response = http
        .get(format!("{operator}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "agora_gateway_settled_atomic_total{{route=\"echo\"}} {PRICE}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("agora_gateway_requests_total{route=\"echo\",outcome=\"settled\"} 1"),
        "{metrics}"
    );
}
