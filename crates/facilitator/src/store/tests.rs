//! The store's contract: the guard from verify to settle, the journal across
//! reopens, the lock, the sweep of orphans and conditional closes.

use alloy::primitives::{Address, B256, U256};
use rusqlite::params;

use super::*;

fn key(n: u8) -> AuthorizationKey {
    AuthorizationKey {
        chain_id: 84532,
        asset: Address::repeat_byte(1),
        payer: Address::repeat_byte(2),
        nonce: B256::repeat_byte(n),
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("f.db")).unwrap();
    (dir, store)
}

#[test]
fn guard_holds_from_verify_until_settle_or_release() {
    let (_dir, s) = store();
    let k = key(1);
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 100, 60).unwrap(),
        Claim::Granted
    );
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 101, 60).unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 161, 60).unwrap(),
        Claim::Granted,
        "lease ended"
    );
    assert_eq!(
        s.claim(&k, GuardState::Settling, 162, 60).unwrap(),
        Claim::Granted
    );
    assert_eq!(
        s.claim(&k, GuardState::Settling, 163, 60).unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 9999, 60).unwrap(),
        Claim::InFlight
    );
    s.release(&k).unwrap();
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 164, 60).unwrap(),
        Claim::InFlight,
        "release never frees a settlement in flight"
    );
    let other = key(9);
    s.claim(&other, GuardState::Reserved, 1, 60).unwrap();
    s.release(&other).unwrap();
    assert_eq!(
        s.claim(&other, GuardState::Reserved, 2, 60).unwrap(),
        Claim::Granted
    );
}

#[test]
fn journal_survives_reopen_and_settled_stays_settled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let k = key(2);
    let id = {
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.claim(&k, GuardState::Settling, 1, 60).unwrap(),
            Claim::Granted
        );
        let id = s
            .begin_settlement(&k, Address::repeat_byte(3), U256::from(1000), 1)
            .unwrap()
            .id;
        s.mark_sent(id, B256::repeat_byte(9), &[1, 2, 3], 2)
            .unwrap();
        id
    };
    let s = Store::open(&path).unwrap();
    let open = s.open_settlements().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].status, SettlementStatus::Sent);
    assert_eq!(
        open[0].raw_tx.as_ref().map(|b| b.to_vec()),
        Some(vec![1u8, 2, 3])
    );
    assert_eq!(open[0].amount, U256::from(1000));
    s.finish_settlement(&open[0], SettlementStatus::Confirmed, None, 3)
        .unwrap();
    assert!(s.open_settlements().unwrap().is_empty());
    assert_eq!(
        s.settlement(id).unwrap().unwrap().status,
        SettlementStatus::Confirmed
    );
    assert_eq!(
        s.claim(&k, GuardState::Settling, 4, 60).unwrap(),
        Claim::Settled
    );
    s.release(&k).unwrap();
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 5, 60).unwrap(),
        Claim::Settled,
        "release never frees a paid authorization"
    );
}

#[test]
fn failed_settlement_frees_the_authorization() {
    let (_dir, s) = store();
    let k = key(3);
    s.claim(&k, GuardState::Settling, 1, 60).unwrap();
    let id = s
        .begin_settlement(&k, Address::ZERO, U256::from(1), 1)
        .unwrap()
        .id;
    let row = s.settlement(id).unwrap().unwrap();
    s.finish_settlement(&row, SettlementStatus::Failed, Some("reverted"), 2)
        .unwrap();
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 3, 60).unwrap(),
        Claim::Granted
    );
    assert_eq!(s.journal().unwrap()[0].error.as_deref(), Some("reverted"));
}

#[test]
fn a_second_process_cannot_open_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let first = Store::open(&path).unwrap();
    let Err(err) = Store::open(&path) else {
        panic!("a second store opened a locked database");
    };
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("another process is using"),
        "{err}"
    );
    drop(first);
    Store::open(&path).expect("the lock is released with the store");
}

#[test]
fn reopening_sweeps_claims_no_live_request_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let (reserved, orphan, open, confirmed) = (key(10), key(11), key(12), key(13));
    {
        let s = Store::open(&path).unwrap();
        s.claim(&reserved, GuardState::Reserved, 1, 600).unwrap();
        s.claim(&orphan, GuardState::Settling, 1, 600).unwrap();
        s.claim(&open, GuardState::Settling, 1, 600).unwrap();
        let id = s
            .begin_settlement(&open, Address::ZERO, U256::from(1), 1)
            .unwrap()
            .id;
        s.mark_sent(id, B256::repeat_byte(1), &[1], 1).unwrap();
        s.claim(&confirmed, GuardState::Settling, 1, 600).unwrap();
        let id = s
            .begin_settlement(&confirmed, Address::ZERO, U256::from(1), 1)
            .unwrap()
            .id;
        let row = s.settlement(id).unwrap().unwrap();
        let group = s.conn.lock().unwrap();
        group
            .conn
            .execute(
                "UPDATE settlements SET status = 'confirmed' WHERE id = ?1",
                params![row.id],
            )
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.claim(&reserved, GuardState::Reserved, 2, 600).unwrap(),
        Claim::Granted,
        "a reservation of a dead process is freed"
    );
    assert_eq!(
        s.claim(&orphan, GuardState::Reserved, 2, 600).unwrap(),
        Claim::Granted,
        "a settling claim with no journal row is freed"
    );
    assert_eq!(
        s.claim(&open, GuardState::Reserved, 2, 600).unwrap(),
        Claim::InFlight,
        "a sent settlement keeps its claim until it is resolved"
    );
    assert_eq!(
        s.claim(&confirmed, GuardState::Reserved, 2, 600).unwrap(),
        Claim::Settled
    );
}

