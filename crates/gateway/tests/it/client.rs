//! `x402::client` paying agora's own gateway on a devnet, end to end (it lives here
//! because x402 cannot dev-depend on the gateway and testkit without a cycle): a paid
//! call with its receipt and the payee's balance checked on chain, the same signed
//! header refused once served, a pending settlement resumed with the same header and
//! charged once, SSE streamed, and each refusal moving no USDC.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use futures_util::StreamExt;
use gateway::GatewayConfig;
use serde_json::Value;
use support::{fixture, install, route_for, sell_echo};
use testkit::pay::PRICE;
use x402::client::{Answer, Client, ClientError, Outcome, Policy, Probe, Refusal, SignedPayment};

/// The devnet runs Base Sepolia's chain id with USDC at its real address, so the
/// known-USDC cap applies.
fn policy(max: u64) -> Policy {
    Policy::new(U256::from(max))
}

fn buyer_client(signer: PrivateKeySigner, max: u64) -> Client {
    Client::new(testkit::http(), signer, policy(max))
}

#[tokio::test]
async fn the_client_pays_the_gateway_once_and_a_resent_header_is_refused() {
    let f = fixture().await;
    let client = buyer_client(f.buyer(1), PRICE);
    let before = f.seller_balance().await;
    let request = client
        .http()
        .post(f.url("/hello"))
        .body("ping")
        .build()
        .unwrap();
    let Probe::PaymentRequired(challenge) = client
        .probe(client.http().post(f.url("/hello")).build().unwrap())
        .await
        .unwrap()
    else {
        panic!("expected a 402")
    };
    let shown = client.dry_run(&challenge).unwrap();
    assert_eq!(shown.choice.price.money.to_string(), "0.001");
    assert_eq!(shown.authorization.to, f.seller);
    assert_eq!(shown.header, "payment-signature");
    let mut recorded: Option<SignedPayment> = None;
    let answer = client
        .pay_recorded(request, |signed| {
            recorded = Some(signed.clone());
            Ok(())
        })
        .await
        .unwrap();
    let Answer::Delivered(delivered) = answer else {
        panic!("expected an answer, got {answer:?}")
    };
    let signed = recorded.unwrap();
    assert_eq!(
        delivered.signed, signed,
        "what was recorded is what was sent"
    );
    assert_eq!(delivered.response.status(), 200);
    let receipt = delivered.receipt.clone().unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.payer, Some(f.buyer(1).address()));
    let tx = receipt.transaction.unwrap();
    assert_eq!(delivered.charged_in(), Some(tx));
    testkit::chain::assert_succeeded(&f.chain, tx).await;
    let body: Value = delivered.response.json().await.unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["body"], "ping");
    assert_eq!(body["leakedPayment"], false);
    assert_eq!(f.seller_balance().await - before, U256::from(PRICE));
    assert_eq!(f.calls(), 1);

    // The same signed header again, after it was served: refused, nothing moves.
    let again = client
        .http()
        .post(f.url("/hello"))
        .body("ping")
        .build()
        .unwrap();
    let e = client.resume(again, &signed).await.unwrap_err();
    assert!(matches!(e, ClientError::Rejected { .. }), "{e}");
    assert!(!e.signed_nothing());
    assert_eq!(f.seller_balance().await - before, U256::from(PRICE), "{e}");
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn refusals_before_signing_and_a_402_after_paying_move_no_usdc() {
    let f = fixture().await;
    let before = f.seller_balance().await;

    let cheap = buyer_client(f.buyer(1), PRICE - 1);
    let request = cheap.http().get(f.url("/x")).build().unwrap();
    let e = cheap.pay(request).await.unwrap_err();
    assert!(matches!(e.refusal(), Some(Refusal::AboveMax { .. })), "{e}");
    assert!(e.signed_nothing());
    assert!(e.to_string().contains("per-call cap of 0.000999"), "{e}");

    let budget = Client::new(
        testkit::http(),
        f.buyer(1),
        policy(PRICE).with_budget(U256::from(PRICE - 1)),
    );
    let e = budget
        .pay(budget.http().get(f.url("/x")).build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(e.refusal(), Some(Refusal::AboveBudget { .. })),
        "{e}"
    );

    let elsewhere = Client::new(
        testkit::http(),
        f.buyer(1),
        policy(PRICE).allow_network(x402::Network::Eip155(8453)),
    );
    let e = elsewhere
        .pay(elsewhere.http().get(f.url("/x")).build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(e.refusal(), Some(Refusal::NetworkNotAllowed { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("is on base-sepolia, which is not allowed"),
        "{e}"
    );

    // A buyer with no USDC: the gateway answers 402 again, with its reason.
    let broke = buyer_client(PrivateKeySigner::random(), PRICE);
    let e = broke
        .pay(broke.http().get(f.url("/x")).build().unwrap())
        .await
        .unwrap_err();
    match &e {
        ClientError::Rejected { reason, .. } => {
            assert_eq!(reason.as_deref(), Some("insufficient_funds"), "{e}")
        }
        other => panic!("{other}"),
    }
    assert_eq!(f.seller_balance().await, before);
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn a_pay_to_that_changes_between_two_402s_is_refused() {
    let f = fixture().await;
    let client = buyer_client(f.buyer(1), PRICE);
    let before = f.seller_balance().await;
    let probe = client
        .probe(client.http().get(f.url("/x")).build().unwrap())
        .await
        .unwrap();
    let Probe::PaymentRequired(challenge) = probe else {
        panic!("expected a 402")
    };
    let signed = client.prepare(&challenge).unwrap();
    // The seller's route now pays someone else.
    let other = f.chain.accounts()[5].address();
    let other_before = f.chain.usdc_balance(other).await.unwrap();
    install(
        &f.served.gateway,
        vec![route_for(&f.chain, other, f.upstream.url.clone(), "echo")],
    );
    let e = client
        .send(client.http().get(f.url("/x")).build().unwrap(), &signed)
        .await
        .unwrap_err();
    match &e {
        ClientError::PayToChanged { signed: s, offered } => {
            assert_eq!(*s, f.seller);
            assert_eq!(offered, &vec![other]);
        }
        other => panic!("{other}"),
    }
    assert_eq!(f.seller_balance().await, before);
    assert_eq!(f.chain.usdc_balance(other).await.unwrap(), other_before);
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn sse_tokens_reach_the_caller_before_the_upstream_finishes() {
    let f = fixture().await;
    let client = buyer_client(f.buyer(2), PRICE);
    let request = client
        .http()
        .post(f.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","stream":true,"messages":[]}"#)
        .build()
        .unwrap();
    let Answer::Delivered(delivered) = client.pay(request).await.unwrap() else {
        panic!("expected an answer")
    };
    let mut stream = delivered.response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = Instant::now();
    assert!(String::from_utf8_lossy(&first).contains("token0"));
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    let finished = f.upstream.state.stream_finished.lock().unwrap().unwrap();
    let gap = finished.duration_since(first_at);
    println!("first SSE token reached the client {gap:?} before the upstream finished");
    assert!(gap >= Duration::from_millis(500), "gap {gap:?}");
}

#[tokio::test]
async fn a_pending_settlement_is_resumed_with_the_same_header_and_charged_once() {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config_via(&chain, chain.rpc_url(), db.path());
    config.receipt_timeout = Duration::from_millis(500);
    let facilitator = testkit::embedded::open(config).await;
    let gateway_config = GatewayConfig {
        ledger: Some(db.path().join("payments.db")),
        ..GatewayConfig::default()
    };
    let (_upstream, served) = sell_echo(&chain, facilitator, gateway_config).await;
    let seller = chain.accounts()[1].address();
    let before = chain.usdc_balance(seller).await.unwrap();
    let client = buyer_client(chain.accounts()[2].signer(), PRICE);
    let url = format!("{}/services/echo/ok", served.url);

    chain.set_automine(false).await.unwrap();
    let answer = client
        .pay(client.http().get(&url).build().unwrap())
        .await
        .unwrap();
    let Answer::Pending(pending) = answer else {
        panic!("expected pending, got {answer:?}")
    };
    assert_eq!(pending.reason.as_deref(), Some("settlement_pending"));
    assert!(pending.retry_after.is_some());
    let tx = pending
        .transaction
        .expect("the pending answer names the transaction");
    assert_eq!(chain.usdc_balance(seller).await.unwrap(), before);

    chain.set_automine(true).await.unwrap();
    chain.mine().await.unwrap();
    let outcome = client
        .resume(client.http().get(&url).build().unwrap(), &pending.signed)
        .await
        .unwrap();
    let Outcome::Delivered(delivered) = outcome else {
        panic!("expected the answer, got {outcome:?}")
    };
    assert_eq!(delivered.response.status(), 200);
    assert_eq!(delivered.charged_in(), Some(tx), "the original receipt");
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - before,
        U256::from(PRICE),
        "charged once"
    );
}
