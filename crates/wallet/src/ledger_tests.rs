//! The ledger's promises: rows are written before sending, budgets come from rows
//! (open ones counted until they expire), status changes only move forward, and the
//! on-chain check settles or expires open rows.

#![allow(clippy::unwrap_used)]

use std::cell::RefCell;

use alloy::primitives::{Address, B256, U256, address};

use super::*;
use crate::budget::{Budget, DAY_SECS, parse_usdc};

const NOW: u64 = 1_800_000_000;
const PAYER: Address = address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const SELLER: Address = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
const USDC: Address = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("wallet.db")).unwrap();
    (dir, ledger)
}

fn sign(ledger: &Ledger, nonce: u8, amount: u64, valid_before: u64, at: u64) -> i64 {
    ledger
        .record_signed(
            &NewEntry {
                wallet: "default",
                payer: PAYER,
                url: "http://127.0.0.1:8402/services/echo",
                network: "eip155:84532",
                asset: USDC,
                pay_to: SELLER,
                amount: U256::from(amount),
                nonce: B256::repeat_byte(nonce),
                valid_before,
            },
            at,
        )
        .unwrap()
}

fn status(ledger: &Ledger, id: i64) -> Status {
    ledger.entry(id).unwrap().unwrap().status
}

#[test]
fn a_signed_row_is_stored_whole_and_one_nonce_is_one_row() {
    let (_dir, ledger) = ledger();
    let id = sign(&ledger, 1, 1000, NOW + 600, NOW);
    let e = ledger.entry(id).unwrap().unwrap();
    assert_eq!(e.status, Status::Signed);
    assert_eq!((e.payer, e.pay_to, e.asset), (PAYER, SELLER, USDC));
    assert_eq!(e.amount, U256::from(1000));
    assert_eq!(e.nonce, B256::repeat_byte(1));
    assert_eq!((e.valid_before, e.signed_at), (NOW + 600, NOW));
    let again = ledger.record_signed(
        &NewEntry {
            wallet: "default",
            payer: PAYER,
            url: "http://elsewhere",
            network: "eip155:84532",
            asset: USDC,
            pay_to: SELLER,
            amount: U256::from(1),
            nonce: B256::repeat_byte(1),
            valid_before: NOW + 600,
        },
        NOW,
    );
    assert!(again.is_err(), "the same authorization twice is one row");
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["amount"], "1000", "U256 goes out as a decimal string");
    assert_eq!(json["status"], "signed");
}

#[test]
fn status_changes_only_move_forward() {
    let (_dir, ledger) = ledger();
    let id = sign(&ledger, 1, 1000, NOW + 600, NOW);
    // Settled needs a send first.
    let err = ledger.mark_settled(id, "0xabc", NOW).unwrap_err();
    assert!(
        err.to_string()
            .contains("is signed, so it cannot become settled"),
        "{err}"
    );
    ledger.mark_sent(id, NOW).unwrap();
    ledger.mark_unknown(id, NOW).unwrap();
    // A resume sends the same authorization again.
    ledger.mark_sent(id, NOW + 1).unwrap();
    ledger.mark_settled(id, "0xabc", NOW + 2).unwrap();
    let e = ledger.entry(id).unwrap().unwrap();
    assert_eq!(
        (e.status, e.tx.as_deref(), e.updated_at),
        (Status::Settled, Some("0xabc"), NOW + 2)
    );
    // Closed rows stay closed.
    for result in [
        ledger.mark_sent(id, NOW + 3),
        ledger.mark_unknown(id, NOW + 3),
        ledger.mark_refused(id, "late", NOW + 3),
    ] {
        assert!(result.unwrap_err().to_string().contains("is settled"));
    }
    assert_eq!(status(&ledger, id), Status::Settled);

    let refused = sign(&ledger, 2, 1000, NOW + 600, NOW);
    ledger.mark_sent(refused, NOW).unwrap();
    ledger
        .mark_refused(refused, "insufficient_funds", NOW)
        .unwrap();
    assert!(ledger.mark_settled(refused, "0xdef", NOW).is_err());
    let e = ledger.entry(refused).unwrap().unwrap();
    assert_eq!(
        (e.status, e.reason.as_deref()),
        (Status::Refused, Some("insufficient_funds"))
    );
    assert!(e.tx.is_none());

    assert!(
        ledger
            .mark_sent(999, NOW)
            .unwrap_err()
            .to_string()
            .contains("no ledger entry 999")
    );
}