#[test]
fn only_an_open_settlement_is_closed_and_replacements_keep_their_history() {
    let (_dir, s) = store();
    let k = key(4);
    s.claim(&k, GuardState::Settling, 1, 60).unwrap();
    let id = s
        .begin_settlement(&k, Address::ZERO, U256::from(1), 1)
        .unwrap()
        .id;
    s.mark_sent(id, B256::repeat_byte(1), &[1], 1).unwrap();
    assert!(s.mark_replaced(id, B256::repeat_byte(2), &[2], 2).unwrap());
    let row = s.settlement(id).unwrap().unwrap();
    assert_eq!(row.prior_hashes, vec![B256::repeat_byte(1)]);
    assert_eq!(row.tx_hash, Some(B256::repeat_byte(2)));
    assert!(
        s.finish_observed(
            &row,
            SettlementStatus::Confirmed,
            None,
            Some(B256::repeat_byte(1)),
            3
        )
        .unwrap()
    );
    assert!(
        !s.finish_settlement(&row, SettlementStatus::Failed, Some("late"), 4)
            .unwrap(),
        "a closed settlement is never reopened or flipped"
    );
    let row = s.settlement(id).unwrap().unwrap();
    assert_eq!(row.status, SettlementStatus::Confirmed);
    assert_eq!(
        row.tx_hash,
        Some(B256::repeat_byte(1)),
        "the hash that mined"
    );
    assert!(!s.mark_replaced(id, B256::repeat_byte(3), &[3], 5).unwrap());
    assert_eq!(
        s.claim(&k, GuardState::Reserved, 5, 60).unwrap(),
        Claim::Settled
    );
}

