//! The gateway's own replay guard: one authorization buys at most one answer, and a
//! buyer charged for an answer it did not get can come back for it.
//!
//! A remote facilitator holds no reservation between verify and settle, so two copies
//! of one payment header sent at once would both verify and both reach the upstream.
//! The guard admits the first and asks the second to wait. Past that, it remembers
//! where each authorization stands:
//!
//! - `Settling`: a settle was sent and its outcome is unknown (slow receipt, timeout,
//!   ambiguous broadcast). The buyer is told `settlement_pending`; the same header
//!   sent again settles again (facilitators answer that idempotently) and learns it.
//! - `Paid`: charged, but the answer never reached the buyer (the upstream broke
//!   its answer off, failed on a redeem or, on a settle-first route, after the
//!   settle). The same header sent again calls the upstream again and answers with
//!   the original receipt: no second transfer, and at most [`MAX_REDEMPTIONS`] times.
//! - `Served`: charged and answered; refused from then on.
//!
//! A `Settling` or `Paid` authorization is bound to the [`RequestDigest`] of the
//! request it paid for (method, path, query, body): only that request redeems it. A
//! different one sent with the same header is refused, so one payment cannot buy
//! answers to other questions, and whoever copies a header can at most fetch the
//! answer its buyer asked for.
//!
//! Every use is a [`Hold`]: dropping it without a decision puts the authorization
//! back where it was (a first use is forgotten, so the buyer may retry), so no early
//! return can leak a reservation. With a ledger file the three states survive a
//! crash: `Settling` is written (and synced) before the settle is sent, the rest in
//! order by one writer thread, so SQLite never blocks the async workers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use alloy::primitives::B256;
use sha2::{Digest, Sha256};
use x402::eip3009::AuthorizationKey;
use x402::wire::SettleResponse;

mod ledger;

use ledger::{Ledger, Record};
pub use ledger::{LedgerError, SERVED_WRITE_DELAY};

/// How long a charged-but-unanswered (or unresolved) authorization stays redeemable.
pub const REDEEMABLE_SECONDS: u64 = 7 * 24 * 3600;

/// How many times a charged-but-unanswered authorization may be redeemed: enough for
/// a buyer whose answer broke off to get it, few enough that a payment cannot be
/// turned into a subscription to one question's answers.
pub const MAX_REDEMPTIONS: u32 = 3;

/// SHA-256 of the request a payment paid for: method, path, query and the body's own
/// SHA-256, each length-prefixed so no two requests share a digest by shifting bytes
/// from one field to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestDigest(pub B256);

impl RequestDigest {
    /// The digest of one request as the gateway received it (`query` raw, `None` when
    /// the URL has no `?`).
    pub fn of(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"agora paid request v1");
        for field in [method.as_bytes(), path.as_bytes()] {
            hash.update(u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
            hash.update(field);
        }
        match query {
            None => hash.update([0u8]),
            Some(query) => {
                hash.update([1u8]);
                hash.update(u64::try_from(query.len()).unwrap_or(u64::MAX).to_be_bytes());
                hash.update(query.as_bytes());
            }
        }
        hash.update(Sha256::digest(body));
        Self(B256::from(<[u8; 32]>::from(hash.finalize())))
    }
}

/// Where one authorization stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// In use for the first time: nothing was settled yet. Never written down.
    Fresh,
    /// A settle was sent; whether it moved the money is not known yet.
    Settling {
        /// The settlement transaction, when the facilitator named one.
        transaction: Option<B256>,
    },
    /// Charged; the buyer has not received the answer.
    Paid {
        /// The settlement receipt the answer must carry.
        receipt: SettleResponse,
    },
    /// Charged and answered.
    Served,
}

/// Why an authorization cannot be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another request is using it right now; retry shortly with the same header.
    InFlight,
    /// It already bought its answer.
    Served,
    /// It paid for a different request (another method, path, query or body); only
    /// that request redeems it.
    BoundToAnotherRequest,
    /// It was redeemed [`MAX_REDEMPTIONS`] times already.
    Exhausted,
}

