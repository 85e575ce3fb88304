//! One payment buys one request's answer (issue 21, H3 and H4), attacked as a buyer
//! would on a devnet: a payment redeems only the request it paid for, a stream the
//! buyer hung up on is delivered once the upstream finished it, redemptions are
//! capped, and a settle-first route is paid on chain before its upstream is called.
//!
//! Real anvil, real embedded facilitator, real HTTP between every piece. The one
//! wrapper (`EmptiesWalletAfterVerify`) delegates to the real facilitator and only
//! adds the buyer's own on-chain transfer at the moment a hostile buyer would send it.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::DynProvider;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devnet::Devnet;
use facilitator::EmbeddedFacilitator;
use futures_util::StreamExt;
use gateway::guard::Stage;
use gateway::{Gateway, GatewayConfig};
use serde_json::json;
use support::{Served, install, route_for};
use testkit::loopback::Server;
use testkit::pay::{self, PRICE, Signed};
use x402::eip3009::{AuthorizationKey, IEip3009Token};
use x402::facilitator::BoxFuture;
use x402::wire::{SettleResponse, Supported, VerifyResponse};
use x402::{Facilitator, FacilitatorError, FacilitatorRequest, PaymentRequirements};

alloy::sol! {
    #[sol(rpc)]
    interface IErc20 {
        function transfer(address to, uint256 value) external returns (bool);
    }
}

const BOUND: &str = "payment_bound_to_another_request";

