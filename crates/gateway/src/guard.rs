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
//! - `Paid`: charged, but the answer never reached the buyer (the client hung up, the
//!   upstream failed on a redeem). The same header sent again calls the upstream
//!   again and answers with the original receipt: no second transfer.
//! - `Served`: charged and answered; refused from then on.
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
use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use x402::eip3009::AuthorizationKey;
use x402::wire::{SettleResponse, X402Version};

/// How long a charged-but-unanswered (or unresolved) authorization stays redeemable.
pub const REDEEMABLE_SECONDS: u64 = 7 * 24 * 3600;

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

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Fresh => "fresh",
            Stage::Settling { .. } => "settling",
            Stage::Paid { .. } => "paid",
            Stage::Served => "served",
        }
    }
}

/// Why an authorization cannot be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another request is using it right now; retry shortly with the same header.
    InFlight,
    /// It already bought its answer.
    Served,
}

#[derive(Debug)]
struct Entry {
    stage: Stage,
    busy: bool,
    expires: u64,
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

    fn set(&mut self, key: AuthorizationKey, stage: Stage, busy: bool, expires: u64) {
        self.expiry.push(Reverse((expires, key)));
        self.entries.insert(
            key,
            Entry {
                stage,
                busy,
                expires,
            },
        );
    }
}

