//! "The nonce is used" is not "the seller was paid": the embedded facilitator on a
//! real devnet, attacked by a buyer who spends its own authorization between verify
//! and settle, by cancelling it or by spending the same nonce on a 1-unit transfer to
//! itself. Such a settlement is refused as `authorization_spent_elsewhere` and moves
//! nothing, alone, in a batch (its batch-mates still pay), and when the token had
//! used the nonce before the settle was even sent; while an outside transaction that
//! submits the buyer's own authorization (a front-run) still counts as paid. Also
//! here: a repeated settle whose journal cannot be read, or has lost its row, is "not
//! known yet" (an error, 503 over HTTP), never "not charged" nor "nonce used"; and a
//! batch member that definitely failed is answered as decided, without a
//! transaction a gateway would read as pending.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use devnet::Devnet;
use facilitator::store::SettlementStatus;
use facilitator::{BatchConfig, EmbeddedFacilitator, MULTICALL3};
use testkit::pay::PRICE;
use testkit::spend::{Spend, spend};
use x402::eip3009::{self, IEip3009Token};
use x402::{ErrorReason, Facilitator, FacilitatorRequest, PaymentRequirements, SettleResponse};

const SPENT: &str = "authorization_spent_elsewhere";

struct Fixture {
    chain: Devnet,
    facilitator: Arc<EmbeddedFacilitator>,
    seller: Address,
    requirement: PaymentRequirements,
    dir: tempfile::TempDir,
}

/// Accounts: 0 settles, 1 sells, 2 buys, 3 sends the buyer's own transactions.
async fn fixture(batch: BatchConfig, receipt_timeout: Duration) -> Fixture {
    let chain = testkit::chain::devnet(4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(&chain, dir.path());
    config.batch = batch;
    config.receipt_timeout = receipt_timeout;
    let facilitator = testkit::embedded::open(config).await;
    let seller = chain.accounts()[1].address();
    let requirement = testkit::pay::requirement(&chain, seller, 600);
    Fixture {
        chain,
        facilitator,
        seller,
        requirement,
        dir,
    }
}

impl Fixture {
    fn buyer(&self) -> PrivateKeySigner {
        self.chain.accounts()[2].signer()
    }

    /// The buyer spends `request`'s nonce itself, `how`.
    async fn spend(&self, buyer: &PrivateKeySigner, request: &FacilitatorRequest, how: Spend) {
        let nonce = request.payment_payload.payload.authorization.nonce;
        let sender = self.chain.accounts()[3].signer();
        spend(&self.chain, sender, buyer, &self.requirement, nonce, how).await;
    }

    async fn seller_balance(&self) -> U256 {
        self.chain.usdc_balance(self.seller).await.unwrap()
    }

    /// Waits until every one of `requests` has its transaction journaled as sent.
    async fn until_sent(&self, requests: &[FacilitatorRequest]) {
        testkit::until(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                let journal = self.facilitator.journal().unwrap();
                let unsent = requests
                    .iter()
                    .filter(|r| {
                        let nonce = r.payment_payload.payload.authorization.nonce;
                        !journal
                            .iter()
                            .any(|row| row.nonce == nonce && row.status == SettlementStatus::Sent)
                    })
                    .count();
                if unsent == 0 {
                    Ok(())
                } else {
                    Err(format!("{unsent} settlements not sent yet"))
                }
            },
        )
        .await;
    }

    fn row(&self, request: &FacilitatorRequest) -> facilitator::store::Settlement {
        let nonce = request.payment_payload.payload.authorization.nonce;
        self.facilitator
            .journal()
            .unwrap()
            .into_iter()
            .rfind(|row| row.nonce == nonce)
            .unwrap()
    }
}

/// A decided refusal: not charged, no transaction a gateway would read as pending.
fn assert_spent_elsewhere(answer: &SettleResponse) {
    assert!(!answer.success, "never reported as charged: {answer:?}");
    assert_eq!(answer.error_reason.as_deref(), Some(SPENT), "{answer:?}");
    assert_eq!(answer.transaction, None, "a decided failure: {answer:?}");
}

