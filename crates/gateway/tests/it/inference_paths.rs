//! An inference route forwards only the inference API (issue 21, M5): a buyer who
//! pays one request's price must not reach a model server's admin API
//! (`DELETE /api/delete` removes a model, `POST /api/pull` fills the disk). Attacked
//! as a buyer would, on a devnet with the embedded facilitator, the real gateway and
//! testkit's recording upstream (which counts every call it receives): the admin
//! paths answer 404 before any 402, with or without a payment, nothing is charged,
//! and the upstream never sees them; the inference API is still sold.

#![allow(clippy::unwrap_used)]

use crate::support;

use alloy::primitives::U256;
use gateway::allowed::{AllowedPath, inference_api};
use serde_json::Value;
use support::{Fixture, fixture, install, route_for};
use testkit::pay::PRICE;

/// Replaces the fixture's `echo` route with the same one restricted to `allowed`.
fn restrict(f: &Fixture, allowed: Vec<AllowedPath>) {
    let mut route = route_for(&f.chain, f.seller, f.upstream.url.clone(), "echo");
    route.allowed = Some(allowed);
    install(&f.served.gateway, vec![route]);
}

/// The model server's admin API as a buyer would call it.
const ADMIN: [(&str, &str); 6] = [
    ("DELETE", "/api/delete"),
    ("POST", "/api/pull"),
    ("POST", "/api/create"),
    ("POST", "/api/copy"),
    ("POST", "/api/push"),
    ("DELETE", "/api/chat"),
];

async fn send(f: &Fixture, method: &str, rest: &str, payment: Option<&str>) -> (u16, bool, Value) {
    let mut request = testkit::http()
        .request(method.parse().unwrap(), f.url(rest))
        .header("content-type", "application/json")
        .body(r#"{"model":"llama3"}"#);
    if let Some(header) = payment {
        request = request.header("payment-signature", header);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenged = response.headers().contains_key("payment-required");
    let body = response.json().await.unwrap_or(Value::Null);
    (status, challenged, body)
}

#[tokio::test]
async fn a_paying_buyer_cannot_reach_the_model_servers_admin_api() {
    let f = fixture().await;
    restrict(&f, inference_api());
    let before = f.seller_balance().await;
    let buyer = f.buyer(1);

    for (method, rest) in ADMIN {
        let (status, challenged, body) = send(&f, method, rest, None).await;
        assert_eq!(status, 404, "{method} {rest}: {body}");
        assert!(!challenged, "{method} {rest} must not ask for a payment");
        assert_eq!(body["reason"], "path_not_sold", "{body}");
        let hint = body["hint"].as_str().unwrap();
        assert!(hint.contains("--allow-path"), "{hint}");
        assert!(
            hint.contains("POST /api/chat"),
            "names what is sold: {hint}"
        );

        // A buyer who pays anyway is refused the same way and charged nothing.
        let header = f.pay_header(&buyer);
        let (status, _, body) = send(&f, method, rest, Some(&header)).await;
        assert_eq!(status, 404, "{method} {rest} paid: {body}");
    }
    assert_eq!(f.calls(), 0, "the upstream never saw an admin call");
    assert_eq!(f.seller_balance().await, before, "nothing was charged");

    // The inference API is still sold: 402 first, then served once paid.
    let (status, challenged, _) = send(&f, "POST", "/api/chat", None).await;
    assert_eq!((status, challenged), (402, true));
    let header = f.pay_header(&buyer);
    let (status, _, body) = send(&f, "POST", "/api/chat", Some(&header)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/api/chat");
    assert_eq!(f.calls(), 1);
    assert_eq!(f.seller_balance().await, before + U256::from(PRICE));
}

#[tokio::test]
async fn an_allowed_path_opens_exactly_that_request() {
    let f = fixture().await;
    let mut allowed = inference_api();
    allowed.push(AllowedPath::parse("GET /api/ps").unwrap());
    restrict(&f, allowed);

    let (status, challenged, _) = send(&f, "GET", "/api/ps", None).await;
    assert_eq!((status, challenged), (402, true), "opened, and sold");
    let (status, _, _) = send(&f, "DELETE", "/api/ps", None).await;
    assert_eq!(status, 404, "only the method named");
    let (status, _, _) = send(&f, "DELETE", "/api/delete", None).await;
    assert_eq!(status, 404);
    // The health path stays free to read, and the route's root still shows its 402
    // to discovery and probes.
    let (status, _, _) = send(&f, "GET", "/health", None).await;
    assert_eq!(status, 200);
    let (status, challenged, _) = send(&f, "GET", "", None).await;
    assert_eq!((status, challenged), (402, true));
    let (status, _, _) = send(&f, "DELETE", "", None).await;
    assert_eq!(status, 404);
    assert_eq!(f.calls(), 1, "only the health read reached the upstream");
}

#[tokio::test]
async fn a_route_without_a_list_forwards_every_path_as_before() {
    let f = fixture().await;
    let (status, challenged, _) = send(&f, "DELETE", "/api/delete", None).await;
    assert_eq!((status, challenged), (402, true), "sell http is unchanged");
}
