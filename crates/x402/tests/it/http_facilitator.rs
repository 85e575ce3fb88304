#![allow(clippy::unwrap_used)]
//! `HttpFacilitator` against real HTTP servers on loopback: both answer styles of real
//! facilitators, unusable answers, dead ports, slow servers and the `/supported` cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use x402::{Facilitator, FacilitatorError, FacilitatorRequest, HttpFacilitator, Network};

const PAYER: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

fn request() -> FacilitatorRequest {
    let requirement = json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000", "payTo": PAY_TO,
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    });
    serde_json::from_value(json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "accepted": requirement,
            "payload": {
                "signature": format!("0x{}1b", "11".repeat(64)),
                "authorization": {
                    "from": PAYER, "to": PAY_TO, "value": "1000",
                    "validAfter": "0", "validBefore": "99999999999",
                    "nonce": format!("0x{}", "ab".repeat(32)),
                }
            }
        },
        "paymentRequirements": requirement,
    }))
    .unwrap()
}

/// One scripted answer: status, content type, body, and how long to wait first.
#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    delay: Duration,
}

fn json_answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        content_type: "application/json",
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn text_answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        content_type: "text/plain",
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// What the server saw, per path.
#[derive(Default)]
struct Seen {
    hits: HashMap<String, AtomicUsize>,
    bodies: Mutex<Vec<(String, String, Value)>>,
}

#[derive(Clone)]
struct Script {
    answers: Arc<HashMap<String, Answer>>,
    seen: Arc<Seen>,
}

async fn scripted(
    State(script): State<Script>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Some(counter) = script.seen.hits.get(&path) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    if !body.is_empty() {
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        script
            .seen
            .bodies
            .lock()
            .unwrap()
            .push((path.clone(), content_type, value));
    }
    let Some(answer) = script.answers.get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, "no such route").into_response();
    };
    tokio::time::sleep(answer.delay).await;
    (
        StatusCode::from_u16(answer.status).unwrap(),
        [("content-type", answer.content_type)],
        answer.body,
    )
        .into_response()
}

/// Serves `answers` (path -> answer) on 127.0.0.1:0 and returns the base URL.
async fn serve(answers: Vec<(&str, Answer)>) -> (String, Arc<Seen>) {
    let mut seen = Seen::default();
    for (path, _) in &answers {
        seen.hits.insert(path.to_string(), AtomicUsize::new(0));
    }
    let seen = Arc::new(seen);
    let script = Script {
        answers: Arc::new(
            answers
                .into_iter()
                .map(|(p, a)| (p.to_string(), a))
                .collect(),
        ),
        seen: seen.clone(),
    };
    let app = Router::new().fallback(scripted).with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn hits(seen: &Seen, path: &str) -> usize {
    seen.hits[path].load(Ordering::SeqCst)
}

#[tokio::test]
async fn valid_verify_and_settle_on_200_send_the_request_as_json() {
    let tx = format!("0x{}", "cd".repeat(32));
    let (base, seen) = serve(vec![
        ("/verify", json_answer(200, json!({"isValid": true, "payer": PAYER}))),
        (
            "/settle",
            json_answer(
                200,
                json!({"success": true, "payer": PAYER, "transaction": tx, "network": "eip155:84532", "amount": "1000"}),
            ),
        ),
    ])
    .await;
    let facilitator = HttpFacilitator::new(&base).unwrap();
    let req = request();

    let verified = facilitator.verify(&req).await.unwrap();
    assert!(verified.is_valid);
    assert_eq!(verified.payer, Some(PAYER.parse().unwrap()));
    let settled = facilitator.settle(&req).await.unwrap();
    assert!(settled.success);
    assert_eq!(settled.transaction, Some(tx.parse().unwrap()));
    assert_eq!(settled.network, Network::BASE_SEPOLIA);
    assert_eq!(settled.amount, Some(alloy::primitives::U256::from(1000)));

    let bodies = seen.bodies.lock().unwrap();
    let expected = serde_json::to_value(&req).unwrap();
    assert_eq!(bodies.len(), 2);
    for ((path, content_type, body), want_path) in bodies.iter().zip(["/verify", "/settle"]) {
        assert_eq!(path, want_path);
        assert_eq!(content_type, "application/json");
        assert_eq!(body, &expected);
    }
}

#[tokio::test]
async fn refusals_on_200_are_answers() {
    let (base, _) = serve(vec![
        (
            "/verify",
            json_answer(
                200,
                json!({"isValid": false, "invalidReason": "invalid_exact_evm_payload_signature", "invalidMessage": "bad signature", "payer": PAYER}),
            ),
        ),
        (
            "/settle",
            json_answer(
                200,
                json!({"success": false, "errorReason": "invalid_transaction_state", "transaction": "", "network": "eip155:84532"}),
            ),
        ),
    ])
    .await;
    let facilitator = HttpFacilitator::new(&base).unwrap();
    let verified = facilitator.verify(&request()).await.unwrap();
    assert!(!verified.is_valid);
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("invalid_exact_evm_payload_signature")
    );
    assert_eq!(verified.invalid_message.as_deref(), Some("bad signature"));
    let settled = facilitator.settle(&request()).await.unwrap();
    assert!(!settled.success);
    assert_eq!(
        settled.error_reason.as_deref(),
        Some("invalid_transaction_state")
    );
    assert_eq!(settled.transaction, None);
}