async fn spent_between_verify_and_settle(how: Spend) {
    let fx = fixture(BatchConfig::OFF, Duration::from_secs(30)).await;
    let buyer = fx.buyer();
    let request = testkit::pay::request(&buyer, &fx.requirement);
    let before = fx.seller_balance().await;
    let verified = fx.facilitator.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");

    // While the seller's service works, the buyer spends its own nonce.
    fx.spend(&buyer, &request, how).await;
    let answer = fx.facilitator.settle(&request).await.unwrap();
    assert_spent_elsewhere(&answer);
    assert_eq!(fx.seller_balance().await, before, "the seller got nothing");
    assert_eq!(fx.row(&request).status, SettlementStatus::Failed);

    // Settling the same authorization again gives the same answer, and moves nothing.
    let again = fx.facilitator.settle(&request).await.unwrap();
    assert_spent_elsewhere(&again);
    assert_eq!(fx.seller_balance().await, before);
    fx.chain.stop().await;
}

#[tokio::test]
async fn an_authorization_cancelled_between_verify_and_settle_is_spent_elsewhere_not_charged() {
    spent_between_verify_and_settle(Spend::Cancel).await;
}

#[tokio::test]
async fn a_nonce_spent_on_a_self_transfer_between_verify_and_settle_is_not_charged() {
    spent_between_verify_and_settle(Spend::SelfTransfer).await;
}

/// Without a live reservation (it expired during a long call) the settle estimates
/// first, and the token's "nonce used" comes from the diagnosis, before anything of
/// ours is sent: the same rule decides.
#[tokio::test]
async fn a_nonce_used_before_the_settle_is_sent_is_judged_by_its_transfer() {
    let fx = fixture(BatchConfig::OFF, Duration::from_secs(30)).await;
    let buyer = fx.buyer();
    let before = fx.seller_balance().await;

    let spent = testkit::pay::request(&buyer, &fx.requirement);
    fx.spend(&buyer, &spent, Spend::SelfTransfer).await;
    assert_spent_elsewhere(&fx.facilitator.settle(&spent).await.unwrap());
    let cancelled = testkit::pay::request(&buyer, &fx.requirement);
    fx.spend(&buyer, &cancelled, Spend::Cancel).await;
    assert_spent_elsewhere(&fx.facilitator.settle(&cancelled).await.unwrap());
    assert_eq!(fx.seller_balance().await, before);

    // Someone else submits the buyer's authorization itself: the seller was paid by
    // that transaction, and the answer names it.
    let front_run = testkit::pay::request(&buyer, &fx.requirement);
    let call = eip3009::settlement_call(&front_run.payment_payload.payload).unwrap();
    let outsider = fx
        .chain
        .provider_for(fx.chain.accounts()[3].signer())
        .unwrap();
    let by = IEip3009Token::new(fx.requirement.asset, outsider)
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
    let answer = fx.facilitator.settle(&front_run).await.unwrap();
    assert!(answer.success, "{answer:?}");
    assert_eq!(answer.transaction, Some(by));
    assert_eq!(fx.seller_balance().await - before, U256::from(PRICE));
    fx.chain.stop().await;
}

