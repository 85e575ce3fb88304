//! A free answer by spending your own nonce, tried as the buyer would on a devnet:
//! the buyer pays for a call to a slow upstream and, while the call is at the
//! upstream, cancels its authorization or spends the same nonce on a 1-unit transfer
//! to itself. The token then marks the nonce used although the seller was paid
//! nothing. The gateway must answer 402 `authorization_spent_elsewhere`, drop the
//! upstream's answer and move nothing, whether its facilitator is embedded or remote
//! over HTTP (the router `agora facilitator` serves); and a remote facilitator's bare
//! "nonce already used" is never read as charged.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use devnet::Devnet;
use facilitator::EmbeddedFacilitator;
use gateway::GatewayConfig;
use serde_json::Value;
use support::{Served, sell_echo};
use testkit::loopback::Server;
use testkit::spend::{Spend, spend};
use testkit::upstream::Recording;
use x402::facilitator::BoxFuture;
use x402::wire::{SettleResponse, Supported, VerifyResponse};
use x402::{
    ErrorReason, Facilitator, FacilitatorError, FacilitatorRequest, HttpFacilitator,
    PaymentRequirements,
};

/// How the gateway reaches its facilitator.
enum Via {
    /// In process.
    Embedded,
    /// Over HTTP, through the facilitator router that `agora facilitator` serves.
    Http,
    /// Through [`JournalLess`].
    JournalLess,
}

/// Accounts: 0 settles, 1 sells, 2 buys, 3 sends the buyer's own transactions.
struct Rig {
    chain: Devnet,
    upstream: Recording,
    served: Served,
    seller: Address,
    _facilitator: Arc<EmbeddedFacilitator>,
    _server: Option<Server>,
    _db: tempfile::TempDir,
}

async fn rig(via: Via) -> Rig {
    let chain = testkit::chain::devnet(4).await;
    let db = tempfile::tempdir().unwrap();
    let embedded = testkit::embedded::facilitator(&chain, db.path()).await;
    let mut server = None;
    let facilitator: Arc<dyn Facilitator> = match via {
        Via::Embedded => embedded.clone(),
        Via::Http => {
            let router = facilitator::router(embedded.clone() as Arc<dyn Facilitator>);
            let s = testkit::loopback::serve(router).await;
            let remote = Arc::new(HttpFacilitator::new(&s.url()).unwrap());
            server = Some(s);
            remote
        }
        Via::JournalLess => Arc::new(JournalLess(embedded.clone())),
    };
    let (upstream, served) = sell_echo(&chain, facilitator, GatewayConfig::default()).await;
    Rig {
        seller: chain.accounts()[1].address(),
        chain,
        upstream,
        served,
        _facilitator: embedded,
        _server: server,
        _db: db,
    }
}

impl Rig {
    fn requirement(&self) -> PaymentRequirements {
        self.served.gateway.routes()[0].accepts[0].clone()
    }

    async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }

    /// The buyer's paid call to the held upstream; while the upstream holds it, the
    /// buyer spends its own nonce `how`; then the upstream answers. Returns the
    /// gateway's answer, after checking the call reached the upstream.
    async fn pay_and_spend(&self, how: Spend) -> reqwest::Response {
        let buyer = self.chain.accounts()[2].signer();
        let requirement = self.requirement();
        let payload = testkit::pay::authorize(&buyer, &requirement);
        let nonce = payload.authorization.nonce;
        let header = testkit::pay::encode(&requirement, payload);
        let url = format!("{}/services/echo/hold", self.served.url);
        let call = tokio::spawn(async move {
            testkit::http()
                .get(url)
                .header("payment-signature", header)
                .send()
                .await
                .unwrap()
        });
        let upstream = &self.upstream;
        testkit::eventually(
            "the upstream to receive the paid call",
            std::time::Duration::from_secs(10),
            || async move { upstream.calls() == 1 },
        )
        .await;
        let sender = self.chain.accounts()[3].signer();
        spend(&self.chain, sender, &buyer, &requirement, nonce, how).await;
        self.upstream.state.release.notify_one();
        call.await.unwrap()
    }
}

/// The buyer's 402: not charged, not served, and told why.
async fn assert_spent_elsewhere(response: reqwest::Response) {
    assert_eq!(response.status(), 402, "not served");
    assert_eq!(
        response.headers()["x-payment-invalid-reason"],
        ErrorReason::AuthorizationSpentElsewhere.as_str()
    );
    assert!(
        !response.headers().contains_key("payment-response"),
        "no receipt: nothing was charged"
    );
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("held"),
        "the upstream's answer is dropped: {body}"
    );
    let challenge: Value = serde_json::from_str(&body).unwrap();
    assert!(
        challenge
            .to_string()
            .contains("authorization_spent_elsewhere"),
        "{challenge}"
    );
}

async fn spent_mid_call_is_refused(via: Via, how: Spend) {
    let rig = rig(via).await;
    let before = rig.seller_balance().await;
    let response = rig.pay_and_spend(how).await;
    assert_spent_elsewhere(response).await;
    assert_eq!(
        rig.seller_balance().await,
        before,
        "the payee gained nothing"
    );
    assert_eq!(rig.upstream.calls(), 1);
    rig.chain.stop().await;
}

#[tokio::test]
async fn a_buyer_who_cancels_its_authorization_mid_call_gets_a_402_and_no_answer() {
    spent_mid_call_is_refused(Via::Embedded, Spend::Cancel).await;
}

#[tokio::test]
async fn a_buyer_who_spends_its_nonce_on_itself_mid_call_gets_a_402_and_no_answer() {
    spent_mid_call_is_refused(Via::Embedded, Spend::SelfTransfer).await;
}

#[tokio::test]
async fn through_a_remote_facilitator_over_http_a_nonce_spent_mid_call_gets_a_402() {
    spent_mid_call_is_refused(Via::Http, Spend::Cancel).await;
    spent_mid_call_is_refused(Via::Http, Spend::SelfTransfer).await;
}

/// Verifies with the embedded facilitator, but settles like a facilitator that keeps
/// no journal and answers a used nonce with a bare "nonce already used" and no
/// transaction (a third-party facilitator's answer; agora's own no longer gives it).
struct JournalLess(Arc<EmbeddedFacilitator>);

impl Facilitator for JournalLess {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.0.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(std::future::ready(Ok(SettleResponse {
            success: false,
            error_reason: Some(ErrorReason::NonceAlreadyUsed.as_str().to_string()),
            error_message: Some("the nonce was already used".into()),
            payer: Some(request.payment_payload.payload.authorization.from),
            transaction: None,
            network: request.payment_requirements.network.clone(),
            amount: None,
            extensions: None,
        })))
    }

    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>> {
        self.0.supported()
    }
}

#[tokio::test]
async fn a_bare_nonce_already_used_from_a_remote_facilitator_is_never_read_as_charged_test_double()
{
    let rig = rig(Via::JournalLess).await;
    let before = rig.seller_balance().await;
    let response = rig.pay_and_spend(Spend::Cancel).await;
    assert_eq!(
        response.status(),
        503,
        "not known, so not served (and not told \"not charged\")"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "settlement_pending", "{body}");
    assert!(!body.to_string().contains("held"), "{body}");
    assert_eq!(rig.seller_balance().await, before);
    rig.chain.stop().await;
}