#[tokio::test]
async fn refusals_on_4xx_bodies_carrying_the_answer_are_answers() {
    for status in [400, 402, 412, 422] {
        // x402-rs style: extra details and an empty payer.
        let (base, _) = serve(vec![
            (
                "/verify",
                json_answer(
                    status,
                    json!({"isValid": false, "invalidReason": "invalid_exact_evm_payload_authorization_valid_before", "invalidReasonDetails": {"x": 1}, "payer": ""}),
                ),
            ),
            (
                "/settle",
                json_answer(
                    status,
                    json!({"success": false, "errorReason": "insufficient_funds", "payer": "", "transaction": "", "network": "base-sepolia"}),
                ),
            ),
        ])
        .await;
        let facilitator = HttpFacilitator::new(&base).unwrap();
        let verified = facilitator.verify(&request()).await.unwrap();
        assert!(!verified.is_valid, "HTTP {status}");
        assert_eq!(
            verified.invalid_reason.as_deref(),
            Some("invalid_exact_evm_payload_authorization_valid_before"),
            "HTTP {status}"
        );
        assert_eq!(verified.payer, None, "HTTP {status}");
        let settled = facilitator.settle(&request()).await.unwrap();
        assert!(!settled.success, "HTTP {status}");
        assert_eq!(settled.error_reason.as_deref(), Some("insufficient_funds"));
        assert_eq!(settled.network, Network::BASE_SEPOLIA);
    }
}

/// Asserts a `BadResponse` for `endpoint` with `status` whose quoted body contains `quote`.
fn assert_bad(err: FacilitatorError, endpoint: &str, status: u16, quote: &str) {
    let text = err.to_string();
    match err {
        FacilitatorError::BadResponse {
            endpoint: e,
            status: s,
            body,
        } => {
            assert_eq!(e, endpoint);
            assert_eq!(s, status, "{text}");
            assert!(body.contains(quote), "{body:?} lacks {quote:?}");
        }
        other => panic!("expected BadResponse, got {other:?}"),
    }
    assert!(text.contains(endpoint), "{text}");
}

#[tokio::test]
async fn answers_without_an_x402_body_are_bad_responses_naming_the_url() {
    // (answer, quoted in the /verify error, quoted in the /settle error)
    let cases = [
        (
            text_answer(500, "internal server error"),
            "internal server error",
            "internal",
        ),
        (
            json_answer(503, json!({"isValid": false})),
            "isValid",
            "isValid",
        ),
        (
            json_answer(400, json!({"error": "missing body"})),
            "missing body",
            "missing body",
        ),
        (text_answer(200, "<html>hello</html>"), "<html>", "<html>"),
        (json_answer(200, json!({"ok": true})), "ok", "ok"),
        (json_answer(200, json!(["isValid"])), "isValid", "isValid"),
        (
            json_answer(404, json!({"isValid": false})),
            "isValid",
            "isValid",
        ),
        // Carries the key but is not a valid answer: the parse error is quoted too.
        (
            json_answer(200, json!({"isValid": "yes"})),
            "invalid type",
            "yes",
        ),
        (
            json_answer(412, json!({"success": true, "network": "nowhere"})),
            "success",
            "nowhere",
        ),
    ];
    for (answer, verify_quote, settle_quote) in cases {
        let status = answer.status;
        let (base, _) = serve(vec![("/verify", answer.clone()), ("/settle", answer)]).await;
        let facilitator = HttpFacilitator::new(&base).unwrap();
        let err = facilitator.verify(&request()).await.unwrap_err();
        assert_bad(err, &format!("{base}/verify"), status, verify_quote);
        let err = facilitator.settle(&request()).await.unwrap_err();
        assert_bad(err, &format!("{base}/settle"), status, settle_quote);
    }
}

