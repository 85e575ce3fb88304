//! What `x402::client` adds to a call: the offline work (read the 402, choose, sign,
//! encode the header, read the receipt) and a whole paid call on loopback, against a
//! bare reqwest GET to the same server in the same run (the baseline).
//!
//! The loopback seller checks each payment with agora's offline verifier and answers
//! with a receipt; no chain is involved, so this is the client's cost, not
//! settlement's. Paid calls/s against the gateway with a devnet are in
//! `crates/gateway/benches/gateway.rs`.

use std::hint::black_box;

use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use x402::client::{self, Answer, Challenge, Client, Policy};
use x402::eip3009::verify_offline;
use x402::header;
use x402::time::unix_now;
use x402::wire::{PaymentPayload, PaymentRequirements, SettleResponse};

fn required() -> Value {
    json!({"x402Version": 2, "resource": {"url": "http://127.0.0.1/paid"}, "accepts": [{
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2"}
    }]})
}

fn receipt_for(payment: &PaymentPayload) -> String {
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
    header::encode(&receipt.to_wire(payment.x402_version)).unwrap_or_default()
}

async fn seller(request: Request) -> Response {
    if request.uri().path() == "/free" {
        return "ok".into_response();
    }
    let Some(value) = request
        .headers()
        .get("payment-signature")
        .and_then(|v| v.to_str().ok())
    else {
        let mut r = StatusCode::PAYMENT_REQUIRED.into_response();
        if let Some(v) = header::encode(&required())
            .ok()
            .and_then(|e| HeaderValue::from_str(&e).ok())
        {
            r.headers_mut().insert("payment-required", v);
        }
        return r;
    };
    let requirement: Option<PaymentRequirements> =
        serde_json::from_value(required()["accepts"][0].clone()).ok();
    match (header::decode_payment(value), requirement) {
        (Ok(payment), Some(req)) if verify_offline(&payment, &req, unix_now()).is_ok() => {
            ([("payment-response", receipt_for(&payment))], "ok").into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn bench_client(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let base = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, Router::new().fallback(seller)).await });
        format!("http://{addr}")
    });
    let http = client::http_client().expect("a reqwest client");
    let buyer = Client::new(
        http.clone(),
        PrivateKeySigner::random(),
        Policy::new(alloy::primitives::U256::from(1000)),
    );

    let mut headers = HeaderMap::new();
    let encoded = header::encode(&required()).expect("encodes");
    headers.insert(
        "payment-required",
        HeaderValue::from_str(&encoded).expect("base64 is a header value"),
    );
    let signer = PrivateKeySigner::random();
    let sample_receipt = {
        let challenge = Challenge::read(&headers, b"{}").expect("a valid 402");
        let signed =
            client::sign(&signer, &challenge, &challenge.offers[0], unix_now()).expect("signs");
        let payment = header::decode_payment(&signed.header_value).expect("decodes");
        let mut h = HeaderMap::new();
        h.insert(
            "payment-response",
            HeaderValue::from_str(&receipt_for(&payment)).expect("header value"),
        );
        h
    };

    let mut group = c.benchmark_group("client");
    group.bench_function("offline_read_choose_sign_encode_receipt", |b| {
        b.iter(|| {
            let challenge = Challenge::read(black_box(&headers), b"{}").expect("a valid 402");
            let choice = buyer.choose(&challenge).expect("acceptable");
            let signed =
                client::sign(&signer, &challenge, &choice.offer, unix_now()).expect("signs");
            black_box((signed, client::receipt(black_box(&sample_receipt))))
        })
    });
    group.bench_function("baseline_bare_get", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let r = http.get(format!("{base}/free")).send().await.expect("get");
                black_box(r.bytes().await.expect("body"))
            })
        })
    });
    group.bench_function("paid_call_on_loopback", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = buyer
                    .http()
                    .get(format!("{base}/paid"))
                    .build()
                    .expect("url");
                match buyer.pay(request).await.expect("paid") {
                    Answer::Delivered(d) => black_box(d.response.bytes().await.expect("body")),
                    other => panic!("expected an answer, got {other:?}"),
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_client);
criterion_main!(benches);