fn reason(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-payment-invalid-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn receipt(response: &reqwest::Response) -> SettleResponse {
    let value = response.headers()["payment-response"].to_str().unwrap();
    x402::header::decode(value).unwrap()
}

fn key(chain: &Devnet, requirement: &PaymentRequirements, signed: &Signed) -> AuthorizationKey {
    AuthorizationKey {
        chain_id: chain.network().chain_id().unwrap(),
        asset: requirement.asset,
        payer: signed.payer,
        nonce: signed.nonce,
    }
}

async fn send(url: &str, header: &str, body: &str) -> reqwest::Response {
    testkit::http()
        .post(url)
        .header("payment-signature", header)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Sends until the payment is no longer in use by an earlier request (503
/// `payment_in_use` while the gateway still holds it).
async fn send_when_free(url: &str, header: &str, body: &str) -> reqwest::Response {
    for _ in 0..300 {
        let response = send(url, header, body).await;
        if response.status() != 503 {
            return response;
        }
        let text = response.text().await.unwrap();
        if !text.contains("payment_in_use") && !text.contains("settlement_pending") {
            panic!("unexpected 503: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the payment stayed in use");
}

/// A devnet with the embedded facilitator, a gateway serving `routes` built by
/// `make` (paid to account 1), and the facilitator's directory.
struct Rig {
    chain: Devnet,
    facilitator: Arc<EmbeddedFacilitator>,
    served: Served,
    seller: Address,
    _db: tempfile::TempDir,
}

impl Rig {
    async fn start(
        chain: Devnet,
        facilitator: Arc<EmbeddedFacilitator>,
        gate: Arc<dyn Facilitator>,
        db: tempfile::TempDir,
        upstream: reqwest::Url,
        settle_first: bool,
    ) -> Self {
        let seller = chain.accounts()[1].address();
        let gateway = Gateway::new(GatewayConfig::default(), gate).unwrap();
        let mut route = route_for(&chain, seller, upstream, "job");
        route.settle_first = settle_first;
        install(&gateway, vec![route]);
        Self {
            served: Served::start(gateway).await,
            chain,
            facilitator,
            seller,
            _db: db,
        }
    }

    fn requirement(&self) -> PaymentRequirements {
        self.served.gateway.routes()[0].accepts[0].clone()
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/services/job{rest}", self.served.url)
    }

    async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }
}

// ---------------------------------------------------------------------------------
// H3: streams

#[tokio::test]
async fn a_stream_the_buyer_hung_up_on_is_delivered_once_the_upstream_finished_it() {
    let f = support::fixture().await;
    let requirement = f.requirement();
    let signed = pay::sign(&f.buyer(1), &requirement);
    let key = key(&f.chain, &requirement, &signed);
    let first = f.url("/v1/chat/completions?q=first");
    let body = r#"{"stream":true}"#;

    let response = send(&first, &signed.header, body).await;
    assert_eq!(response.status(), 200);
    let mut events = response.bytes_stream();
    let event = events.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&event).contains("token0"));
    drop(events); // the buyer hangs up after the first event

    // Another prompt with the same header, while the stream is still running and
    // after it ended: never an answer.
    let second = f.url("/v1/chat/completions?q=second");
    let during = send(&second, &signed.header, body).await;
    assert_ne!(during.status(), 200, "{:?}", during.text().await);
    testkit::eventually(
        "the stream to count as delivered at the upstream's end",
        Duration::from_secs(15),
        || async { f.served.gateway.payment_stage(&key) == Some(Stage::Served) },
    )
    .await;
    assert!(f.upstream.state.stream_finished.lock().unwrap().is_some());
    let after = send(&second, &signed.header, body).await;
    assert_eq!(after.status(), 402);
    let again = send(&first, &signed.header, body).await;
    assert_eq!(again.status(), 402, "the original request was delivered");
    assert_eq!(f.calls(), 1, "the upstream answered one prompt, once");
}

#[tokio::test]
async fn a_buyer_who_left_a_stream_before_it_started_gets_it_for_the_same_request() {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(&chain, db.path());
    config.receipt_timeout = Duration::from_secs(20);
    let facilitator = testkit::embedded::open(config).await;
    let upstream = testkit::upstream::recording().await;
    let rig = Rig::start(
        chain,
        facilitator.clone(),
        facilitator,
        db,
        upstream.url.clone(),
        false,
    )
    .await;
    let header = pay::header(&rig.chain.accounts()[2].signer(), &rig.requirement());
    let url = rig.url("/v1/chat/completions?q=first");
    let body = r#"{"stream":true}"#;

    // The buyer hangs up while the settlement waits for a block: no byte of the
    // stream was sent to it.
    rig.chain.set_automine(false).await.unwrap();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(&url)
        .header("payment-signature", &header)
        .body(body)
        .send()
        .await;
    assert!(gave_up.is_err());
    rig.chain.set_automine(true).await.unwrap();
    rig.chain.mine().await.unwrap();

    let other = send_when_free(&rig.url("/v1/chat/completions?q=second"), &header, body).await;
    assert_eq!(reason(&other), BOUND);
    let same = send_when_free(&url, &header, body).await;
    assert_eq!(same.status(), 200);
    let text = same.text().await.unwrap();
    assert!(text.contains("[DONE]"), "the whole stream: {text}");
    assert_eq!(upstream.calls(), 2);
    assert_eq!(rig.facilitator.journal().unwrap().len(), 1, "charged once");
}

/// An SSE upstream that sends one event and then breaks the connection, counting
/// its calls.
async fn breaking_stream() -> (Server, Arc<AtomicUsize>) {
    async fn answer(State(calls): State<Arc<AtomicUsize>>) -> Response {
        calls.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(2);
        tokio::spawn(async move {
            let _ = tx.send(Ok("data: {\"delta\":\"first\"}\n\n".into())).await;
            // The event reaches the buyer before the model crashes.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx
                .send(Err(std::io::Error::other("the model crashed")))
                .await;
        });
        let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(events))
            .unwrap()
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().fallback(answer).with_state(calls.clone());
    (testkit::loopback::serve(app).await, calls)
}

#[tokio::test]
async fn a_stream_the_upstream_broke_redeems_only_its_own_request_three_times() {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let (upstream, calls) = breaking_stream().await;
    let rig = Rig::start(
        chain,
        facilitator.clone(),
        facilitator,
        db,
        upstream.parsed_url(),
        false,
    )
    .await;
    let signed = pay::sign(&rig.chain.accounts()[2].signer(), &rig.requirement());
    let before = rig.seller_balance().await;
    let first = rig.url("/v1/chat/completions?q=first");
    let body = r#"{"stream":true}"#;

    let broken = send(&first, &signed.header, body).await;
    assert_eq!(broken.status(), 200);
    assert!(broken.bytes().await.is_err(), "the stream broke off");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let other = send_when_free(
        &rig.url("/v1/chat/completions?q=second"),
        &signed.header,
        body,
    )
    .await;
    assert_eq!(other.status(), 402);
    assert_eq!(reason(&other), BOUND);
    let text = other.text().await.unwrap();
    assert!(
        text.contains("sign a new payment for this request")
            && text.contains("resend the original request"),
        "{text}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not called for it");

    for n in 1..=3 {
        let redeemed = send_when_free(&first, &signed.header, body).await;
        assert_eq!(redeemed.status(), 200, "redemption {n}");
        assert!(receipt(&redeemed).success, "with the original receipt");
        let _ = redeemed.bytes().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1 + n);
    }
    let capped = send_when_free(&first, &signed.header, body).await;
    assert_eq!(capped.status(), 402, "redemptions are capped");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        rig.seller_balance().await - before,
        U256::from(PRICE),
        "charged once"
    );
}

