//! The gate on a real devnet with the embedded facilitator and a loopback upstream:
//! challenges, paid calls in every header/version combination, no charge for failed
//! calls, one call per authorization, facilitator down, bad headers, streaming,
//! settlement failure, limits and graceful shutdown. Every money claim is checked on
//! chain.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use futures_util::StreamExt;
use gateway::metrics::Outcome;
use gateway::{Gateway, GatewayConfig, Limits};
use serde_json::Value;
use support::{fixture, fixture_with, install, route_for};
use testkit::http as client;
use testkit::loopback::dead_url;
use testkit::pay;
use testkit::pay::PRICE;
use x402::eip3009::{self, IEip3009Token};
use x402::time::unix_now;
use x402::wire::{PaymentRequired, SettleResponse, X402Version};
use x402::{Facilitator, HttpFacilitator, Network};

/// Sends `path` byte for byte (HTTP clients normalize dot segments away).
async fn raw_status(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer[9..12].parse().unwrap()
}

fn receipt(response: &reqwest::Response, name: &str) -> SettleResponse {
    let value = response.headers()[name].to_str().unwrap();
    x402::header::decode(value).unwrap()
}

#[tokio::test]
async fn unpaid_requests_get_a_challenge_every_client_can_read() {
    let f = fixture().await;
    let http = client();
    let response = http.get(f.url("/anything")).send().await.unwrap();
    assert_eq!(response.status(), 402);
    assert!(
        response.headers()["link"]
            .to_str()
            .unwrap()
            .contains("services.json")
    );
    let required: PaymentRequired =
        x402::header::decode(response.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert_eq!(required.x402_version, X402Version::V2);
    assert_eq!(required.accepts.len(), 1);
    assert_eq!(required.accepts[0].amount, U256::from(PRICE));
    assert_eq!(required.accepts[0].pay_to, f.seller);
    assert_eq!(
        required.resource.unwrap().url,
        f.url("/anything"),
        "the resource is the URL asked for"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["x402Version"], 1);
    assert_eq!(body["accepts"][0]["amount"], PRICE.to_string());
    assert_eq!(body["accepts"][0]["maxAmountRequired"], PRICE.to_string());
    assert_eq!(body["accepts"][0]["network"], "base-sepolia");
    assert_eq!(body["accepts"][0]["extra"]["name"], "USDC");

    let page = http
        .get(f.url("/anything"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 402);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers().contains_key("payment-required"));
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("0.001 USDC on Base Sepolia")
    );

    let health = http.get(f.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "free path is proxied without payment");
    assert_eq!(f.calls(), 1, "only the free path reached the upstream");

    for (path, kind) in [
        ("/", "text/html"),
        ("/skill.md", "text/markdown"),
        ("/api/services.json", "application/json"),
        ("/openapi.json", "application/json"),
        ("/.well-known/x402", "application/json"),
    ] {
        let doc = http
            .get(format!("{}{path}", f.served.url))
            .send()
            .await
            .unwrap();
        assert_eq!(doc.status(), 200, "{path}");
        assert_eq!(doc.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(
            doc.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(
            doc.text().await.unwrap().contains("echo"),
            "{path} lists the service"
        );
    }
    let registration = http
        .get(format!(
            "{}/.well-known/agent-registration.json",
            f.served.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(registration.status(), 404, "no registration given yet");
    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/nowhere", 404)] {
        let r = http
            .get(format!("{}{path}", f.served.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    for path in [
        "/services/echo/%2e%2e/admin",
        "/services/echo/../admin",
        "/services/echo/a%2Fb",
    ] {
        assert_eq!(raw_status(&f.served.url, path).await, 400, "{path}");
    }
    // The HTTP side of /metrics (operator listener only) is tested in operator.rs.
    let metrics = f.served.gateway.metrics().render();
    assert!(
        metrics.contains("agora_gateway_requests_total{route=\"echo\",outcome=\"challenged\"} 2")
    );
    assert!(metrics.contains("outcome=\"free\"} 1"));
}

#[tokio::test]
async fn every_header_and_version_pays_exactly_once() {
    let f = fixture().await;
    let http = client();
    let buyer = f.buyer(1);
    let requirement = f.requirement();
    let before = f.seller_balance().await;

    let v2 = f.pay_header(&buyer);
    let v1_payload = pay::encode_v1(&requirement, pay::authorize(&buyer, &requirement));
    let v2_under_x_payment = f.pay_header(&buyer);
    let cases = [
        ("payment-signature", v2.as_str(), X402Version::V2),
        ("x-payment", v1_payload.as_str(), X402Version::V1),
        ("x-payment", v2_under_x_payment.as_str(), X402Version::V2),
    ];
    for (i, (header, value, version)) in cases.into_iter().enumerate() {
        let response = http
            .post(f.url("/echo"))
            .header(header, value)
            .header(
                "x-payment-payer",
                "0x000000000000000000000000000000000000dEaD",
            )
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{header} {version:?}");
        let v2_receipt = receipt(&response, "payment-response");
        let v1_receipt = receipt(&response, "x-payment-response");
        assert_eq!(
            v2_receipt, v1_receipt,
            "both receipt headers carry the same receipt"
        );
        assert!(v2_receipt.success);
        assert_eq!(v2_receipt.payer, Some(buyer.address()));
        let tx = v2_receipt.transaction.unwrap();
        testkit::chain::assert_succeeded(&f.chain, tx).await;
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["payer"],
            buyer.address().to_checksum(None),
            "verified payer, not the forged one"
        );
        assert_eq!(
            body["leakedPayment"], false,
            "the upstream never sees the payment"
        );
        assert_eq!(body["body"], "hello");
        assert_eq!(
            f.seller_balance().await - before,
            U256::from(PRICE * (i as u64 + 1)),
            "exactly the price per call"
        );
    }
    let replay = http
        .post(f.url("/echo"))
        .header("payment-signature", v2.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        402,
        "a settled authorization never buys again"
    );
    assert_eq!(
        replay.headers()["x-payment-invalid-reason"],
        "invalid_exact_evm_nonce_already_used"
    );
    assert_eq!(f.seller_balance().await - before, U256::from(3 * PRICE));
    assert_eq!(f.calls(), 3);
    let m = f.served.gateway.metrics();
    assert_eq!(m.get("echo", Outcome::Settled), 3);
    assert!(
        m.render()
            .contains("agora_gateway_settled_atomic_total{route=\"echo\"} 3000")
    );
}

#[tokio::test]
async fn failed_upstream_calls_cost_nothing_and_the_payment_can_be_retried() {
    let f = fixture().await;
    let http = client();
    let buyer = f.buyer(1);
    let before = f.seller_balance().await;
    let header = f.pay_header(&buyer);

    let failed = http
        .get(f.url("/fail"))
        .header("payment-signature", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(
        failed.status(),
        500,
        "the upstream's status is passed through"
    );
    assert!(!failed.headers().contains_key("payment-response"));
    assert_eq!(failed.text().await.unwrap(), "upstream exploded");
    assert_eq!(f.seller_balance().await, before, "nothing moved");

    let retried = http
        .get(f.url("/ok"))
        .header("payment-signature", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(
        retried.status(),
        200,
        "the same authorization pays the retry"
    );
    assert_eq!(f.seller_balance().await - before, U256::from(PRICE));

    // The upstream goes down: 502, nothing charged; when it is back the retry works.
    let down = dead_url();
    install(
        &f.served.gateway,
        vec![route_for(&f.chain, f.seller, down, "echo")],
    );
    let header = f.pay_header(&buyer);
    let refused = http
        .get(f.url("/ok"))
        .header("payment-signature", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "upstream_failed");
    assert_eq!(f.seller_balance().await - before, U256::from(PRICE));
    install(
        &f.served.gateway,
        vec![route_for(
            &f.chain,
            f.seller,
            f.upstream.url.clone(),
            "echo",
        )],
    );
    let back = http
        .get(f.url("/ok"))
        .header("payment-signature", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(f.seller_balance().await - before, U256::from(2 * PRICE));
    assert_eq!(
        f.served
            .gateway
            .metrics()
            .get("echo", Outcome::UpstreamFailed),
        2
    );
}

#[tokio::test]
async fn the_same_header_sent_twice_at_once_buys_one_call() {
    let f = fixture().await;
    let http = client();
    let before = f.seller_balance().await;
    let header = f.pay_header(&f.buyer(1));
    let send = || {
        http.get(f.url("/slow"))
            .header("payment-signature", &header)
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 503],
        "the second copy is told to wait, not that it was refused (a 402 would make the buyer sign again)"
    );
    let waiting = if a.status() == 503 { a } else { b };
    assert_eq!(waiting.headers()["retry-after"], "1");
    let body: Value = waiting.json().await.unwrap();
    assert_eq!(body["reason"], "settlement_pending");
    let again = send().await.unwrap();
    assert_eq!(
        again.status(),
        402,
        "once the first copy was answered, the payment is spent"
    );
    assert_eq!(f.calls(), 1, "exactly one upstream call");
    assert_eq!(
        f.seller_balance().await - before,
        U256::from(PRICE),
        "one transfer"
    );
}

#[tokio::test]
async fn facilitator_down_gives_503_and_never_calls_the_upstream() {
    let f = fixture().await;
    let remote = HttpFacilitator::new(dead_url().as_str()).unwrap();
    let gateway = Gateway::new(
        GatewayConfig::default(),
        Arc::new(remote) as Arc<dyn Facilitator>,
    )
    .unwrap();
    install(&gateway, vec![f.served.gateway.routes()[0].clone()]);
    let served = support::Served::start(gateway).await;
    let before = f.seller_balance().await;
    let response = client()
        .get(format!("{}/services/echo/ok", served.url))
        .header("payment-signature", f.pay_header(&f.buyer(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "facilitator_unavailable");
    assert_eq!(f.calls(), 0, "zero upstream calls");
    assert_eq!(f.seller_balance().await, before);
}

#[tokio::test]
async fn bad_payment_headers_get_4xx_and_move_nothing() {
    let f = fixture().await;
    let http = client();
    let buyer = f.buyer(1);
    let requirement = f.requirement();
    let before = f.seller_balance().await;
    let sign = |edit: &dyn Fn(&mut x402::PaymentRequirements)| {
        let mut r = requirement.clone();
        edit(&mut r);
        pay::header(&buyer, &r)
    };
    let expired = {
        let payload = eip3009::authorize(&buyer, &requirement, unix_now() - 4000).unwrap();
        pay::encode(&requirement, payload)
    };
    let forged_signature = {
        let mut payload = pay::authorize(&f.buyer(2), &requirement);
        payload.authorization.from = buyer.address();
        pay::encode(&requirement, payload)
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not base64", "!!!".into(), 400, "invalid_base64"),
        ("not json", "aGVsbG8=".into(), 400, "invalid_json"),
        ("oversized", "A".repeat(20 * 1024), 400, "header_too_large"),
        (
            "wrong shape",
            x402::header::encode(&serde_json::json!({"x402Version": 2})).unwrap(),
            400,
            "invalid_payload",
        ),
        (
            "wrong network",
            sign(&|r| r.network = Network::Eip155(8453)),
            402,
            "invalid_network",
        ),
        (
            "wrong amount",
            sign(&|r| r.amount = U256::from(PRICE - 1)),
            402,
            "invalid_exact_evm_payload_authorization_value_mismatch",
        ),
        (
            "wrong payTo",
            sign(&|r| r.pay_to = buyer.address()),
            402,
            "invalid_exact_evm_payload_recipient_mismatch",
        ),
        (
            "expired",
            expired,
            402,
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "bad signature",
            forged_signature,
            402,
            "invalid_exact_evm_payload_signature",
        ),
    ];
    for (what, header, status, reason) in cases {
        let response = http
            .post(f.url("/echo"))
            .header("payment-signature", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        if status == 402 {
            assert!(
                response.headers().contains_key("payment-required"),
                "{what}"
            );
            assert_eq!(
                response.headers()["x-payment-invalid-reason"],
                reason,
                "{what}"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["extensions"]["paymentFailure"]["reason"], reason,
                "{what}"
            );
        } else {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "invalid_payment_header", "{what}");
            assert_eq!(body["reason"], reason, "{what}");
            assert!(body["hint"].as_str().unwrap().len() > 10, "{what}");
        }
    }
    let huge = http
        .get(f.url("/echo"))
        .header("x-filler", "x".repeat(512 * 1024))
        .send()
        .await;
    if let Ok(r) = huge {
        assert_eq!(
            r.status(),
            431,
            "an oversized header block is refused by the server"
        );
    }
    assert_eq!(f.calls(), 0);
    assert_eq!(f.seller_balance().await, before);
    let alive = http.get(f.url("/x")).send().await.unwrap();
    assert_eq!(alive.status(), 402, "still serving after all of it");
}

#[tokio::test]
async fn sse_chunks_reach_the_buyer_before_the_upstream_finishes() {
    let f = fixture().await;
    let before = f.seller_balance().await;
    let response = client()
        .post(f.url("/v1/chat/completions"))
        .header("payment-signature", f.pay_header(&f.buyer(1)))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        receipt(&response, "payment-response").success,
        "settled before the body"
    );
    assert_eq!(f.seller_balance().await - before, U256::from(PRICE));
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = Instant::now();
    assert!(String::from_utf8_lossy(&first).contains("token0"));
    assert!(
        f.upstream.state.stream_finished.lock().unwrap().is_none(),
        "the first chunk arrived while the upstream was still generating"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    let finished = f.upstream.state.stream_finished.lock().unwrap().unwrap();
    let gap = finished.duration_since(first_at);
    println!("first SSE chunk reached the buyer {gap:?} before the upstream finished");
    assert!(gap >= Duration::from_millis(500), "gap {gap:?}");
}

#[tokio::test]
async fn an_authorization_front_run_on_chain_still_buys_its_answer() {
    let f = fixture().await;
    let buyer = f.buyer(1);
    let requirement = f.requirement();
    let payload = pay::authorize(&buyer, &requirement);
    let header = pay::encode(&requirement, payload.clone());
    let before = f.seller_balance().await;
    let url = f.url("/hold");
    let request = tokio::spawn(async move {
        client()
            .get(url)
            .header("payment-signature", header)
            .send()
            .await
            .unwrap()
    });
    f.until_called().await;
    // While the upstream works, someone else submits the same authorization on chain.
    let token = IEip3009Token::new(
        requirement.asset,
        f.chain
            .provider_for(f.chain.accounts()[5].signer())
            .unwrap(),
    );
    let call = eip3009::settlement_call(&payload).unwrap();
    let front_run = token
        .transferWithAuthorization_0(
            call.from,
            call.to,
            call.value,
            call.validAfter,
            call.validBefore,
            call.nonce,
            call.v,
            call.r,
            call.s,
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .transaction_hash;
    f.upstream.state.release.notify_one();
    let response = request.await.unwrap();
    // The authorization pays this seller exactly once whoever submits it: the buyer
    // was charged, so the buyer is served, and nothing more moves.
    assert_eq!(response.status(), 200);
    let paid = receipt(&response, "payment-response");
    assert_eq!(paid, receipt(&response, "x-payment-response"));
    assert!(paid.success);
    assert_eq!(paid.payer, Some(buyer.address()));
    assert_eq!(paid.amount, Some(U256::from(PRICE)));
    assert_eq!(
        paid.transaction,
        Some(front_run),
        "the receipt names the transaction that moved the money, not the gateway's reverted one"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("held"), "the upstream's answer: {body}");
    assert_eq!(
        f.seller_balance().await - before,
        U256::from(PRICE),
        "only the outside transfer moved money, the gateway charged nothing more"
    );
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn limits_unavailable_routes_and_body_size_are_enforced() {
    let f = fixture_with(GatewayConfig {
        max_body_bytes: 1024,
        ..GatewayConfig::default()
    })
    .await;
    let http = client();
    let mut limited = route_for(&f.chain, f.seller, f.upstream.url.clone(), "echo");
    limited.limits = Limits {
        rps: Some(2),
        max_in_flight: None,
    };
    let mut paused = route_for(&f.chain, f.seller, f.upstream.url.clone(), "paused");
    paused.unavailable = Some("UpstreamHealthy is False: connection refused".into());
    install(&f.served.gateway, vec![limited, paused]);

    let big = http
        .post(f.url("/echo"))
        .header("payment-signature", f.pay_header(&f.buyer(1)))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..3).map(|_| http.get(f.url("/x")).send()))
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let unavailable = http
        .get(format!("{}/services/paused/x", f.served.url))
        .header("payment-signature", f.pay_header(&f.buyer(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.headers()["retry-after"], "30");
    assert!(
        unavailable
            .text()
            .await
            .unwrap()
            .contains("connection refused")
    );
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn shutdown_waits_for_an_in_flight_paid_call_to_settle() {
    let f = fixture().await;
    let before = f.seller_balance().await;
    let url = f.url("/hold");
    let header = f.pay_header(&f.buyer(1));
    let request = tokio::spawn(async move {
        client()
            .get(url)
            .header("payment-signature", header)
            .send()
            .await
            .unwrap()
    });
    f.until_called().await;
    let support::Fixture {
        served,
        upstream,
        chain,
        seller,
        ..
    } = f;
    let shutdown = tokio::spawn(served.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!shutdown.is_finished(), "shutdown waits for the paid call");
    upstream.state.release.notify_one();
    let response = request.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(receipt(&response, "payment-response").success);
    response.text().await.unwrap();
    shutdown.await.unwrap();
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - before,
        U256::from(PRICE)
    );
}