/// The ledger could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite said no.
    #[error("payment ledger {path}: {message}")]
    Sqlite {
        /// The ledger file.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// The writer thread is gone.
    #[error("the payment ledger's writer stopped; restart the gateway")]
    Stopped,
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
        for (key, stage, expires) in rows {
            table.set(key, stage, false, expires);
        }
        Ok(Self {
            table: Mutex::new(table),
            ledger: Some(ledger),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `key` for one request. `retain_until` is how long a served
    /// authorization must be remembered: past it the token itself refuses a replay.
    pub fn begin(
        self: &Arc<Self>,
        key: AuthorizationKey,
        retain_until: u64,
        now: u64,
    ) -> Result<Hold, Refusal> {
        let mut table = self.table();
        table.sweep(now);
        let stage = match table.entries.get_mut(&key) {
            None => {
                table.set(key, Stage::Fresh, true, u64::MAX);
                Stage::Fresh
            }
            Some(entry) if entry.busy => return Err(Refusal::InFlight),
            Some(entry) if entry.stage == Stage::Served => return Err(Refusal::Served),
            Some(entry) => {
                entry.busy = true;
                entry.stage.clone()
            }
        };
        Ok(Hold {
            guard: self.clone(),
            key,
            stage,
            retain_until,
            now,
        })
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

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        match &self.ledger {
            Some(ledger) => ledger.flush().await,
            None => Ok(()),
        }
    }

    fn record(&self, key: AuthorizationKey, stage: &Stage, expires: u64) {
        if let Some(ledger) = &self.ledger {
            ledger.send(Op::Put {
                key,
                stage: Box::new(stage.clone()),
                expires,
            });
        }
    }
}

/// One request's use of an authorization; see the module comment for the stages.
pub struct Hold {
    guard: Arc<ReplayGuard>,
    key: AuthorizationKey,
    stage: Stage,
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
                ledger.send(Op::Put {
                    key: self.key,
                    stage: Box::new(stage),
                    expires: self.redeemable_until(),
                });
                ledger.flush().await
            }
            None => Ok(()),
        }
    }

    /// Records that the buyer was charged with `receipt` (the answer is on its way).
    pub fn paid(&mut self, receipt: SettleResponse) {
        let stage = Stage::Paid { receipt };
        self.guard.record(self.key, &stage, self.redeemable_until());
        self.update(stage);
    }

    /// The buyer has its answer: the authorization is spent.
    pub fn served(mut self) {
        let expires = self.retain_until;
        self.guard.record(self.key, &Stage::Served, expires);
        self.stage = Stage::Served;
        let mut table = self.guard.table();
        table.set(self.key, Stage::Served, false, expires);
    }

    /// The buyer was definitely not charged: forget the authorization, so it can be
    /// used again.
    pub fn not_charged(mut self) {
        self.stage = Stage::Fresh;
        if let Some(ledger) = &self.guard.ledger {
            ledger.send(Op::Delete { key: self.key });
        }
        // Dropping a Fresh hold forgets the entry.
    }

    fn redeemable_until(&self) -> u64 {
        self.now.saturating_add(REDEEMABLE_SECONDS)
    }

    fn update(&mut self, stage: Stage) {
        self.stage = stage.clone();
        let expires = self.redeemable_until();
        let mut table = self.guard.table();
        table.set(self.key, stage, true, expires);
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

enum Op {
    Put {
        key: AuthorizationKey,
        stage: Box<Stage>,
        expires: u64,
    },
    Delete {
        key: AuthorizationKey,
    },
    Flush(oneshot::Sender<Result<(), LedgerError>>),
}

/// The SQLite mirror, written by one thread that commits whatever has queued up in
/// one transaction (group commit).
struct Ledger {
    ops: Mutex<std::sync::mpsc::Sender<Op>>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS payments (
    chain_id    INTEGER NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    stage       TEXT NOT NULL CHECK (stage IN ('settling', 'paid', 'served')),
    transaction_hash TEXT,
    receipt     TEXT,
    expires     INTEGER NOT NULL,
    PRIMARY KEY (chain_id, asset, payer, nonce)
);
";

type Row = (AuthorizationKey, Stage, u64);

impl Ledger {
    fn open(path: &Path, now: u64) -> Result<(Self, Vec<Row>), LedgerError> {
        let sqlite = |e: rusqlite::Error| LedgerError::Sqlite {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        conn.execute(
            "DELETE FROM payments WHERE expires <= ?1",
            params![to_i64(now)],
        )
        .map_err(sqlite)?;
        let rows = load(&conn).map_err(sqlite)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("agora-ledger".into())
            .spawn(move || write_forever(conn, rx, shown))
            .map_err(|e| LedgerError::Sqlite {
                path: path.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((
            Self {
                ops: Mutex::new(tx),
            },
            rows,
        ))
    }

    fn send(&self, op: Op) {
        let sender = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        if sender.send(op).is_err() {
            tracing::error!("the payment ledger's writer stopped; records are in memory only");
        }
    }

    async fn flush(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx));
        rx.await.map_err(|_| LedgerError::Stopped)?
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn key_params(key: &AuthorizationKey) -> (i64, String, String, String) {
    (
        to_i64(key.chain_id),
        key.asset.to_string(),
        key.payer.to_string(),
        key.nonce.to_string(),
    )
}

fn load(conn: &Connection) -> Result<Vec<Row>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT chain_id, asset, payer, nonce, stage, transaction_hash, receipt, expires FROM payments",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, i64>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (chain, asset, payer, nonce, stage, hash, receipt, expires) = row?;
        let key = match (
            u64::try_from(chain),
            asset.parse(),
            payer.parse(),
            nonce.parse(),
        ) {
            (Ok(chain_id), Ok(asset), Ok(payer), Ok(nonce)) => AuthorizationKey {
                chain_id,
                asset,
                payer,
                nonce,
            },
            _ => {
                tracing::error!("payment ledger: skipping an unreadable row ({payer}, {nonce})");
                continue;
            }
        };
        let transaction = hash.and_then(|h| h.parse().ok());
        let stage = match stage.as_str() {
            "settling" => Stage::Settling { transaction },
            "paid" => match receipt.and_then(|r| serde_json::from_str::<SettleResponse>(&r).ok()) {
                Some(receipt) => Stage::Paid { receipt },
                // A paid row whose receipt cannot be read is settled again: the
                // facilitator answers the original receipt.
                None => Stage::Settling { transaction },
            },
            "served" => Stage::Served,
            other => {
                tracing::error!("payment ledger: unknown stage {other:?}; skipping");
                continue;
            }
        };
        out.push((key, stage, u64::try_from(expires).unwrap_or(0)));
    }
    Ok(out)
}

/// How often the writer deletes rows whose time is up, so the file stays the size of
/// what is remembered.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn write_forever(mut conn: Connection, ops: std::sync::mpsc::Receiver<Op>, path: String) {
    let mut pruned = std::time::Instant::now();
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while let Ok(more) = ops.try_recv() {
            batch.push(more);
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = std::time::Instant::now();
            let now = to_i64(x402::eip3009::unix_now());
            if let Err(e) = conn.execute("DELETE FROM payments WHERE expires <= ?1", params![now]) {
                tracing::warn!("payment ledger {path}: cannot prune expired rows: {e}");
            }
        }
        let written = write_batch(&mut conn, &batch).map_err(|e| LedgerError::Sqlite {
            path: path.clone(),
            message: e.to_string(),
        });
        if let Err(e) = &written {
            tracing::error!("{e}");
        }
        for op in batch {
            if let Op::Flush(done) = op {
                let _ = done.send(match &written {
                    Ok(()) => Ok(()),
                    Err(e) => Err(LedgerError::Sqlite {
                        path: path.clone(),
                        message: e.to_string(),
                    }),
                });
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Op]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    for op in batch {
        match op {
            Op::Put {
                key,
                stage,
                expires,
            } => {
                let (chain, asset, payer, nonce) = key_params(key);
                let (hash, receipt) = match stage.as_ref() {
                    Stage::Settling { transaction } => (transaction.map(|h| h.to_string()), None),
                    Stage::Paid { receipt } => (
                        receipt.transaction.map(|h| h.to_string()),
                        Some(receipt.to_wire(X402Version::V2).to_string()),
                    ),
                    Stage::Served | Stage::Fresh => (None, None),
                };
                if **stage == Stage::Fresh {
                    continue;
                }
                tx.execute(
                    "INSERT INTO payments (chain_id, asset, payer, nonce, stage, transaction_hash, receipt, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET
                         stage = excluded.stage, transaction_hash = excluded.transaction_hash,
                         receipt = excluded.receipt, expires = excluded.expires",
                    params![chain, asset, payer, nonce, stage.name(), hash, receipt, to_i64(*expires)],
                )?;
            }
            Op::Delete { key } => {
                let (chain, asset, payer, nonce) = key_params(key);
                tx.execute(
                    "DELETE FROM payments WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
                    params![chain, asset, payer, nonce],
                )?;
            }
            Op::Flush(_) => {}
        }
    }
    tx.commit()
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
        let hold = guard.begin(key(1), 100, 0).unwrap();
        assert_eq!(hold.stage(), &Stage::Fresh);
        assert_eq!(guard.begin(key(1), 100, 0).err(), Some(Refusal::InFlight));
        drop(hold);
        assert!(
            guard.is_empty(),
            "an early return gives the authorization back"
        );
        guard.begin(key(1), 100, 0).unwrap().served();
        assert_eq!(guard.begin(key(1), 100, 0).err(), Some(Refusal::Served));
    }

    #[tokio::test]
    async fn unknown_and_unanswered_payments_stay_redeemable() {
        let guard = Arc::new(ReplayGuard::in_memory());
        let mut hold = guard.begin(key(2), 100, 0).unwrap();
        hold.settling(Some(B256::repeat_byte(7))).await.unwrap();
        drop(hold);
        let mut hold = guard.begin(key(2), 100, 0).unwrap();
        assert_eq!(
            hold.stage(),
            &Stage::Settling {
                transaction: Some(B256::repeat_byte(7))
            }
        );
        hold.paid(receipt());
        drop(hold);
        let hold = guard.begin(key(2), 100, 0).unwrap();
        assert_eq!(hold.stage(), &Stage::Paid { receipt: receipt() });
        hold.served();
        assert_eq!(guard.begin(key(2), 100, 0).err(), Some(Refusal::Served));
        let mut hold = guard.begin(key(3), 100, 0).unwrap();
        hold.settling(None).await.unwrap();
        hold.not_charged();
        assert!(guard.stage(&key(3)).is_none());
    }

    #[test]
    fn served_entries_expire_by_queue_not_by_scan() {
        let guard = Arc::new(ReplayGuard::in_memory());
        for n in 0..100u8 {
            guard.begin(key(n), 10 + u64::from(n), 0).unwrap().served();
        }
        let hold = guard.begin(key(200), 1000, 50).unwrap();
        assert_eq!(
            guard.len(),
            100 - 41 + 1,
            "entries expiring at or before 50 went"
        );
        drop(hold);
        assert_eq!(
            guard.begin(key(99), 1000, 50).err(),
            Some(Refusal::Served),
            "a live entry stays"
        );
    }

    #[tokio::test]
    async fn the_ledger_brings_back_every_decided_stage_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
        {
            let guard = Arc::new(ReplayGuard::open(&path, 0).unwrap());
            let mut settling = guard.begin(key(1), 100, 0).unwrap();
            settling.settling(None).await.unwrap();
            let mut paid = guard.begin(key(2), 100, 0).unwrap();
            paid.paid(receipt());
            guard.begin(key(3), 100, 0).unwrap().served();
            let mut gone = guard.begin(key(4), 100, 0).unwrap();
            gone.settling(None).await.unwrap();
            gone.not_charged();
            let _fresh = guard.begin(key(5), 100, 0).unwrap();
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
        assert_eq!(guard.begin(key(3), 100, 1).err(), Some(Refusal::Served));
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