#[tokio::test]
async fn trailing_slashes_and_a_path_prefix_reach_the_right_routes() {
    let (base, seen) = serve(vec![
        ("/facilitator/verify", json_answer(200, json!({"isValid": true}))),
        (
            "/facilitator/supported",
            json_answer(
                200,
                json!({"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}]}),
            ),
        ),
    ])
    .await;
    let facilitator = HttpFacilitator::new(&format!("{base}/facilitator//")).unwrap();
    assert_eq!(facilitator.base_url(), format!("{base}/facilitator"));
    assert!(facilitator.verify(&request()).await.unwrap().is_valid);
    assert!(
        facilitator
            .supported()
            .await
            .unwrap()
            .supports("exact", &Network::BASE_SEPOLIA)
    );
    assert_eq!(hits(&seen, "/facilitator/verify"), 1);
    assert_eq!(hits(&seen, "/facilitator/supported"), 1);
}

#[tokio::test]
async fn connection_refused_is_unreachable_naming_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let facilitator = HttpFacilitator::new(&dead).unwrap();
    for result in [
        facilitator.verify(&request()).await.map(|_| ()),
        facilitator.settle(&request()).await.map(|_| ()),
        facilitator.supported().await.map(|_| ()),
    ] {
        let err = result.unwrap_err();
        let text = err.to_string();
        let FacilitatorError::Unreachable { endpoint, message } = err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert!(endpoint.starts_with(&dead), "{endpoint}");
        assert!(text.contains(&dead), "{text}");
        assert!(
            message.to_lowercase().contains("connect"),
            "message should say the connection failed: {message}"
        );
    }
}

#[tokio::test]
async fn a_slow_facilitator_times_out_naming_the_url() {
    let slow = Answer {
        delay: Duration::from_secs(5),
        ..json_answer(200, json!({"isValid": true}))
    };
    let (base, seen) = serve(vec![("/verify", slow.clone()), ("/settle", slow)]).await;
    let facilitator = HttpFacilitator::new(&base)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = facilitator.verify(&request()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not time out"
    );
    let text = err.to_string();
    let FacilitatorError::Timeout { endpoint, seconds } = err else {
        panic!("expected Timeout, got {err:?}");
    };
    assert_eq!(endpoint, format!("{base}/verify"));
    assert_eq!(seconds, 1, "a 300 ms limit reads as 1 s, never 0 s");
    assert!(text.contains(&base), "{text}");
    assert_eq!(hits(&seen, "/verify"), 1);

    // Settles have their own, longer limit: the verify limit does not cut them short.
    let settle_started = std::time::Instant::now();
    let slow_settle = facilitator.settle(&request()).await.unwrap_err();
    assert!(
        settle_started.elapsed() >= Duration::from_secs(4),
        "the settle was cut by the verify timeout: {slow_settle:?}"
    );
    let short_settle = HttpFacilitator::new(&base)
        .unwrap()
        .with_settle_timeout(Duration::from_millis(300));
    assert!(matches!(
        short_settle.settle(&request()).await.unwrap_err(),
        FacilitatorError::Timeout { .. }
    ));
}

fn supported_answer() -> Answer {
    json_answer(
        200,
        json!({
            "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}],
            "extensions": [],
            "signers": {"eip155:*": [PAY_TO]}
        }),
    )
}

#[tokio::test]
async fn supported_is_cached_within_its_ttl() {
    let (base, seen) = serve(vec![("/supported", supported_answer())]).await;
    let facilitator = HttpFacilitator::new(&base).unwrap();
    let first = facilitator.supported().await.unwrap();
    assert!(first.supports("exact", &Network::BASE_SEPOLIA));
    assert_eq!(first.signers["eip155:*"], vec![PAY_TO.to_string()]);
    let second = facilitator.supported().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(hits(&seen, "/supported"), 1, "second call made a request");

    let short = HttpFacilitator::new(&base)
        .unwrap()
        .with_supported_ttl(Duration::from_millis(200));
    short.supported().await.unwrap();
    short.supported().await.unwrap();
    assert_eq!(hits(&seen, "/supported"), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    short.supported().await.unwrap();
    assert_eq!(hits(&seen, "/supported"), 3, "expired entry was reused");

    let uncached = HttpFacilitator::new(&base)
        .unwrap()
        .with_supported_ttl(Duration::ZERO);
    uncached.supported().await.unwrap();
    uncached.supported().await.unwrap();
    assert_eq!(hits(&seen, "/supported"), 5);
}

#[tokio::test]
async fn supported_failures_are_errors_and_not_cached() {
    let (base, seen) = serve(vec![("/supported", text_answer(502, "bad gateway"))]).await;
    let facilitator = HttpFacilitator::new(&base).unwrap();
    for _ in 0..2 {
        let err = facilitator.supported().await.unwrap_err();
        assert_bad(err, &format!("{base}/supported"), 502, "bad gateway");
    }
    assert_eq!(hits(&seen, "/supported"), 2);

    let (base, _) = serve(vec![("/supported", json_answer(200, json!({"kinds": 3})))]).await;
    let err = HttpFacilitator::new(&base)
        .unwrap()
        .supported()
        .await
        .unwrap_err();
    assert_bad(err, &format!("{base}/supported"), 200, "kinds");
}

#[tokio::test]
async fn usable_behind_an_arc_dyn_facilitator() {
    let (base, _) = serve(vec![(
        "/verify",
        json_answer(200, json!({"isValid": true})),
    )])
    .await;
    let facilitator: Arc<dyn Facilitator> = Arc::new(HttpFacilitator::new(&base).unwrap());
    let req = request();
    let (a, b) = tokio::join!(facilitator.verify(&req), facilitator.verify(&req));
    assert!(a.unwrap().is_valid && b.unwrap().is_valid);
}