#[derive(Debug)]
struct Entry {
    stage: Stage,
    busy: bool,
    expires: u64,
    /// The request a `Settling` or `Paid` authorization is bound to; `None` only for
    /// a ledger row written before requests were bound (bound by its next use).
    digest: Option<RequestDigest>,
    /// Redemptions so far (uses after the first that called the upstream).
    redemptions: u32,
}

#[derive(Default)]
struct Table {
    entries: HashMap<AuthorizationKey, Entry>,
    /// Expiry times, soonest first; stale items (the entry moved on) are skipped.
    expiry: BinaryHeap<Reverse<(u64, AuthorizationKey)>>,
}

impl Table {
    /// Forgets entries whose time is up: O(log n) per expired entry, nothing else.
    fn sweep(&mut self, now: u64) {
        while let Some(Reverse((at, key))) = self.expiry.peek().copied() {
            if at > now {
                return;
            }
            self.expiry.pop();
            if let Some(entry) = self.entries.get(&key)
                && !entry.busy
                && entry.expires <= now
            {
                self.entries.remove(&key);
            }
        }
    }

    fn set(&mut self, key: AuthorizationKey, entry: Entry) {
        self.expiry.push(Reverse((entry.expires, key)));
        self.entries.insert(key, entry);
    }
}

/// The guard: an in-memory table, optionally mirrored to a SQLite ledger.
pub struct ReplayGuard {
    table: Mutex<Table>,
    ledger: Option<Ledger>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl ReplayGuard {
    /// A guard that forgets everything when the process ends (tests, embedding).
    pub fn in_memory() -> Self {
        Self {
            table: Mutex::new(Table::default()),
            ledger: None,
        }
    }

    /// A guard whose `Settling`, `Paid` and `Served` records survive restarts.
    pub fn open(path: &Path, now: u64) -> Result<Self, LedgerError> {
        let (ledger, rows) = Ledger::open(path, now)?;
        let mut table = Table::default();
        for (key, row) in rows {
            table.set(
                key,
                Entry {
                    stage: row.stage,
                    busy: false,
                    expires: row.expires,
                    digest: row.digest,
                    redemptions: row.redemptions,
                },
            );
        }
        Ok(Self {
            table: Mutex::new(table),
            ledger: Some(ledger),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `key` for one request, whose digest is `digest`. `retain_until` is how
    /// long a served authorization must be remembered: past it the token itself
    /// refuses a replay.
    pub fn begin(
        self: &Arc<Self>,
        key: AuthorizationKey,
        digest: RequestDigest,
        retain_until: u64,
        now: u64,
    ) -> Result<Hold, Refusal> {
        let mut table = self.table();
        table.sweep(now);
        let mut bound_now = None;
        let (stage, redemptions) = match table.entries.get_mut(&key) {
            None => {
                let fresh = Entry {
                    stage: Stage::Fresh,
                    busy: true,
                    expires: u64::MAX,
                    digest: Some(digest),
                    redemptions: 0,
                };
                table.set(key, fresh);
                (Stage::Fresh, 0)
            }
            Some(entry) if entry.busy => return Err(Refusal::InFlight),
            Some(entry) if entry.stage == Stage::Served => return Err(Refusal::Served),
            Some(entry) if entry.digest.is_some_and(|bound| bound != digest) => {
                return Err(Refusal::BoundToAnotherRequest);
            }
            Some(entry)
                if matches!(entry.stage, Stage::Paid { .. })
                    && entry.redemptions >= MAX_REDEMPTIONS =>
            {
                return Err(Refusal::Exhausted);
            }
            Some(entry) => {
                if entry.digest.is_none() {
                    // A row from before requests were bound: its first use binds it.
                    entry.digest = Some(digest);
                    bound_now = Some((entry.stage.clone(), entry.expires));
                }
                entry.busy = true;
                (entry.stage.clone(), entry.redemptions)
            }
        };
        drop(table);
        if let Some((stage, expires)) = bound_now {
            self.record(key, &stage, expires, Some(digest), redemptions);
        }
        Ok(Hold {
            guard: self.clone(),
            key,
            digest,
            stage,
            redemptions,
            retain_until,
            now,
        })
    }

    /// Times a `Paid` authorization has been redeemed (for tests and diagnostics).
    pub fn redemptions(&self, key: &AuthorizationKey) -> Option<u32> {
        self.table().entries.get(key).map(|e| e.redemptions)
    }

    /// Where `key` stands, if it is known (for tests and diagnostics).
    pub fn stage(&self, key: &AuthorizationKey) -> Option<Stage> {
        self.table().entries.get(key).map(|e| e.stage.clone())
    }

    /// How many authorizations are tracked.
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until everything written so far is on disk, including the served
    /// records the ledger holds back for a moment (see `SERVED_WRITE_DELAY`): for a
    /// shutdown after the answers went out.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        match &self.ledger {
            Some(ledger) => ledger.flush_all().await,
            None => Ok(()),
        }
    }

    fn record(
        &self,
        key: AuthorizationKey,
        stage: &Stage,
        expires: u64,
        digest: Option<RequestDigest>,
        redemptions: u32,
    ) {
        if let Some(ledger) = &self.ledger {
            ledger.put(
                key,
                Record {
                    stage: stage.clone(),
                    expires,
                    digest,
                    redemptions,
                },
            );
        }
    }
}

/// One request's use of an authorization; see the module comment for the stages.
pub struct Hold {
    guard: Arc<ReplayGuard>,
    key: AuthorizationKey,
    digest: RequestDigest,
    stage: Stage,
    redemptions: u32,
    retain_until: u64,
    now: u64,
}

impl Hold {
    /// Where the authorization stood when this request took it.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The authorization held.
    pub fn key(&self) -> &AuthorizationKey {
        &self.key
    }

    /// Records, durably and before returning, that a settle is about to be sent (or
    /// was sent, naming its transaction): from here on a crash or a lost answer
    /// leaves the authorization pending, never forgotten.
    pub async fn settling(&mut self, transaction: Option<B256>) -> Result<(), LedgerError> {
        let stage = Stage::Settling { transaction };
        self.update(stage.clone());
        match &self.guard.ledger {
            Some(ledger) => {
                ledger.put(self.key, self.record_of(stage));
                ledger.flush().await
            }
            None => Ok(()),
        }
    }

    /// Records that the buyer was charged with `receipt` (the answer is on its way).
    pub fn paid(&mut self, receipt: SettleResponse) {
        let stage = Stage::Paid { receipt };
        self.write(&stage);
        self.update(stage);
    }

    /// Counts one redemption of a `Paid` authorization (the upstream answered it
    /// again); past [`MAX_REDEMPTIONS`] the authorization is refused.
    pub fn redeemed(&mut self) {
        self.redemptions = self.redemptions.saturating_add(1);
        let stage = self.stage.clone();
        self.write(&stage);
        self.update(stage);
    }

    /// The buyer has its answer: the authorization is spent.
    pub fn served(mut self) {
        let expires = self.retain_until;
        self.guard
            .record(self.key, &Stage::Served, expires, None, self.redemptions);
        self.stage = Stage::Served;
        let served = Entry {
            stage: Stage::Served,
            busy: false,
            expires,
            digest: None,
            redemptions: self.redemptions,
        };
        self.guard.table().set(self.key, served);
    }

    /// The buyer was definitely not charged: forget the authorization, so it can be
    /// used again.
    pub fn not_charged(mut self) {
        self.stage = Stage::Fresh;
        if let Some(ledger) = &self.guard.ledger {
            ledger.delete(self.key);
        }
        // Dropping a Fresh hold forgets the entry.
    }

    fn redeemable_until(&self) -> u64 {
        self.now.saturating_add(REDEEMABLE_SECONDS)
    }

    fn record_of(&self, stage: Stage) -> Record {
        Record {
            stage,
            expires: self.redeemable_until(),
            digest: Some(self.digest),
            redemptions: self.redemptions,
        }
    }

    fn write(&self, stage: &Stage) {
        self.guard.record(
            self.key,
            stage,
            self.redeemable_until(),
            Some(self.digest),
            self.redemptions,
        );
    }

    fn update(&mut self, stage: Stage) {
        self.stage = stage.clone();
        let held = Entry {
            stage,
            busy: true,
            expires: self.redeemable_until(),
            digest: Some(self.digest),
            redemptions: self.redemptions,
        };
        self.guard.table().set(self.key, held);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut table = self.guard.table();
        match self.stage {
            Stage::Fresh => {
                table.entries.remove(&self.key);
            }
            Stage::Served => {}
            Stage::Settling { .. } | Stage::Paid { .. } => {
                if let Some(entry) = table.entries.get_mut(&self.key) {
                    entry.busy = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};
    use x402::Network;

    use super::*;

    fn key(n: u8) -> AuthorizationKey {
        AuthorizationKey {
            chain_id: 84532,
            asset: Address::ZERO,
            payer: Address::repeat_byte(1),
            nonce: B256::repeat_byte(n),
        }
    }

    /// The request every test payment paid for, unless a test says otherwise.
    fn request() -> RequestDigest {
        RequestDigest::of("POST", "/services/x/v1/chat", Some("q=first"), b"{}")
    }

    fn receipt() -> SettleResponse {
        SettleResponse {
            success: true,
            error_reason: None,
            error_message: None,
            payer: Some(Address::repeat_byte(1)),
            transaction: Some(B256::repeat_byte(9)),
            network: Network::BASE_SEPOLIA,
            amount: Some(U256::from(1000)),
            extensions: None,
        }
    }

    #[test]
    fn a_dropped_first_use_is_forgotten_and_a_second_use_waits() {
        let guard = Arc::new(ReplayGuard::in_memory());
        let hold = guard.begin(key(1), request(), 100, 0).unwrap();
        assert_eq!(hold.stage(), &Stage::Fresh);
        assert_eq!(
            guard.begin(key(1), request(), 100, 0).err(),
            Some(Refusal::InFlight)
        );
        drop(hold);
        assert!(
            guard.is_empty(),
            "an early return gives the authorization back"
        );
        guard.begin(key(1), request(), 100, 0).unwrap().served();
        assert_eq!(
            guard.begin(key(1), request(), 100, 0).err(),
            Some(Refusal::Served)
        );
    }

    #[tokio::test]
    async fn unknown_and_unanswered_payments_stay_redeemable() {
        let guard = Arc::new(ReplayGuard::in_memory());
        let mut hold = guard.begin(key(2), request(), 100, 0).unwrap();
        hold.settling(Some(B256::repeat_byte(7))).await.unwrap();
        drop(hold);
        let mut hold = guard.begin(key(2), request(), 100, 0).unwrap();
        assert_eq!(
            hold.stage(),
            &Stage::Settling {
                transaction: Some(B256::repeat_byte(7))
            }
        );
        hold.paid(receipt());
        drop(hold);
        let hold = guard.begin(key(2), request(), 100, 0).unwrap();
        assert_eq!(hold.stage(), &Stage::Paid { receipt: receipt() });
        hold.served();
        assert_eq!(
            guard.begin(key(2), request(), 100, 0).err(),
            Some(Refusal::Served)
        );
        let mut hold = guard.begin(key(3), request(), 100, 0).unwrap();
        hold.settling(None).await.unwrap();
        hold.not_charged();
        assert!(guard.stage(&key(3)).is_none());
    }

    #[test]
    fn a_digest_tells_apart_every_part_of_a_request() {
        let base = request();
        for other in [
            RequestDigest::of("GET", "/services/x/v1/chat", Some("q=first"), b"{}"),
            RequestDigest::of("POST", "/services/x/v1/chat2", Some("q=first"), b"{}"),
            RequestDigest::of("POST", "/services/x/v1/chat", Some("q=second"), b"{}"),
            RequestDigest::of("POST", "/services/x/v1/chat", None, b"{}"),
            RequestDigest::of("POST", "/services/x/v1/chat", Some("q=first"), b"{ }"),
            RequestDigest::of("POS", "T/services/x/v1/chat", Some("q=first"), b"{}"),
        ] {
            assert_ne!(other, base);
        }
        assert_eq!(
            RequestDigest::of("POST", "/services/x/v1/chat", Some("q=first"), b"{}"),
            base
        );
    }

    #[tokio::test]
    async fn a_payment_redeems_only_its_own_request_and_only_three_times() {
        let guard = Arc::new(ReplayGuard::in_memory());
        let other = RequestDigest::of("POST", "/services/x/v1/chat", Some("q=second"), b"{}");
        let first = guard.begin(key(1), other, 100, 0).unwrap();
        drop(first);
        // A first use that charged nothing binds nothing.
        let mut hold = guard.begin(key(1), request(), 100, 0).unwrap();
        hold.settling(None).await.unwrap();
        drop(hold);
        assert_eq!(
            guard.begin(key(1), other, 100, 0).err(),
            Some(Refusal::BoundToAnotherRequest),
            "settling: bound"
        );
        let mut hold = guard.begin(key(1), request(), 100, 0).unwrap();
        hold.paid(receipt());
        drop(hold);
        assert_eq!(
            guard.begin(key(1), other, 100, 0).err(),
            Some(Refusal::BoundToAnotherRequest),
            "paid: bound"
        );
        for n in 1..=MAX_REDEMPTIONS {
            let mut hold = guard.begin(key(1), request(), 100, 0).unwrap();
            assert_eq!(hold.stage(), &Stage::Paid { receipt: receipt() });
            hold.redeemed();
            drop(hold);
            assert_eq!(guard.redemptions(&key(1)), Some(n));
        }
        assert_eq!(
            guard.begin(key(1), request(), 100, 0).err(),
            Some(Refusal::Exhausted)
        );
    }

    #[tokio::test]
    async fn the_request_a_payment_is_bound_to_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
        let other = RequestDigest::of("GET", "/services/x/v1/chat", Some("q=second"), b"");
        {
            let guard = Arc::new(ReplayGuard::open(&path, 0).unwrap());
            let mut settling = guard.begin(key(1), request(), 100, 0).unwrap();
            settling.settling(None).await.unwrap();
            let mut paid = guard.begin(key(2), request(), 100, 0).unwrap();
            paid.paid(receipt());
            paid.redeemed();
            guard.flush().await.unwrap();
        }
        let guard = Arc::new(ReplayGuard::open(&path, 1).unwrap());
        for n in [1, 2] {
            assert_eq!(
                guard.begin(key(n), other, 100, 1).err(),
                Some(Refusal::BoundToAnotherRequest),
                "key {n}"
            );
            drop(guard.begin(key(n), request(), 100, 1).unwrap());
        }
        assert_eq!(
            guard.redemptions(&key(2)),
            Some(1),
            "redemptions survive too"
        );
    }

    #[tokio::test]
    async fn a_ledger_from_before_binding_opens_and_binds_each_row_on_its_next_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE payments (
                    chain_id INTEGER NOT NULL, asset TEXT NOT NULL, payer TEXT NOT NULL,
                    nonce TEXT NOT NULL,
                    stage TEXT NOT NULL CHECK (stage IN ('settling', 'paid', 'served')),
                    transaction_hash TEXT, receipt TEXT, expires INTEGER NOT NULL,
                    PRIMARY KEY (chain_id, asset, payer, nonce));",
            )
            .unwrap();
            let k = key(1);
            old.execute(
                "INSERT INTO payments VALUES (?1, ?2, ?3, ?4, 'settling', NULL, NULL, 100)",
                rusqlite::params![
                    i64::try_from(k.chain_id).unwrap(),
                    k.asset.to_string(),
                    k.payer.to_string(),
                    k.nonce.to_string()
                ],
            )
            .unwrap();
        }
        let other = RequestDigest::of("GET", "/services/x/v1/chat", Some("q=second"), b"");
        {
            let guard = Arc::new(ReplayGuard::open(&path, 1).unwrap());
            assert_eq!(
                guard.stage(&key(1)),
                Some(Stage::Settling { transaction: None })
            );
            drop(guard.begin(key(1), request(), 100, 1).unwrap());
            assert_eq!(
                guard.begin(key(1), other, 100, 1).err(),
                Some(Refusal::BoundToAnotherRequest),
                "the first use after the upgrade bound it"
            );
            guard.flush().await.unwrap();
        }
        let guard = Arc::new(ReplayGuard::open(&path, 1).unwrap());
        assert_eq!(
            guard.begin(key(1), other, 100, 1).err(),
            Some(Refusal::BoundToAnotherRequest),
            "and the binding was written down"
        );
    }

    #[test]
    fn served_entries_expire_by_queue_not_by_scan() {
        let guard = Arc::new(ReplayGuard::in_memory());
        for n in 0..100u8 {
            guard
                .begin(key(n), request(), 10 + u64::from(n), 0)
                .unwrap()
                .served();
        }
        let hold = guard.begin(key(200), request(), 1000, 50).unwrap();
        assert_eq!(
            guard.len(),
            100 - 41 + 1,
            "entries expiring at or before 50 went"
        );
        drop(hold);
        assert_eq!(
            guard.begin(key(99), request(), 1000, 50).err(),
            Some(Refusal::Served),
            "a live entry stays"
        );
    }

    /// A kill -9 right after the last byte was handed to hyper must find the
    /// authorization `paid` (redeemable), not `served`: the served record waits while
    /// other requests' settling records are synced, and is written by a full flush.
    #[tokio::test]
    async fn a_served_record_reaches_disk_only_after_the_delivery_delay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
        let guard = Arc::new(ReplayGuard::open(&path, 0).unwrap());
        let mut hold = guard.begin(key(1), request(), 100, 0).unwrap();
        hold.settling(None).await.unwrap();
        hold.paid(receipt());
        hold.served();
        let mut other = guard.begin(key(2), request(), 100, 0).unwrap();
        other.settling(None).await.unwrap();
        let stage_on_disk = || -> String {
            rusqlite::Connection::open(&path)
                .unwrap()
                .query_row(
                    "SELECT stage FROM payments WHERE nonce = ?1",
                    [B256::repeat_byte(1).to_string()],
                    |row| row.get(0),
                )
                .unwrap()
        };
        assert_eq!(stage_on_disk(), "paid", "a crash now leaves it redeemable");
        assert_eq!(
            guard.begin(key(1), request(), 100, 0).err(),
            Some(Refusal::Served),
            "the live gateway refuses a replay at once"
        );
        guard.flush().await.unwrap();
        assert_eq!(stage_on_disk(), "served");
    }