#[test]
fn open_rows_count_as_spent_until_they_expire() {
    let (_dir, ledger) = ledger();
    let settled = sign(&ledger, 1, 1000, NOW + 600, NOW);
    ledger.mark_sent(settled, NOW).unwrap();
    ledger.mark_settled(settled, "0x1", NOW).unwrap();
    let unknown = sign(&ledger, 2, 20_000, NOW + 600, NOW);
    ledger.mark_sent(unknown, NOW).unwrap();
    ledger.mark_unknown(unknown, NOW).unwrap();
    let sent = sign(&ledger, 3, 300_000, NOW + 60, NOW);
    ledger.mark_sent(sent, NOW).unwrap();
    let signed = sign(&ledger, 4, 4_000_000, NOW + 30, NOW);
    let refused = sign(&ledger, 5, 50_000_000, NOW + 600, NOW);
    ledger.mark_refused(refused, "no", NOW).unwrap();

    let at = |t| ledger.spent_since(0, t).unwrap();
    assert_eq!(
        at(NOW),
        U256::from(4_321_000),
        "everything but the refused row"
    );
    assert_eq!(
        at(NOW + 30),
        U256::from(321_000),
        "the signed row expired at validBefore"
    );
    assert_eq!(at(NOW + 60), U256::from(21_000), "the sent one too");
    assert_eq!(at(NOW + 599), U256::from(21_000));
    assert_eq!(
        at(NOW + 600),
        U256::from(1000),
        "only the settled row counts forever"
    );
    assert_eq!(at(NOW + 10 * DAY_SECS), U256::from(1000));
    // The window is by signing time.
    assert_eq!(ledger.spent_since(NOW + 1, NOW).unwrap(), U256::ZERO);
    let _ = signed;
}

#[test]
fn the_daily_budget_is_what_the_last_24_hours_left() {
    let (_dir, ledger) = ledger();
    assert_eq!(
        ledger.remaining_daily_budget(NOW).unwrap(),
        None,
        "no budget, no limit"
    );
    ledger
        .set_budget(&Budget {
            daily: Some(parse_usdc("--daily", "1.00").unwrap()),
            per_call: Some(parse_usdc("--per-call", "0.05").unwrap()),
        })
        .unwrap();
    let budget = ledger.budget().unwrap();
    assert_eq!(budget.daily, Some(U256::from(1_000_000)));
    assert_eq!(budget.per_call, Some(U256::from(50_000)));

    // Yesterday's payment has left the window; today's count.
    let old = sign(&ledger, 1, 900_000, NOW + 600, NOW - DAY_SECS - 1);
    ledger.mark_sent(old, NOW).unwrap();
    ledger.mark_settled(old, "0x1", NOW).unwrap();
    let today = sign(&ledger, 2, 250_000, NOW + 600, NOW - 3600);
    ledger.mark_sent(today, NOW).unwrap();
    ledger.mark_settled(today, "0x2", NOW).unwrap();
    let lost = sign(&ledger, 3, 700_000, NOW + 600, NOW - 60);
    ledger.mark_sent(lost, NOW).unwrap();
    ledger.mark_unknown(lost, NOW).unwrap();
    assert_eq!(
        ledger.remaining_daily_budget(NOW).unwrap(),
        Some(U256::from(50_000))
    );
    // Past the lost row's validBefore it no longer counts.
    assert_eq!(
        ledger.remaining_daily_budget(NOW + 600).unwrap(),
        Some(U256::from(750_000))
    );
    // Overspent (a settled row the budget did not foresee) is zero left, not an error.
    let big = sign(&ledger, 4, 5_000_000, NOW + 600, NOW);
    ledger.mark_sent(big, NOW).unwrap();
    ledger.mark_settled(big, "0x4", NOW).unwrap();
    assert_eq!(
        ledger.remaining_daily_budget(NOW).unwrap(),
        Some(U256::ZERO)
    );

    ledger.set_budget(&Budget::default()).unwrap();
    assert_eq!(ledger.budget().unwrap(), Budget::default());
    assert!(parse_usdc("--daily", "0.0000001").is_err(), "never rounded");
    assert!(parse_usdc("--daily", "-1").is_err());
    assert!(
        parse_usdc("--daily", "abc")
            .unwrap_err()
            .to_string()
            .contains("--daily")
    );
}

