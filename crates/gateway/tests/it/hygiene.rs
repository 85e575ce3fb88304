//! What the gateway passes on and what it keeps to itself, through a real gateway to a
//! real loopback upstream: forged payer headers in every spelling are dropped,
//! `X-Forwarded-For` gains the client's address, Tomcat-style and double-encoded dot
//! segments are refused before any upstream is called, and a buyer never learns
//! where an unreachable upstream lives.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::any;
use gateway::Route;
use reqwest::Url;
use serde_json::Value;
use support::{fixture, install, route_for};
use testkit::http as client;
use testkit::loopback::{Server, dead_url};

/// An upstream that answers with every request header it received, as
/// `{name: [values]}`, and counts its calls; it stops when the server is dropped.
async fn header_echo() -> (Server, Arc<AtomicUsize>) {
    async fn echo(State(calls): State<Arc<AtomicUsize>>, request: Request) -> axum::Json<Value> {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in request.headers() {
            seen.entry(name.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        axum::Json(serde_json::to_value(seen).unwrap())
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().fallback(any(echo)).with_state(calls.clone());
    (testkit::loopback::serve(app).await, calls)
}

/// A free route (no payment) named `name` in front of `upstream`.
fn free_route(name: &str, upstream: Url) -> Route {
    Route::new(name, format!("/services/{name}"), upstream, Vec::new())
}

/// Sends `GET path` byte for byte (HTTP clients normalize dot segments away) and
/// returns the status and body.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const FORGED: &str = "0x000000000000000000000000000000000000dEaD";

/// Every spelling of the payer header an upstream might read as `X-Payment-Payer`.
const PAYER_SPELLINGS: [&str; 5] = [
    "X-Payment-Payer",
    "X_Payment_Payer",
    "x_payment_payer",
    "x-payment_payer",
    "X_PAYMENT-PAYER",
];

fn forged_request(http: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
    let mut request = http.get(url);
    for name in PAYER_SPELLINGS {
        request = request.header(name, FORGED);
    }
    request
        .header("X_Verified_Wallet", FORGED)
        .header("x_forwarded_for", "10.6.6.6")
}

/// The names under which `value` reached the upstream.
fn carrying(seen: &Value, value: &str) -> Vec<String> {
    seen.as_object()
        .unwrap()
        .iter()
        .filter(|(_, values)| {
            values
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v.as_str().unwrap().contains(value))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[tokio::test]
async fn forged_payer_headers_in_any_spelling_never_reach_the_upstream() {
    let f = fixture().await;
    let (upstream, calls) = header_echo().await;
    let mut routes = f.served.gateway.routes();
    routes.push(route_for(
        &f.chain,
        f.seller,
        upstream.parsed_url(),
        "headers",
    ));
    routes.push(free_route("open", upstream.parsed_url()));
    install(&f.served.gateway, routes);
    let http = client();

    // Paid: the gateway's own payer header is the only one, and it is the buyer's.
    let buyer = f.buyer(1);
    let paid = forged_request(&http, format!("{}/services/headers/who", f.served.url))
        .header("payment-signature", f.pay_header(&buyer))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let seen: Value = paid.json().await.unwrap();
    assert_eq!(
        carrying(&seen, FORGED),
        Vec::<String>::new(),
        "forged identity reached the upstream: {seen}"
    );
    assert_eq!(
        seen["x-payment-payer"],
        serde_json::json!([buyer.address().to_checksum(None)])
    );
    assert_eq!(
        carrying(&seen, "10.6.6.6"),
        Vec::<String>::new(),
        "an underscore X-Forwarded-For reached the upstream: {seen}"
    );

    // Free: no payer at all.
    let free = forged_request(&http, format!("{}/services/open/who", f.served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(free.status(), 200);
    let seen: Value = free.json().await.unwrap();
    assert_eq!(carrying(&seen, FORGED), Vec::<String>::new(), "{seen}");
    assert!(seen.get("x-payment-payer").is_none(), "{seen}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn x_forwarded_for_gains_the_client_address() {
    let f = fixture().await;
    let (upstream, _) = header_echo().await;
    install(
        &f.served.gateway,
        vec![free_route("open", upstream.parsed_url())],
    );
    let http = client();
    let url = format!("{}/services/open/x", f.served.url);

    let fresh = testkit::get_json(&url).await;
    assert_eq!(fresh["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));

    let chained: Value = http
        .get(&url)
        .header("X-Forwarded-For", "198.51.100.7, 10.0.0.1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        chained["x-forwarded-for"],
        serde_json::json!(["198.51.100.7, 10.0.0.1, 127.0.0.1"])
    );
}

#[tokio::test]
async fn tomcat_and_double_encoded_dot_segments_are_refused_before_the_upstream() {
    let f = fixture().await;
    let (upstream, calls) = header_echo().await;
    let mut routes = f.served.gateway.routes();
    routes.push(free_route("open", upstream.parsed_url()));
    install(&f.served.gateway, routes);

    for path in [
        "/services/open/..;/admin",
        "/services/open/..;jsessionid=1/admin",
        "/services/open/.;/admin",
        "/services/open/%2e%2e;/admin",
        "/services/open/%252e%252e/admin",
        "/services/open/%252E%252e/admin",
        "/services/open/%2E%2e/admin",
        "/services/open/.%2e/admin",
        "/services/open/%2e./admin",
        "/services/open/.%252e/admin",
        "/services/open/%25252e%25252e/admin",
        "/services/open/a%252fb",
        "/services/open/..%00/admin",
        "/services/echo/..;/admin",
    ] {
        let (status, body) = raw_get(&f.served.url, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_path", "{path}");
        assert!(
            body["hint"].as_str().unwrap().contains("canonical path"),
            "{body}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no upstream was called");
    assert_eq!(f.calls(), 0, "no upstream was called");

    for path in [
        "/services/open/a..;/b",
        "/services/open/100%25",
        "/services/open/a.b/..c",
    ] {
        let (status, body) = raw_get(&f.served.url, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_not_named_to_the_buyer() {
    let f = fixture().await;
    let dead = dead_url();
    let port = dead.port().unwrap().to_string();
    let secret = dead
        .join("/internal/SECRET-path?api_key=SECRET-KEY")
        .unwrap();
    let mut routes = f.served.gateway.routes();
    routes.push(free_route("gone", secret.clone()));
    routes.push(route_for(&f.chain, f.seller, secret, "gone-paid"));
    install(&f.served.gateway, routes);
    let http = client();
    let before = f.seller_balance().await;

    let free = http
        .get(format!("{}/services/gone/x?q=1", f.served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(free.status(), 502);
    let free = free.text().await.unwrap();

    let paid = http
        .get(format!("{}/services/gone-paid/x", f.served.url))
        .header("payment-signature", f.pay_header(&f.buyer(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 502);
    let paid = paid.text().await.unwrap();

    for body in [&free, &paid] {
        for hidden in ["SECRET", "internal", "127.0.0.1", "url (", port.as_str()] {
            assert!(!body.contains(hidden), "{hidden:?} leaked: {body}");
        }
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "upstream_failed");
        assert!(
            body["hint"]
                .as_str()
                .unwrap()
                .starts_with("the service could not be reached: connection refused"),
            "{body}"
        );
    }
    assert!(paid.contains("you were not charged"), "{paid}");
    assert_eq!(f.seller_balance().await, before, "nothing moved");
}
