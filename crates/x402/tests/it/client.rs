//! `x402::client` against small real sellers on loopback (axum), each checking the
//! payment it gets with agora's own offline verifier: a v1 seller (body 402,
//! `X-PAYMENT`, `X-PAYMENT-RESPONSE`), a seller whose settlement is pending until the
//! same header comes back, one that answers 402 again, and malformed 402s. The paid
//! path against agora's gateway on a devnet is in `crates/gateway/tests/it/client.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use x402::client::{Answer, Client, ClientError, Outcome, Policy};
use x402::eip3009::verify_offline;
use x402::header;
use x402::time::unix_now;
use x402::wire::{PaymentPayload, PaymentRequirements, SettleResponse, X402Version};

const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// The payment headers each request carried, in order.
#[derive(Default)]
struct Seen {
    payments: Mutex<Vec<(String, String)>>,
}

fn requirement_json(version: u8) -> Value {
    let mut r = json!({
        "scheme": "exact", "payTo": PAY_TO, "asset": USDC, "maxTimeoutSeconds": 120,
        "extra": {"name": "USDC", "version": "2"}
    });
    if version == 1 {
        r["network"] = json!("base-sepolia");
        r["maxAmountRequired"] = json!("1000");
        r["resource"] = json!("http://seller/v1");
        r["description"] = json!("");
        r["mimeType"] = json!("application/json");
    } else {
        r["network"] = json!("eip155:84532");
        r["amount"] = json!("1000");
    }
    r
}

fn payment_of(headers: &HeaderMap) -> Option<(String, String)> {
    ["payment-signature", "x-payment"].iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .map(|v| (name.to_string(), v.to_string()))
    })
}

fn challenge_402(version: u8, error: &str) -> Response {
    let body =
        json!({"x402Version": version, "error": error, "accepts": [requirement_json(version)]});
    let mut response = (StatusCode::PAYMENT_REQUIRED, axum::Json(body.clone())).into_response();
    if version == 2 {
        let value = header::encode(&body).unwrap();
        response
            .headers_mut()
            .insert("payment-required", HeaderValue::from_str(&value).unwrap());
    }
    response
}

fn receipt_header(payment: &PaymentPayload, name: &'static str) -> (&'static str, String) {
    let receipt = SettleResponse {
        success: true,
        error_reason: None,
        error_message: None,
        payer: Some(payment.payload.authorization.from),
        transaction: Some([7u8; 32].into()),
        network: payment.network.clone(),
        amount: None,
        extensions: None,
    };
    (
        name,
        header::encode(&receipt.to_wire(payment.x402_version)).unwrap(),
    )
}

async fn seller(State(seen): State<Arc<Seen>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let version = if path.starts_with("/v1") { 1 } else { 2 };
    let Some((name, value)) = payment_of(request.headers()) else {
        return match path.as_str() {
            "/free" => "free".into_response(),
            "/malformed" => {
                let mut r = StatusCode::PAYMENT_REQUIRED.into_response();
                r.headers_mut()
                    .insert("payment-required", HeaderValue::from_static("eyJ4-_"));
                r
            }
            _ => challenge_402(version, "payment required"),
        };
    };
    let count = {
        let mut payments = seen.payments.lock().unwrap();
        payments.push((name.clone(), value.clone()));
        payments.iter().filter(|(_, v)| *v == value).count()
    };
    let payment: PaymentPayload = header::decode(&value).unwrap();
    let requirement: PaymentRequirements =
        serde_json::from_value(requirement_json(version)).unwrap();
    if verify_offline(&payment, &requirement, unix_now()).is_err() {
        return challenge_402(version, "invalid payment");
    }
    match path.as_str() {
        "/again" => challenge_402(version, "the facilitator refused: insufficient_funds"),
        "/pending" if count == 1 => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    json!({"error": "settlement_pending", "reason": "settlement_pending",
                    "hint": "retry with the same payment header"}),
                ),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("2"));
            r
        }
        _ => {
            let receipt_name = if version == 1 {
                "x-payment-response"
            } else {
                "payment-response"
            };
            let (name, value) = receipt_header(&payment, receipt_name);
            ([(name, value)], axum::Json(json!({"served": path}))).into_response()
        }
    }
}

async fn start() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new().fallback(seller).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn client(max: u64) -> Client {
    Client::new(
        x402::client::http_client().unwrap(),
        PrivateKeySigner::random(),
        Policy::new(U256::from(max)),
    )
}

fn get(client: &Client, url: String) -> reqwest::Request {
    client.http().get(url).build().unwrap()
}

