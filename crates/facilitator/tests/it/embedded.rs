//! The embedded facilitator on a real devnet: every bad payment gets its reason and
//! moves no money, a good one settles exactly, 50 payers settle concurrently, a
//! settlement interrupted between broadcast and receipt is resolved from the journal,
//! a stuck settlement gets its fees raised by the resolver and still settles once,
//! only allowed tokens are settled under a gas cap, `/release` frees a reservation,
//! and the HTTP API answers malformed requests with 400.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use devnet::Devnet;
use facilitator::EmbeddedFacilitator;
use facilitator::store::SettlementStatus;
use x402::eip3009::{self, IEip3009Token};
use x402::time::unix_now;
use x402::{
    Authorization, ErrorReason, Facilitator, FacilitatorRequest, Network, PaymentRequirements,
};

const PRICE: u64 = 1000;

struct Fixture {
    chain: Devnet,
    facilitator: Arc<EmbeddedFacilitator>,
    seller: Address,
    _db: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let chain = testkit::chain::devnet(3).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = open(&chain, &db, Duration::from_secs(30)).await;
    let seller = chain.accounts()[1].address();
    Fixture {
        chain,
        facilitator,
        seller,
        _db: db,
    }
}

async fn open(
    chain: &Devnet,
    db: &tempfile::TempDir,
    receipt_timeout: Duration,
) -> Arc<EmbeddedFacilitator> {
    let mut config = testkit::embedded::config(chain, db.path());
    config.receipt_timeout = receipt_timeout;
    testkit::embedded::open(config).await
}

impl Fixture {
    fn requirement(&self) -> PaymentRequirements {
        testkit::pay::requirement(&self.chain, self.seller, 60)
    }

    fn buyer(&self) -> PrivateKeySigner {
        self.chain.accounts()[2].signer()
    }

    fn request(
        &self,
        requirement: &PaymentRequirements,
        signer: &PrivateKeySigner,
    ) -> FacilitatorRequest {
        testkit::pay::request(signer, requirement)
    }

    /// A payment signed for `requirement` with its authorization changed by `edit`.
    fn tampered(
        &self,
        requirement: &PaymentRequirements,
        edit: impl FnOnce(&mut Authorization),
    ) -> FacilitatorRequest {
        let mut request = self.request(requirement, &self.buyer());
        let mut auth = request.payment_payload.payload.authorization.clone();
        edit(&mut auth);
        let domain = eip3009::domain("USDC", "2", 84532, requirement.asset);
        request.payment_payload.payload =
            eip3009::sign_authorization(&self.buyer(), auth, &domain).unwrap();
        request
    }
}

fn wrap(requirement: &PaymentRequirements, payload: x402::ExactEvmPayload) -> FacilitatorRequest {
    FacilitatorRequest::v2(requirement, payload)
}

async fn verify_reason(f: &EmbeddedFacilitator, request: &FacilitatorRequest) -> String {
    let answer = f.verify(request).await.unwrap();
    assert!(!answer.is_valid, "expected a refusal");
    assert!(
        answer
            .invalid_message
            .as_deref()
            .is_some_and(|m| !m.is_empty())
    );
    answer.invalid_reason.unwrap()
}

async fn settle_reason(f: &EmbeddedFacilitator, request: &FacilitatorRequest) -> String {
    let answer = f.settle(request).await.unwrap();
    assert!(!answer.success, "expected a failed settlement");
    answer.error_reason.unwrap()
}