#[tokio::test]
async fn a_batched_member_spent_elsewhere_is_not_charged_while_its_batch_mates_are() {
    let batch = BatchConfig {
        max_size: 32,
        max_wait: Duration::from_millis(300),
    };
    let fx = fixture(batch, Duration::from_secs(30)).await;
    let mut requests = Vec::new();
    let mut payers = Vec::new();
    for _ in 0..12 {
        let payer = PrivateKeySigner::random();
        fx.chain
            .mint_usdc(payer.address(), U256::from(PRICE))
            .await
            .unwrap();
        let request = testkit::pay::request(&payer, &fx.requirement);
        assert!(fx.facilitator.verify(&request).await.unwrap().is_valid);
        requests.push(request);
        payers.push(payer);
    }
    // Two leaders will fill the transactions the sender keeps in flight while blocks
    // stop, so the twelve queue behind them and leave together as a batch. (Minted
    // now: the mints and the facilitator share account 0's nonce.)
    let mut leaders = Vec::new();
    for _ in 0..2 {
        let payer = PrivateKeySigner::random();
        fx.chain
            .mint_usdc(payer.address(), U256::from(PRICE))
            .await
            .unwrap();
        leaders.push(testkit::pay::request(&payer, &fx.requirement));
    }
    // Two members spend their own nonces after verify, one each way; a third can no
    // longer pay (its funds left), a failure that is not "spent elsewhere".
    let (cancelled, self_paid, broke) = (5, 6, 7);
    fx.spend(&payers[cancelled], &requests[cancelled], Spend::Cancel)
        .await;
    fx.spend(
        &payers[self_paid],
        &requests[self_paid],
        Spend::SelfTransfer,
    )
    .await;
    let drain = testkit::pay::request(&payers[broke], &fx.requirement);
    assert!(fx.facilitator.settle(&drain).await.unwrap().success);

    let before = fx.seller_balance().await;
    fx.chain.set_automine(false).await.unwrap();
    let settle_all = |requests: Vec<FacilitatorRequest>| {
        requests
            .into_iter()
            .map(|request| {
                let f = fx.facilitator.clone();
                tokio::spawn(async move { f.settle(&request).await.unwrap() })
            })
            .collect::<Vec<_>>()
    };
    let led = settle_all(leaders.clone());
    fx.until_sent(&leaders).await;
    let tasks = settle_all(requests.clone());
    fx.until_sent(&requests).await;
    fx.chain.mine().await.unwrap();
    fx.chain.set_automine(true).await.unwrap();
    for task in led {
        let answer = task.await.unwrap();
        assert!(answer.success, "a leader: {answer:?}");
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    let provider = fx.chain.provider().unwrap();
    for (i, answer) in answers.iter().enumerate() {
        if i == cancelled || i == self_paid {
            assert_spent_elsewhere(answer);
            let row = fx.row(&requests[i]);
            assert_eq!(row.status, SettlementStatus::Failed);
            let mined = row.tx_hash.expect("it went out in a transaction");
            let receipt = provider
                .get_transaction_receipt(mined)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                receipt.to,
                Some(MULTICALL3),
                "member {i} was judged inside a batch"
            );
        } else if i == broke {
            assert!(!answer.success, "{answer:?}");
            assert_eq!(
                answer.error_reason.as_deref(),
                Some(ErrorReason::TransactionFailed.as_str())
            );
            assert_eq!(
                answer.transaction, None,
                "a member that definitely failed is decided, not pending: {answer:?}"
            );
        } else {
            assert!(answer.success, "member {i}: {answer:?}");
        }
    }
    assert_eq!(
        fx.seller_balance().await - before,
        U256::from(PRICE * 11),
        "each of the nine good members and the two leaders paid once, the three others nothing"
    );
    fx.chain.stop().await;
}

/// Opens a second connection to the facilitator's journal, as a failing disk or an
/// operator's hand would touch it.
fn journal_db(fx: &Fixture) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(fx.dir.path().join("facilitator.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db
}

/// A settle whose receipt did not come, so the gateway will settle again.
async fn pending_settlement(fx: &Fixture) -> FacilitatorRequest {
    let request = testkit::pay::request(&fx.buyer(), &fx.requirement);
    fx.chain.set_automine(false).await.unwrap();
    let first = fx.facilitator.settle(&request).await.unwrap();
    assert!(!first.success && first.transaction.is_some(), "{first:?}");
    request
}

#[tokio::test]
async fn a_repeated_settle_whose_journal_row_is_missing_is_not_known_never_nonce_used() {
    let fx = fixture(BatchConfig::OFF, Duration::from_millis(300)).await;
    let request = pending_settlement(&fx).await;
    journal_db(&fx)
        .execute("DELETE FROM settlements", [])
        .unwrap();

    let again = fx.facilitator.settle(&request).await;
    assert!(
        again.is_err(),
        "a lost journal row says nothing about the money (503 over HTTP): {again:?}"
    );
    fx.chain.set_automine(true).await.unwrap();
    fx.chain.stop().await;
}

#[tokio::test]
async fn a_repeated_settle_whose_store_fails_is_not_known_never_not_charged() {
    let fx = fixture(BatchConfig::OFF, Duration::from_millis(300)).await;
    let request = pending_settlement(&fx).await;
    journal_db(&fx)
        .execute_batch("ALTER TABLE authorizations RENAME TO gone")
        .unwrap();

    let again = fx.facilitator.settle(&request).await;
    assert!(
        again.is_err(),
        "a store error says nothing about the money (503 over HTTP): {again:?}"
    );
    fx.chain.set_automine(true).await.unwrap();
    fx.chain.stop().await;
}