#[tokio::test]
async fn a_v1_seller_is_paid_with_x_payment_and_its_receipt_is_read() {
    let (url, seen) = start().await;
    let c = client(1000);
    let answer = c.pay(get(&c, format!("{url}/v1/thing"))).await.unwrap();
    let Answer::Delivered(d) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(d.response.status(), 200);
    assert_eq!(d.signed.version, X402Version::V1);
    let receipt = d.receipt.unwrap();
    assert_eq!(receipt.payer, Some(c.address()));
    let payments = seen.payments.lock().unwrap().clone();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].0, "x-payment");
    let sent: Value = header::decode(&payments[0].1).unwrap();
    assert_eq!(sent["network"], "base-sepolia");
    assert_eq!(sent["x402Version"], 1);
}

#[tokio::test]
async fn pending_is_resumed_with_the_same_header_never_a_new_signature() {
    let (url, seen) = start().await;
    let c = client(1000);
    let answer = c.pay(get(&c, format!("{url}/pending"))).await.unwrap();
    let Answer::Pending(pending) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(pending.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(pending.reason.as_deref(), Some("settlement_pending"));
    let outcome = c
        .resume(get(&c, format!("{url}/pending")), &pending.signed)
        .await
        .unwrap();
    let Outcome::Delivered(d) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(d.response.status(), 200);
    assert!(d.receipt.unwrap().success);
    let payments = seen.payments.lock().unwrap().clone();
    assert_eq!(payments.len(), 2);
    assert_eq!(payments[0], payments[1], "the same header, byte for byte");
    assert_eq!(payments[0].0, "payment-signature");
}

#[tokio::test]
async fn a_402_after_paying_carries_the_server_reason() {
    let (url, seen) = start().await;
    let c = client(1000);
    let e = c.pay(get(&c, format!("{url}/again"))).await.unwrap_err();
    match &e {
        ClientError::Rejected { message, .. } => {
            assert!(message.contains("insufficient_funds"), "{e}")
        }
        other => panic!("{other}"),
    }
    assert!(!e.signed_nothing());
    assert_eq!(
        seen.payments.lock().unwrap().len(),
        1,
        "one signature, one try"
    );
}

#[tokio::test]
async fn free_answers_and_malformed_402s_sign_nothing() {
    let (url, seen) = start().await;
    let c = client(1000);
    let Answer::Free(r) = c.pay(get(&c, format!("{url}/free"))).await.unwrap() else {
        panic!("expected a free answer")
    };
    assert_eq!(r.text().await.unwrap(), "free");
    let e = c
        .pay(get(&c, format!("{url}/malformed")))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Challenge(_)), "{e}");
    assert!(e.signed_nothing());
    let e = client(999)
        .pay(get(&c, format!("{url}/thing")))
        .await
        .unwrap_err();
    assert!(
        matches!(e.refusal(), Some(x402::client::Refusal::AboveMax { .. })),
        "{e}"
    );
    assert!(seen.payments.lock().unwrap().is_empty());
}

/// A seller on raw TCP that cuts the connection the first time a payment arrives
/// (the answer is lost after the header was sent), and serves it the second time.
async fn start_cutting() -> (String, Arc<Seen>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let seen = state.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let payment = text.lines().find_map(|line| {
                    let (k, v) = line.split_once(':')?;
                    k.eq_ignore_ascii_case("payment-signature")
                        .then(|| v.trim().to_string())
                });
                let answer = match payment {
                    None => {
                        let body = json!({"x402Version": 2, "accepts": [requirement_json(2)]});
                        format!(
                            "HTTP/1.1 402 Payment Required\r\npayment-required: {}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
                            header::encode(&body).unwrap()
                        )
                    }
                    Some(value) => {
                        let first = {
                            let mut payments = seen.payments.lock().unwrap();
                            payments.push(("payment-signature".into(), value));
                            payments.len() == 1
                        };
                        if first {
                            return; // cut: the socket is dropped without an answer
                        }
                        "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nserved"
                            .to_string()
                    }
                };
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_lost_answer_is_retried_once_with_the_same_header() {
    let (url, seen) = start_cutting().await;
    let c = client(1000);
    let answer = c.pay(get(&c, format!("{url}/cut"))).await.unwrap();
    let Answer::Delivered(d) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(d.response.text().await.unwrap(), "served");
    let payments = seen.payments.lock().unwrap().clone();
    assert_eq!(payments.len(), 2);
    assert_eq!(
        payments[0], payments[1],
        "the same signed header both times"
    );
}