#[tokio::test]
async fn every_bad_payment_gets_its_reason_and_moves_no_money() {
    let fx = fixture().await;
    let f = &fx.facilitator;
    let req = fx.requirement();
    let seller_before = fx.chain.usdc_balance(fx.seller).await.unwrap();
    let buyer_before = fx.chain.usdc_balance(fx.buyer().address()).await.unwrap();
    let code = |r: ErrorReason| r.as_str().to_string();

    let mut wrong_name = req.clone();
    wrong_name.extra.as_mut().unwrap().name = Some("USD Coin".into());
    let signed_wrong_domain = wrap(
        &req,
        eip3009::authorize(&fx.buyer(), &wrong_name, unix_now()).unwrap(),
    );
    let seller_says_wrong_name = fx.request(&wrong_name, &fx.buyer());

    let mut other_chain = req.clone();
    other_chain.network = Network::Eip155(8453);
    let mut other_scheme = fx.request(&req, &fx.buyer());
    other_scheme.payment_requirements.scheme = "upto".into();
    other_scheme.payment_payload.scheme = "upto".into();
    let mut bad_signature = fx.request(&req, &fx.buyer());
    bad_signature.payment_payload.payload.signature = vec![7u8; 65].into();
    let poor = PrivateKeySigner::random();
    let now = unix_now();

    let cases: Vec<(&str, FacilitatorRequest, ErrorReason)> = vec![
        (
            "signed with the wrong domain name",
            signed_wrong_domain,
            ErrorReason::InvalidSignature,
        ),
        (
            "requirement names the wrong token name",
            seller_says_wrong_name,
            ErrorReason::TokenNameMismatch,
        ),
        (
            "a chain this facilitator does not serve",
            fx.request(&other_chain, &fx.buyer()),
            ErrorReason::InvalidNetwork,
        ),
        (
            "expired",
            fx.tampered(&req, |a| a.valid_before = U256::from(now + 3)),
            ErrorReason::ValidBefore,
        ),
        (
            "not yet valid",
            fx.tampered(&req, |a| a.valid_after = U256::from(now + 600)),
            ErrorReason::ValidAfter,
        ),
        (
            "wrong recipient",
            fx.tampered(&req, |a| a.to = Address::repeat_byte(9)),
            ErrorReason::RecipientMismatch,
        ),
        (
            "value above the amount",
            fx.tampered(&req, |a| a.value = U256::from(PRICE + 1)),
            ErrorReason::ValueMismatch,
        ),
        (
            "value below the amount",
            fx.tampered(&req, |a| a.value = U256::from(PRICE - 1)),
            ErrorReason::ValueMismatch,
        ),
        (
            "insufficient balance",
            fx.request(&req, &poor),
            ErrorReason::InsufficientFunds,
        ),
        (
            "bad signature",
            bad_signature,
            ErrorReason::InvalidSignature,
        ),
        (
            "unsupported scheme",
            other_scheme,
            ErrorReason::InvalidScheme,
        ),
    ];
    for (what, request, expected) in &cases {
        assert_eq!(
            verify_reason(f, request).await,
            code(*expected),
            "verify: {what}"
        );
        assert_eq!(
            settle_reason(f, request).await,
            code(*expected),
            "settle: {what}"
        );
    }

    let in_flight = fx.request(&req, &fx.buyer());
    assert!(f.verify(&in_flight).await.unwrap().is_valid);
    assert_eq!(
        verify_reason(f, &in_flight).await,
        code(ErrorReason::NonceAlreadyUsed),
        "verify while in flight"
    );
    f.release(&in_flight).await.unwrap();
    assert!(
        f.verify(&in_flight).await.unwrap().is_valid,
        "released authorizations can be retried"
    );

    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap(),
        seller_before
    );
    assert_eq!(
        fx.chain.usdc_balance(fx.buyer().address()).await.unwrap(),
        buyer_before
    );
    fx.chain.stop().await;
}

#[tokio::test]
async fn a_valid_payment_settles_exactly_once() {
    let fx = fixture().await;
    let f = &fx.facilitator;
    let req = fx.requirement();
    let request = fx.request(&req, &fx.buyer());
    let seller_before = fx.chain.usdc_balance(fx.seller).await.unwrap();

    let verified = f.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    assert_eq!(verified.payer, Some(fx.buyer().address()));
    let settled = f.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.amount, Some(U256::from(PRICE)));
    assert_eq!(settled.payer, Some(fx.buyer().address()));

    let provider = fx.chain.provider().unwrap();
    let receipt = provider
        .get_transaction_receipt(settled.transaction.unwrap())
        .await
        .unwrap()
        .unwrap();
    let transfer = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| IEip3009Token::Transfer::decode_log_data(l.data()).ok())
        .unwrap();
    assert_eq!(
        (transfer.from, transfer.to, transfer.value),
        (fx.buyer().address(), fx.seller, U256::from(PRICE))
    );
    let token = IEip3009Token::new(req.asset, &provider);
    let nonce = request.payment_payload.payload.authorization.nonce;
    assert!(
        token
            .authorizationState(fx.buyer().address(), nonce)
            .call()
            .await
            .unwrap()
    );
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap() - seller_before,
        U256::from(PRICE)
    );

    let already = ErrorReason::NonceAlreadyUsed.as_str();
    assert_eq!(verify_reason(f, &request).await, already);
    let again = f.settle(&request).await.unwrap();
    assert!(
        again.success && again.transaction == settled.transaction,
        "settling again answers the original receipt: {again:?}"
    );
    let mut other_terms = request.clone();
    other_terms.payment_requirements.pay_to = fx.chain.accounts()[0].address();
    assert_ne!(
        settle_reason(f, &other_terms).await,
        "",
        "a settled authorization under other terms is refused"
    );
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    fx.chain.stop().await;
}