    #[tokio::test]
    async fn the_ledger_brings_back_every_decided_stage_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
        {
            let guard = Arc::new(ReplayGuard::open(&path, 0).unwrap());
            let mut settling = guard.begin(key(1), request(), 100, 0).unwrap();
            settling.settling(None).await.unwrap();
            let mut paid = guard.begin(key(2), request(), 100, 0).unwrap();
            paid.paid(receipt());
            guard.begin(key(3), request(), 100, 0).unwrap().served();
            let mut gone = guard.begin(key(4), request(), 100, 0).unwrap();
            gone.settling(None).await.unwrap();
            gone.not_charged();
            let _fresh = guard.begin(key(5), request(), 100, 0).unwrap();
            guard.flush().await.unwrap();
        }
        let guard = Arc::new(ReplayGuard::open(&path, 1).unwrap());
        assert_eq!(
            guard.stage(&key(1)),
            Some(Stage::Settling { transaction: None })
        );
        assert_eq!(
            guard.stage(&key(2)),
            Some(Stage::Paid { receipt: receipt() })
        );
        assert_eq!(
            guard.begin(key(3), request(), 100, 1).err(),
            Some(Refusal::Served)
        );
        assert!(guard.stage(&key(4)).is_none(), "not charged is forgotten");
        assert!(
            guard.stage(&key(5)).is_none(),
            "a first use is never written"
        );
        drop(guard);
        let later = ReplayGuard::open(&path, 101).unwrap();
        assert!(
            later.stage(&key(3)).is_none(),
            "served records end with their retention"
        );
        assert!(
            later.stage(&key(1)).is_some(),
            "unresolved payments stay redeemable"
        );
    }
}