#[tokio::test]
async fn the_chain_check_settles_used_rows_and_expires_unused_ones() {
    let (_dir, ledger) = ledger();
    let used = sign(&ledger, 1, 1000, NOW + 600, NOW);
    ledger.mark_sent(used, NOW).unwrap();
    ledger.mark_unknown(used, NOW).unwrap();
    let unused_valid = sign(&ledger, 2, 2000, NOW + 600, NOW);
    ledger.mark_sent(unused_valid, NOW).unwrap();
    ledger.mark_unknown(unused_valid, NOW).unwrap();
    let unused_expired = sign(&ledger, 3, 4000, NOW + 10, NOW);
    ledger.mark_sent(unused_expired, NOW).unwrap();
    let in_progress = sign(&ledger, 4, 8000, NOW + 600, NOW);
    let failing = sign(&ledger, 5, 16_000, NOW + 600, NOW);
    ledger.mark_sent(failing, NOW).unwrap();

    let asked = RefCell::new(Vec::new());
    let changed = ledger
        .resolve_open(NOW + 20, |e: Entry| {
            asked.borrow_mut().push(e.id);
            let answer = match e.nonce {
                n if n == B256::repeat_byte(1) => Ok(ChainState::Used),
                n if n == B256::repeat_byte(5) => Err(anyhow::anyhow!("rpc down")),
                _ => Ok(ChainState::Unused),
            };
            async move { answer }
        })
        .await
        .unwrap();
    assert_eq!(changed, 2);
    assert_eq!(
        *asked.borrow(),
        [used, unused_valid, unused_expired, failing],
        "a row still signed is not asked about"
    );
    assert_eq!(status(&ledger, used), Status::Settled);
    assert_eq!(
        status(&ledger, unused_valid),
        Status::Unknown,
        "unused but still valid: may yet be charged"
    );
    assert_eq!(status(&ledger, unused_expired), Status::Refused);
    assert_eq!(status(&ledger, in_progress), Status::Signed);
    assert_eq!(
        status(&ledger, failing),
        Status::Sent,
        "a failed check changes nothing"
    );
    // The used row now counts forever; the valid unknown one until its validBefore.
    assert_eq!(
        ledger.spent_since(0, NOW + 20).unwrap(),
        U256::from(1000 + 2000 + 8000 + 16_000)
    );
    assert_eq!(ledger.spent_since(0, NOW + 600).unwrap(), U256::from(1000));
}

#[test]
fn a_payment_outside_the_budget_is_refused_naming_the_flag_and_leaves_no_row() {
    let (_dir, ledger) = ledger();
    ledger
        .set_budget(&Budget {
            daily: Some(U256::from(1_000_000)),
            per_call: Some(U256::from(400_000)),
        })
        .unwrap();
    let entry = |nonce: u8, amount: u64| NewEntry {
        wallet: "default",
        payer: PAYER,
        url: "http://seller/x",
        network: "eip155:84532",
        asset: USDC,
        pay_to: SELLER,
        amount: U256::from(amount),
        nonce: B256::repeat_byte(nonce),
        valid_before: NOW + 600,
    };
    let too_big = ledger
        .record_signed_within_budget(&entry(1, 500_000), NOW)
        .unwrap();
    let refusal = too_big.unwrap_err().to_string();
    assert!(
        refusal.contains("agora wallet budget --per-call 0.5"),
        "{refusal}"
    );
    for nonce in 2..=3 {
        ledger
            .record_signed_within_budget(&entry(nonce, 400_000), NOW)
            .unwrap()
            .unwrap();
    }
    let over = ledger
        .record_signed_within_budget(&entry(4, 300_000), NOW)
        .unwrap();
    let refusal = over.unwrap_err().to_string();
    assert!(
        refusal.contains("0.2 USDC left of the daily budget"),
        "{refusal}"
    );
    assert!(refusal.contains("agora wallet budget --daily"), "{refusal}");
    assert_eq!(
        ledger.entries_since(0).unwrap().len(),
        2,
        "refusals leave no row"
    );
    assert!(
        ledger
            .check_budget(U256::from(200_000), NOW)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn concurrent_payers_cannot_share_one_remainder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.db");
    Ledger::open(&path)
        .unwrap()
        .set_budget(&Budget {
            daily: Some(U256::from(1_000_000)),
            per_call: None,
        })
        .unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let ledger = Ledger::open(&path).unwrap();
                let entry = NewEntry {
                    wallet: "default",
                    payer: PAYER,
                    url: "http://seller/x",
                    network: "eip155:84532",
                    asset: USDC,
                    pay_to: SELLER,
                    amount: U256::from(300_000),
                    nonce: B256::repeat_byte(i),
                    valid_before: NOW + 600,
                };
                ledger
                    .record_signed_within_budget(&entry, NOW)
                    .unwrap()
                    .is_ok()
            })
        })
        .collect();
    let admitted = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|fits| *fits)
        .count();
    assert_eq!(admitted, 3, "three 0.3 USDC payments fit a 1 USDC day");
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.spent_since(0, NOW).unwrap(), U256::from(900_000));
}