#[tokio::test]
async fn fifty_payers_settle_concurrently_each_exactly_once() {
    let fx = fixture().await;
    let req = fx.requirement();
    let payers: Vec<PrivateKeySigner> = (0..50).map(|_| PrivateKeySigner::random()).collect();
    for payer in &payers {
        fx.chain
            .mint_usdc(payer.address(), U256::from(PRICE * 3))
            .await
            .unwrap();
    }
    let seller_before = fx.chain.usdc_balance(fx.seller).await.unwrap();
    let requests: Vec<FacilitatorRequest> = payers.iter().map(|p| fx.request(&req, p)).collect();
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let f = Arc::clone(&fx.facilitator);
            tokio::spawn(async move { f.settle(&request).await })
        })
        .collect();
    let mut hashes = std::collections::HashSet::new();
    for task in tasks {
        let answer = task.await.unwrap().unwrap();
        assert!(answer.success, "{answer:?}");
        assert!(hashes.insert(answer.transaction.unwrap()));
    }
    assert_eq!(hashes.len(), 50);
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap() - seller_before,
        U256::from(PRICE * 50)
    );
    for payer in &payers {
        assert_eq!(
            fx.chain.usdc_balance(payer.address()).await.unwrap(),
            U256::from(PRICE * 2)
        );
    }
    let journal = fx.facilitator.journal().unwrap();
    assert_eq!(journal.len(), 50);
    assert!(
        journal
            .iter()
            .all(|s| s.status == SettlementStatus::Confirmed)
    );
    fx.chain.stop().await;
}

#[tokio::test]
async fn a_settlement_interrupted_before_its_receipt_is_resolved_from_the_journal() {
    let fx = fixture().await;
    let db = tempfile::tempdir().unwrap();
    let impatient = open(&fx.chain, &db, Duration::from_millis(300)).await;
    let req = fx.requirement();
    let request = fx.request(&req, &fx.buyer());
    let seller_before = fx.chain.usdc_balance(fx.seller).await.unwrap();

    fx.chain.set_automine(false).await.unwrap();
    let answer = impatient.settle(&request).await.unwrap();
    assert!(!answer.success);
    assert_eq!(
        answer.error_reason.as_deref(),
        Some(ErrorReason::UnexpectedSettleError.as_str())
    );
    let hash: B256 = answer.transaction.expect("the broadcast hash is reported");
    let journal = impatient.journal().unwrap();
    assert_eq!(
        (journal[0].status, journal[0].tx_hash),
        (SettlementStatus::Sent, Some(hash))
    );
    drop(impatient);

    fx.chain.mine().await.unwrap();
    fx.chain.set_automine(true).await.unwrap();
    let restarted = open(&fx.chain, &db, Duration::from_secs(5)).await;
    let journal = restarted.journal().unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].status, SettlementStatus::Confirmed);
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    let again = restarted.settle(&request).await.unwrap();
    assert!(
        again.success && again.transaction == Some(hash),
        "the same authorization settled again answers the original receipt: {again:?}"
    );
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    fx.chain.stop().await;
}