// ---------------------------------------------------------------------------------
// H3: whole answers

#[tokio::test]
async fn a_payment_whose_answer_never_reached_the_buyer_redeems_only_the_same_body() {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(&chain, db.path());
    config.receipt_timeout = Duration::from_secs(20);
    let facilitator = testkit::embedded::open(config).await;
    let upstream = testkit::upstream::recording().await;
    let rig = Rig::start(
        chain,
        facilitator.clone(),
        facilitator.clone(),
        db,
        upstream.url.clone(),
        false,
    )
    .await;
    let header = pay::header(&rig.chain.accounts()[2].signer(), &rig.requirement());
    let before = rig.seller_balance().await;
    let url = rig.url("/v1/answer");

    // The buyer hangs up while the settlement waits for a block.
    rig.chain.set_automine(false).await.unwrap();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(&url)
        .header("payment-signature", &header)
        .body(r#"{"prompt":"first"}"#)
        .send()
        .await;
    assert!(gave_up.is_err());
    assert_eq!(upstream.calls(), 1);
    rig.chain.set_automine(true).await.unwrap();
    rig.chain.mine().await.unwrap();

    let other = send_when_free(&url, &header, r#"{"prompt":"second"}"#).await;
    assert_eq!(other.status(), 402, "{:?}", other.text().await);
    assert_eq!(reason(&other), BOUND);
    assert_eq!(upstream.calls(), 1, "not called for another body");

    let same = send_when_free(&url, &header, r#"{"prompt":"first"}"#).await;
    assert_eq!(same.status(), 200);
    assert!(receipt(&same).success);
    let answer: serde_json::Value = same.json().await.unwrap();
    assert_eq!(answer["body"], r#"{"prompt":"first"}"#);
    assert_eq!(upstream.calls(), 2);
    assert_eq!(rig.facilitator.journal().unwrap().len(), 1);
    assert_eq!(rig.seller_balance().await - before, U256::from(PRICE));
}

// ---------------------------------------------------------------------------------
// H4: settle-first

/// An upstream that looks at the seller's balance on chain when it is called, and
/// fails its first call at `/flaky`.
struct Ledgered {
    calls: AtomicUsize,
    balances: std::sync::Mutex<Vec<U256>>,
    token: IEip3009Token::IEip3009TokenInstance<DynProvider>,
    seller: Address,
}

async fn ledgered(chain: &Devnet) -> (Server, Arc<Ledgered>) {
    async fn answer(State(seen): State<Arc<Ledgered>>, request: Request) -> Response {
        let n = seen.calls.fetch_add(1, Ordering::SeqCst);
        let balance = seen.token.balanceOf(seen.seller).call().await.unwrap();
        seen.balances.lock().unwrap().push(balance);
        if request.uri().path() == "/flaky" && n == 0 {
            return (StatusCode::INTERNAL_SERVER_ERROR, "out of GPU memory").into_response();
        }
        axum::Json(json!({"ok": true, "path": request.uri().path()})).into_response()
    }
    let seen = Arc::new(Ledgered {
        calls: AtomicUsize::new(0),
        balances: Default::default(),
        token: IEip3009Token::new(chain.usdc().address, chain.provider().unwrap()),
        seller: chain.accounts()[1].address(),
    });
    let app = Router::new().fallback(answer).with_state(seen.clone());
    (testkit::loopback::serve(app).await, seen)
}

#[tokio::test]
async fn a_settle_first_route_is_paid_on_chain_before_its_upstream_is_called() {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let (upstream, seen) = ledgered(&chain).await;
    let rig = Rig::start(
        chain,
        facilitator.clone(),
        facilitator,
        db,
        upstream.parsed_url(),
        true,
    )
    .await;
    let before = rig.seller_balance().await;
    let header = pay::header(&rig.chain.accounts()[2].signer(), &rig.requirement());
    let response = send(&rig.url("/run"), &header, "{}").await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(
        seen.balances.lock().unwrap().as_slice(),
        [before + U256::from(PRICE)],
        "the upstream was called after the transfer was on chain"
    );
}

#[tokio::test]
async fn a_settle_first_upstream_that_failed_is_answered_later_for_the_same_request_and_header() {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let (upstream, seen) = ledgered(&chain).await;
    let rig = Rig::start(
        chain,
        facilitator.clone(),
        facilitator,
        db,
        upstream.parsed_url(),
        true,
    )
    .await;
    let before = rig.seller_balance().await;
    let header = pay::header(&rig.chain.accounts()[2].signer(), &rig.requirement());
    let url = rig.url("/flaky");

    let failed = send(&url, &header, r#"{"run":1}"#).await;
    assert_eq!(failed.status(), 503);
    let paid = receipt(&failed);
    let text = failed.text().await.unwrap();
    assert!(
        text.contains("resend the same request") && text.contains("same payment header"),
        "{text}"
    );
    assert_eq!(rig.seller_balance().await - before, U256::from(PRICE));

    let other = send(&url, &header, r#"{"run":2}"#).await;
    assert_eq!(other.status(), 402);
    assert_eq!(reason(&other), BOUND);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);

    let answered = send(&url, &header, r#"{"run":1}"#).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(
        receipt(&answered).transaction,
        paid.transaction,
        "the original receipt"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        rig.facilitator.journal().unwrap().len(),
        1,
        "one settlement"
    );
    assert_eq!(
        rig.seller_balance().await - before,
        U256::from(PRICE),
        "no second transfer"
    );
    assert_eq!(send(&url, &header, r#"{"run":1}"#).await.status(), 402);
}

/// The real facilitator, plus the hostile buyer's move: right after the payment is
/// verified, the buyer sends its whole balance to another of its addresses.
struct EmptiesWalletAfterVerify {
    inner: Arc<EmbeddedFacilitator>,
    buyer: IErc20::IErc20Instance<DynProvider>,
    buyer_address: Address,
    chain_token: IEip3009Token::IEip3009TokenInstance<DynProvider>,
    elsewhere: Address,
}

impl Facilitator for EmptiesWalletAfterVerify {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            let verified = self.inner.verify(request).await?;
            if verified.is_valid {
                let all = self
                    .chain_token
                    .balanceOf(self.buyer_address)
                    .call()
                    .await
                    .unwrap();
                self.buyer
                    .transfer(self.elsewhere, all)
                    .send()
                    .await
                    .unwrap()
                    .get_receipt()
                    .await
                    .unwrap();
            }
            Ok(verified)
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.inner.settle(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>> {
        self.inner.supported()
    }

    fn release<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        self.inner.release(request)
    }
}

#[tokio::test]
async fn a_buyer_who_empties_the_wallet_after_verify_gets_402_and_a_settle_first_upstream_is_never_called()
 {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let buyer = chain.accounts()[2].signer();
    let elsewhere = chain.accounts()[3].address();
    let hostile = Arc::new(EmptiesWalletAfterVerify {
        inner: facilitator.clone(),
        buyer: IErc20::new(
            chain.usdc().address,
            chain.provider_for(buyer.clone()).unwrap(),
        ),
        buyer_address: buyer.address(),
        chain_token: IEip3009Token::new(chain.usdc().address, chain.provider().unwrap()),
        elsewhere,
    });
    let (upstream, seen) = ledgered(&chain).await;
    let rig = Rig::start(chain, facilitator, hostile, db, upstream.parsed_url(), true).await;
    let before = rig.seller_balance().await;
    let header = pay::header(&buyer, &rig.requirement());
    let response = send(&rig.url("/run"), &header, "{}").await;
    assert_eq!(response.status(), 402, "{:?}", response.text().await);
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        0,
        "the upstream never ran"
    );
    assert_eq!(rig.seller_balance().await, before, "nothing was paid");
}