#[tokio::test]
async fn a_payment_refused_after_sending_stays_open_counting_until_the_chain_says() {
    let (_dir, ledger) = ledger();
    let url = "http://127.0.0.1:8402/services/echo";
    let refused = sign(&ledger, 1, 1000, NOW + 600, NOW);
    ledger.mark_sent(refused, NOW).unwrap();
    ledger
        .mark_refused_after_sending(refused, "insufficient_funds", NOW)
        .unwrap();
    let e = ledger.entry(refused).unwrap().unwrap();
    assert_eq!(e.status, Status::Unknown);
    assert_eq!(e.reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(ledger.spent_since(0, NOW).unwrap(), U256::from(1000));
    assert_eq!(
        ledger
            .open_payment("default", url, NOW)
            .unwrap()
            .map(|e| e.id),
        Some(refused)
    );
    assert!(ledger.open_payment("other", url, NOW).unwrap().is_none());
    assert!(
        ledger
            .open_payment("default", url, NOW + 600)
            .unwrap()
            .is_none()
    );

    // The seller submitted it after all: the chain check settles it.
    let changed = ledger
        .resolve_open(NOW + 1, |_| async { Ok(ChainState::Used) })
        .await
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(status(&ledger, refused), Status::Settled);
    assert!(
        ledger
            .open_payment("default", url, NOW + 1)
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_row_an_older_agora_marked_refused_after_sending_is_asked_about_again() {
    let (_dir, ledger) = ledger();
    let used = sign(&ledger, 1, 1000, NOW + 600, NOW);
    ledger.mark_sent(used, NOW).unwrap();
    ledger
        .mark_refused(used, "insufficient_funds", NOW)
        .unwrap();
    let unused = sign(&ledger, 2, 2000, NOW + 10, NOW);
    ledger.mark_sent(unused, NOW).unwrap();
    ledger
        .mark_refused(unused, "insufficient_funds", NOW)
        .unwrap();
    let asked = RefCell::new(Vec::new());
    let changed = ledger
        .resolve_open(NOW + 20, |e: Entry| {
            asked.borrow_mut().push(e.id);
            let answer = if e.id == used {
                ChainState::Used
            } else {
                ChainState::Unused
            };
            async move { Ok(answer) }
        })
        .await
        .unwrap();
    assert_eq!(changed, 2);
    assert_eq!(status(&ledger, used), Status::Settled);
    let expired = ledger.entry(unused).unwrap().unwrap();
    assert_eq!(expired.status, Status::Refused);
    assert!(expired.reason.unwrap().starts_with("expired unused"));
    // Decided rows are not asked about again.
    asked.borrow_mut().clear();
    ledger
        .resolve_open(NOW + 30, |e: Entry| {
            asked.borrow_mut().push(e.id);
            async { Ok(ChainState::Unused) }
        })
        .await
        .unwrap();
    assert!(asked.borrow().is_empty(), "{:?}", asked.borrow());
}