#[tokio::test]
async fn http_api_serves_supported_and_refuses_malformed_requests() {
    let fx = fixture().await;
    let server = testkit::loopback::serve(facilitator::router(fx.facilitator.clone())).await;
    let base = server.url();
    let http = reqwest::Client::new();

    let supported: x402::Supported = http
        .get(format!("{base}/supported"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(supported.supports("exact", &Network::BASE_SEPOLIA));
    assert_eq!(
        supported.signers["eip155:*"],
        vec![fx.chain.accounts()[0].address().to_checksum(None)]
    );
    for body in ["{not json", "{\"x402Version\":2}", ""] {
        let answer = http
            .post(format!("{base}/verify"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{body:?}");
        let error: serde_json::Value = answer.json().await.unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("not an x402 facilitator request")
        );
    }
    let request = fx.request(&fx.requirement(), &fx.buyer());
    let verify: serde_json::Value = http
        .post(format!("{base}/verify"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["isValid"], true, "{verify}");
    let settle: serde_json::Value = http
        .post(format!("{base}/settle"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settle["success"], true, "{settle}");
    assert_eq!(settle["amount"], "1000");
    fx.chain.stop().await;
}

#[tokio::test]
async fn a_stuck_settlement_gets_its_fees_raised_and_settles_once() {
    let fx = fixture().await;
    let db = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(&fx.chain, db.path());
    config.receipt_timeout = Duration::from_millis(300);
    config.resolve_interval = Duration::from_millis(200);
    config.bump_after = Duration::from_secs(1);
    let f = EmbeddedFacilitator::open(config).await.unwrap();
    let request = fx.request(&fx.requirement(), &fx.buyer());
    let seller_before = fx.chain.usdc_balance(fx.seller).await.unwrap();

    fx.chain.set_automine(false).await.unwrap();
    let first = f.settle(&request).await.unwrap();
    assert!(!first.success);
    let original = first.transaction.expect("pending answers carry the hash");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let replaced = loop {
        let row = f.journal().unwrap().remove(0);
        if !row.prior_hashes.is_empty() {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the resolver never raised the fees"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(replaced.prior_hashes[0], original);
    assert_eq!(replaced.status, SettlementStatus::Sent);
    let bumped = replaced.tx_hash.unwrap();
    assert_ne!(bumped, original);

    fx.chain.set_automine(true).await.unwrap();
    fx.chain.mine().await.unwrap();
    let settled = f.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    let row = f.journal().unwrap().remove(0);
    assert_eq!(row.status, SettlementStatus::Confirmed);
    assert_eq!(
        settled.transaction, row.tx_hash,
        "the receipt names what mined"
    );
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap() - seller_before,
        U256::from(PRICE),
        "one transfer, whichever transaction carried it"
    );
    fx.chain.stop().await;
}

#[tokio::test]
async fn only_allowed_tokens_are_settled_and_gas_is_capped() {
    let fx = fixture().await;
    let mut other_token = fx.requirement();
    other_token.asset = Address::repeat_byte(0x42);
    let request = fx.request(&other_token, &fx.buyer());
    assert_eq!(
        verify_reason(&fx.facilitator, &request).await,
        ErrorReason::AssetNotAllowed.as_str()
    );
    let answer = fx.facilitator.verify(&request).await.unwrap();
    assert!(
        answer
            .invalid_message
            .unwrap()
            .contains("its operator can add it to the chain's allowed assets"),
        "the refusal says who can allow the token"
    );

    let db = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(&fx.chain, db.path());
    config.gas_limit_cap = 21_000;
    let stingy = EmbeddedFacilitator::open(config).await.unwrap();
    let seller_before = fx.chain.usdc_balance(fx.seller).await.unwrap();
    let request = fx.request(&fx.requirement(), &fx.buyer());
    let answer = stingy.settle(&request).await.unwrap();
    assert!(!answer.success);
    assert!(answer.transaction.is_none(), "nothing was sent");
    assert!(
        answer.error_message.unwrap().contains("cap of 21000"),
        "the refusal says why"
    );
    assert_eq!(
        fx.chain.usdc_balance(fx.seller).await.unwrap(),
        seller_before
    );
    fx.chain.stop().await;
}

#[tokio::test]
async fn release_over_http_frees_a_verified_authorization_at_once() {
    let fx = fixture().await;
    let server = testkit::loopback::serve(facilitator::router(fx.facilitator.clone())).await;
    let base = server.url();
    let remote = x402::HttpFacilitator::new(&base).unwrap();
    let request = fx.request(&fx.requirement(), &fx.buyer());

    assert!(remote.verify(&request).await.unwrap().is_valid);
    let held = remote.verify(&request).await.unwrap();
    assert!(!held.is_valid, "a verified authorization is reserved");
    remote.release(&request).await.unwrap();
    assert!(
        remote.verify(&request).await.unwrap().is_valid,
        "released: the buyer can retry without waiting out the reservation"
    );
    fx.chain.stop().await;
}
