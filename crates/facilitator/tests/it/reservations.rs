//! A `/verify` reservation ends with the requirement's `maxTimeoutSeconds` (issue 21,
//! M6): the resource server waits no longer than that for its settle, so holding the
//! authorization longer only blocks the buyer's retry and, under a flood of verifies
//! with fresh nonces, piles up rows that used to be swept only at restart. On a devnet
//! with the embedded facilitator: the same authorization is refused while reserved,
//! verifies again once the reservation has ended, and then settles once.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use alloy::primitives::U256;
use x402::Facilitator;

#[tokio::test]
async fn a_verify_reservation_ends_after_the_requirements_max_timeout() {
    let chain = testkit::chain::devnet(3).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let seller = chain.accounts()[1].address();
    let buyer = chain.accounts()[2].signer();
    // Signed valid for 10 minutes; the resource server waits at most 1 s.
    let mut request =
        testkit::pay::request(&buyer, &testkit::pay::requirement(&chain, seller, 600));
    request.payment_requirements.max_timeout_seconds = 1;

    assert!(facilitator.verify(&request).await.unwrap().is_valid);
    let held = facilitator.verify(&request).await.unwrap();
    assert!(!held.is_valid, "reserved for its settle: {held:?}");

    let f = facilitator.clone();
    let request_again = request.clone();
    testkit::eventually(
        "the reservation to end after maxTimeoutSeconds",
        Duration::from_secs(20),
        move || {
            let f = f.clone();
            let request = request_again.clone();
            async move { f.verify(&request).await.unwrap().is_valid }
        },
    )
    .await;

    let before = chain.usdc_balance(seller).await.unwrap();
    let settled = facilitator.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap(),
        before + U256::from(testkit::pay::PRICE)
    );
}