#[test]
fn concurrent_writes_share_commits_and_each_survives_a_reopen() {
    let (dir, s) = store();
    let s = std::sync::Arc::new(s);
    let threads: Vec<_> = (0..48u8)
        .map(|n| {
            let s = s.clone();
            std::thread::spawn(move || {
                assert_eq!(
                    s.claim(&key(n), GuardState::Settling, 1, 600).unwrap(),
                    Claim::Granted
                );
                let id = s
                    .begin_settlement(&key(n), Address::ZERO, U256::from(n), 1)
                    .unwrap()
                    .id;
                assert!(
                    s.mark_sent_all(&[id], B256::repeat_byte(n), &[n], 1)
                        .unwrap()
                        .is_empty()
                );
                // A second claim in the same group sees the first one.
                assert_eq!(
                    s.claim(&key(n), GuardState::Settling, 1, 600).unwrap(),
                    Claim::InFlight
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(s);
    let s = Store::open(&dir.path().join("f.db")).unwrap();
    let open = s.open_settlements().unwrap();
    assert_eq!(
        open.len(),
        48,
        "every call was committed before it returned"
    );
    assert!(open.iter().all(|r| r.status == SettlementStatus::Sent));
}

#[test]
fn claiming_to_settle_opens_the_journal_row_in_the_same_commit_or_not_at_all() {
    let (_dir, s) = store();
    let terms = (Address::repeat_byte(3), U256::from(1000));
    let k = key(1);
    s.claim(&k, GuardState::Reserved, 100, 60).unwrap();
    let (verdict, prior, row) = s.claim_settlement(&k, terms, true, 101, 60).unwrap();
    assert_eq!(
        (verdict, prior),
        (Claim::Granted, Some(GuardState::Reserved))
    );
    let row = row.expect("a granted claim opens its row");
    assert_eq!(row.status, SettlementStatus::Pending);
    assert_eq!((row.pay_to, row.amount), terms);
    assert_eq!(s.latest_for(&k).unwrap(), Some(row));
    assert_eq!(
        s.claim_settlement(&k, terms, true, 102, 60).unwrap(),
        (Claim::InFlight, Some(GuardState::Settling), None),
        "a second settle opens no second row"
    );
    assert_eq!(s.journal().unwrap().len(), 1);

    let expired = key(2);
    assert_eq!(
        s.claim_settlement(&expired, terms, false, 103, 60).unwrap(),
        (Claim::Granted, None, None),
        "without begin only the claim is taken"
    );
    assert_eq!(s.latest_for(&expired).unwrap(), None);

    // The journal row cannot be written: the claim must not stay behind alone.
    let unwritable = key(3);
    s.lock()
        .unwrap()
        .conn
        .execute_batch("ALTER TABLE settlements RENAME TO gone")
        .unwrap();
    assert!(
        s.claim_settlement(&unwritable, terms, true, 104, 60)
            .is_err()
    );
    assert_eq!(
        s.claim(&unwritable, GuardState::Settling, 105, 60).unwrap(),
        Claim::Granted,
        "the failed claim was rolled back with its row"
    );
}

#[test]
fn an_abandonment_decided_on_a_pending_snapshot_never_closes_a_row_sent_since() {
    let (_dir, s) = store();
    let k = key(5);
    s.claim(&k, GuardState::Settling, 1, 60).unwrap();
    // The resolver's snapshot: pending, old enough to look abandoned.
    let snapshot = s
        .begin_settlement(&k, Address::ZERO, U256::from(1), 1)
        .unwrap();
    // Meanwhile the sender journals its transaction (and broadcasts it).
    assert!(
        s.mark_sent(snapshot.id, B256::repeat_byte(7), &[7], 90)
            .unwrap()
    );
    assert!(
        !s.finish_observed(
            &snapshot,
            SettlementStatus::Failed,
            Some("interrupted before the transaction was broadcast"),
            None,
            91
        )
        .unwrap(),
        "a row that was sent after the snapshot stays open"
    );
    let row = s.settlement(snapshot.id).unwrap().unwrap();
    assert_eq!(row.status, SettlementStatus::Sent);
    assert_eq!(
        s.claim(&k, GuardState::Settling, 92, 60).unwrap(),
        Claim::InFlight,
        "its authorization stays guarded"
    );
    // Its transaction decides, on the row as it now stands.
    assert!(
        s.finish_observed(&row, SettlementStatus::Confirmed, None, None, 93)
            .unwrap()
    );
    assert_eq!(
        s.settlement(snapshot.id).unwrap().unwrap().status,
        SettlementStatus::Confirmed
    );
}

/// Rows in the guard table in `state`.
fn rows_in(s: &Store, state: &str) -> i64 {
    s.with(|conn| {
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM authorizations WHERE state = ?1",
            params![state],
            |r| r.get(0),
        )?)
    })
    .unwrap()
}

#[test]
fn expired_reservations_are_swept_by_the_next_verify_not_only_at_restart() {
    let (_dir, s) = store();
    // A flood of verifies with fresh nonces, each holding its nonce for 5 s.
    for n in 0..50 {
        s.claim(&key(n), GuardState::Reserved, 100, 5).unwrap();
    }
    s.claim(&key(200), GuardState::Settling, 100, 5).unwrap();
    assert_eq!(rows_in(&s, "reserved"), 50);
    // Still live one second later: nothing is swept.
    s.claim(&key(201), GuardState::Reserved, 101, 5).unwrap();
    assert_eq!(rows_in(&s, "reserved"), 51);
    // Past their lease, the next verify removes them; the settling claim stays.
    s.claim(&key(202), GuardState::Reserved, 106, 5).unwrap();
    assert_eq!(rows_in(&s, "reserved"), 2, "only 201 (live to 106) and 202");
    assert_eq!(rows_in(&s, "settling"), 1);
}

/// A journal written before `prior_hashes` (and before schema versions) opens, its
/// settlement reads back with no replaced transactions, and it is stamped version 1.
#[test]
fn a_journal_from_before_prior_hashes_opens_and_keeps_its_settlements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE authorizations (
            chain_id INTEGER NOT NULL, asset TEXT NOT NULL, payer TEXT NOT NULL,
            nonce TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('reserved', 'settling', 'settled')),
            lease_until INTEGER NOT NULL,
            PRIMARY KEY (chain_id, asset, payer, nonce));
        CREATE TABLE settlements (
            id INTEGER PRIMARY KEY AUTOINCREMENT, chain_id INTEGER NOT NULL,
            asset TEXT NOT NULL, payer TEXT NOT NULL, nonce TEXT NOT NULL,
            pay_to TEXT NOT NULL, amount TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'confirmed', 'failed')),
            tx_hash TEXT, raw_tx BLOB, error TEXT,
            created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);",
    )
    .unwrap();
    let k = key(9);
    let (chain, asset, payer, nonce) = key_params(&k).unwrap();
    old.execute(
        "INSERT INTO settlements (chain_id, asset, payer, nonce, pay_to, amount, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, '7', 'failed', 1, 1)",
        params![chain, asset, payer, nonce, Address::ZERO.to_string()],
    )
    .unwrap();
    drop(old);

    let s = Store::open(&path).unwrap();
    let row = s.latest_for(&k).unwrap().unwrap();
    assert_eq!(row.amount, U256::from(7));
    assert!(row.prior_hashes.is_empty());
    let version: i64 = s
        .with(|conn| Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(version, 1);
}
