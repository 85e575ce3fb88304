//! The facilitator's durable state in SQLite: the replay guard on each authorization
//! and the settlement journal.
//!
//! The journal is written ahead of the chain: a settlement is recorded as `sent`, with
//! its hash and raw bytes, before it is broadcast, so a crash at any point leaves enough
//! on disk to find out what happened and never to pay twice or lose the record.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use alloy::primitives::{Address, B256, Bytes, U256};
use rusqlite::{Connection, OptionalExtension, params};

pub use x402::eip3009::AuthorizationKey;

mod rows;

pub use rows::{GuardState, Settlement, SettlementStatus};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("facilitator database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row holds something this version cannot read.
    #[error("facilitator database holds an unreadable value: {0}")]
    Corrupt(String),
    /// Another process holds the database.
    #[error(
        "another agora process (serve --rpc, facilitator or demo) is using {path}; stop it first, or give this one its own AGORA_HOME or --db"
    )]
    Locked {
        /// The database file.
        path: String,
    },
    /// The lock file could not be created.
    #[error("cannot create the lock file {path}: {message}")]
    LockFile {
        /// The lock file.
        path: String,
        /// The OS error.
        message: String,
    },
}

/// The outcome of trying to take an authorization for verify or settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Taken.
    Granted,
    /// Someone holds it (verified and in flight, or settling).
    InFlight,
    /// Already paid.
    Settled,
}

/// SQLite-backed guard and journal; one connection, short transactions.
///
/// One process owns a database at a time (an exclusive lock on `<db>.lock`, held as
/// long as the store lives): two facilitators sharing a journal would each resolve the
/// other's settlements and reuse each other's reservations.
///
/// Writes are group-committed: every call's changes are durable (synchronous=FULL)
/// before it returns, but calls that arrive while another holds the connection run
/// inside the same SQLite transaction, each in its own savepoint, and the last of
/// them commits for all. Under concurrency one fsync then covers many payments
/// instead of one each, which is what kept settlement from scaling.
pub struct Store {
    conn: Mutex<Group>,
    /// Commits of the group transaction, so a call can wait for the one that covers it.
    committed: Condvar,
    /// Callers waiting for the connection: while there are any, the holder leaves
    /// the commit to them.
    waiting: AtomicUsize,
    /// Read-only (`inspect`): no group transaction is opened.
    read_only: bool,
    _lock: Option<std::fs::File>,
}

/// The connection and where its group transaction stands.
struct Group {
    conn: Connection,
    /// A group transaction is open.
    open: bool,
    /// Number of the group transaction being filled; bumped by each commit.
    epoch: u64,
    /// Group transactions whose commit failed (their callers get an error).
    failed: HashSet<u64>,
}

const SCHEMA: &str = "
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS authorizations (
    chain_id    INTEGER NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('reserved', 'settling', 'settled')),
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (chain_id, asset, payer, nonce)
);
CREATE TABLE IF NOT EXISTS settlements (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id   INTEGER NOT NULL,
    asset      TEXT NOT NULL,
    payer      TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    pay_to     TEXT NOT NULL,
    amount     TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'confirmed', 'failed')),
    tx_hash    TEXT,
    raw_tx     BLOB,
    prior_hashes TEXT NOT NULL DEFAULT '',
    error      TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_open ON settlements (status) WHERE status IN ('pending', 'sent');
";

/// Takes the exclusive lock beside `db`; the lock lives as long as the returned file.
fn lock(db: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::LockFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: db.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::LockFile {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

fn key_params(key: &AuthorizationKey) -> (i64, String, String, String) {
    (
        i64::try_from(key.chain_id).unwrap_or(i64::MAX),
        key.asset.to_string(),
        key.payer.to_string(),
        key.nonce.to_string(),
    )
}

impl Store {
    /// Opens (creating if needed) the database at `path`, taking its lock, and sweeps
    /// what a dead process left behind: reservations (their requests died with it)
    /// and `settling` claims whose settlement never reached the journal.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = lock(path)?;
        let conn = localdb::open(path, SCHEMA)?;
        let has_prior: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('settlements') WHERE name = 'prior_hashes'")?
            .exists([])?;
        if !has_prior {
            conn.execute_batch(
                "ALTER TABLE settlements ADD COLUMN prior_hashes TEXT NOT NULL DEFAULT ''",
            )?;
        }
        let store = Self::new(conn, false, Some(lock));
        store.sweep_orphans()?;
        Ok(store)
    }

    /// Opens the database read-only and without its lock, to look at the journal of
    /// a facilitator that is running (operators, tests). Nothing can be written.
    pub fn inspect(path: &Path) -> Result<Self, StoreError> {
        let conn = localdb::open_read_only(path)?;
        Ok(Self::new(conn, true, None))
    }

    fn new(conn: Connection, read_only: bool, lock: Option<std::fs::File>) -> Self {
        Self {
            conn: Mutex::new(Group {
                conn,
                open: false,
                epoch: 0,
                failed: HashSet::new(),
            }),
            committed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            read_only,
            _lock: lock,
        }
    }

    /// Frees claims no live request holds; only valid while this process holds the
    /// lock, which `open` guarantees.
    fn sweep_orphans(&self) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.savepoint()?;
            tx.execute("DELETE FROM authorizations WHERE state = 'reserved'", [])?;
            tx.execute(
                "UPDATE authorizations SET state = 'settled'
                 WHERE state = 'settling' AND EXISTS (
                     SELECT 1 FROM settlements s WHERE s.status = 'confirmed'
                     AND s.chain_id = authorizations.chain_id AND s.asset = authorizations.asset
                     AND s.payer = authorizations.payer AND s.nonce = authorizations.nonce)",
                [],
            )?;
            tx.execute(
                "DELETE FROM authorizations
                 WHERE state = 'settling' AND NOT EXISTS (
                     SELECT 1 FROM settlements s WHERE s.status IN ('pending', 'sent')
                     AND s.chain_id = authorizations.chain_id AND s.asset = authorizations.asset
                     AND s.payer = authorizations.payer AND s.nonce = authorizations.nonce)",
                [],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Group>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Corrupt("a previous database call panicked".into()))
    }

    /// Runs `f` inside the group transaction and returns once a commit covers it.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let locked = self.lock();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let mut group = locked?;
        if self.read_only {
            return f(&mut group.conn);
        }
        if !group.open {
            group.conn.execute_batch("BEGIN IMMEDIATE")?;
            group.open = true;
        }
        let result = f(&mut group.conn);
        let epoch = group.epoch;
        if self.waiting.load(Ordering::SeqCst) == 0 {
            // Nobody else is queued: commit the group (this call's work included).
            group.open = false;
            group.epoch += 1;
            if let Err(e) = group.conn.execute_batch("COMMIT") {
                let _ = group.conn.execute_batch("ROLLBACK");
                group.failed.retain(|failed| failed + 1024 > epoch);
                group.failed.insert(epoch);
                self.committed.notify_all();
                return Err(e.into());
            }
            self.committed.notify_all();
            return result;
        }
        // A queued caller will run next and commit this work with its own.
        while group.epoch == epoch {
            group = self
                .committed
                .wait(group)
                .map_err(|_| StoreError::Corrupt("a previous database call panicked".into()))?;
        }
        if group.failed.contains(&epoch) {
            return Err(StoreError::Corrupt(
                "the database could not commit this change; retry".into(),
            ));
        }
        result
    }

    /// Takes `key` for `want` (Reserved for verify, Settling for settle), atomically.
    ///
    /// A reservation whose lease ended counts as free; a settle may take over a live
    /// reservation (verify then settle is the normal path), a verify may not.
    pub fn claim(
        &self,
        key: &AuthorizationKey,
        want: GuardState,
        now: u64,
        lease_seconds: u64,
    ) -> Result<Claim, StoreError> {
        self.claim_from(key, want, now, lease_seconds)
            .map(|(verdict, _)| verdict)
    }

    /// [`Store::claim`], also saying where the authorization stood before: a settle
    /// that takes over a live reservation knows verify simulated it.
    pub fn claim_from(
        &self,
        key: &AuthorizationKey,
        want: GuardState,
        now: u64,
        lease_seconds: u64,
    ) -> Result<(Claim, Option<GuardState>), StoreError> {
        let (chain, asset, payer, nonce) = key_params(key);
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let current: Option<(String, i64)> = tx
                .query_row(
                    "SELECT state, lease_until FROM authorizations
                     WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
                    params![chain, asset, payer, nonce],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let now_i = i64::try_from(now).unwrap_or(i64::MAX);
            let prior = match &current {
                Some((state, lease_until)) => GuardState::parse(state)
                    .filter(|s| *s != GuardState::Reserved || *lease_until >= now_i),
                None => None,
            };
            let verdict = match current {
                None => Claim::Granted,
                Some((state, lease_until)) => match GuardState::parse(&state) {
                    Some(GuardState::Settled) => Claim::Settled,
                    Some(GuardState::Settling) => Claim::InFlight,
                    Some(GuardState::Reserved)
                        if want == GuardState::Settling || lease_until < now_i =>
                    {
                        Claim::Granted
                    }
                    Some(GuardState::Reserved) => Claim::InFlight,
                    None => return Err(StoreError::Corrupt(format!("guard state {state:?}"))),
                },
            };
            if verdict == Claim::Granted {
                let lease = i64::try_from(now.saturating_add(lease_seconds)).unwrap_or(i64::MAX);
                tx.execute(
                    "INSERT INTO authorizations (chain_id, asset, payer, nonce, state, lease_until)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (chain_id, asset, payer, nonce)
                     DO UPDATE SET state = excluded.state, lease_until = excluded.lease_until",
                    params![chain, asset, payer, nonce, want.as_str(), lease],
                )?;
            }
            tx.commit()?;
            Ok((verdict, prior))
        })
    }

    /// Frees a verified-but-unsettled `key` so the same authorization can be used
    /// again; a settlement in flight or done is never freed this way.
    pub fn release(&self, key: &AuthorizationKey) -> Result<(), StoreError> {
        let (chain, asset, payer, nonce) = key_params(key);
        self.with(|conn| {
            conn.execute(
                "DELETE FROM authorizations
                 WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state = 'reserved'",
                params![chain, asset, payer, nonce],
            )?;
            Ok(())
        })
    }

    /// Frees a claim that never reached the journal (a settle refused before it
    /// began); a settled authorization stays settled.
    pub fn unclaim(&self, key: &AuthorizationKey) -> Result<(), StoreError> {
        let (chain, asset, payer, nonce) = key_params(key);
        self.with(|conn| {
            conn.execute(
                "DELETE FROM authorizations
                 WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state != 'settled'",
                params![chain, asset, payer, nonce],
            )?;
            Ok(())
        })
    }

    /// Records a settlement about to be signed; returns its journal id.
    pub fn begin_settlement(
        &self,
        key: &AuthorizationKey,
        pay_to: Address,
        amount: U256,
        now: u64,
    ) -> Result<i64, StoreError> {
        let (chain, asset, payer, nonce) = key_params(key);
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.with(|conn| {
            conn.execute(
                "INSERT INTO settlements (chain_id, asset, payer, nonce, pay_to, amount, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                params![chain, asset, payer, nonce, pay_to.to_string(), amount.to_string(), now],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// Records the signed transaction before it is broadcast; `false` when the row was
    /// closed meanwhile (then nothing may be broadcast).
    pub fn mark_sent(
        &self,
        id: i64,
        tx_hash: B256,
        raw: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE settlements SET status = 'sent', tx_hash = ?2, raw_tx = ?3, updated_at = ?4
                 WHERE id = ?1 AND status = 'pending'",
                params![id, tx_hash.to_string(), raw, now],
            )?;
            Ok(changed == 1)
        })
    }

    /// Records one signed transaction for every settlement it carries (a batch), in
    /// one transaction, before it is broadcast. Returns the ids that were no longer
    /// `pending`; when there are any nothing is recorded (then the batch must be
    /// signed again without them).
    pub fn mark_sent_all(
        &self,
        ids: &[i64],
        tx_hash: B256,
        raw: &[u8],
        now: u64,
    ) -> Result<Vec<i64>, StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let hash = tx_hash.to_string();
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let mut closed = Vec::new();
            {
                let mut update = tx.prepare_cached(
                    "UPDATE settlements SET status = 'sent', tx_hash = ?2, raw_tx = ?3, updated_at = ?4
                     WHERE id = ?1 AND status = 'pending'",
                )?;
                for id in ids {
                    if update.execute(params![id, hash, raw, now])? != 1 {
                        closed.push(*id);
                    }
                }
            }
            if closed.is_empty() {
                tx.commit()?;
            }
            Ok(closed)
        })
    }

    /// Records a fee-bumped replacement of a `sent` settlement before it is broadcast;
    /// the replaced hash is kept, since either transaction may be the one that mines.
    pub fn mark_replaced(
        &self,
        id: i64,
        tx_hash: B256,
        raw: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE settlements
                 SET prior_hashes = CASE WHEN prior_hashes = '' THEN tx_hash ELSE prior_hashes || ',' || tx_hash END,
                     tx_hash = ?2, raw_tx = ?3, updated_at = ?4
                 WHERE id = ?1 AND status = 'sent'",
                params![id, tx_hash.to_string(), raw, now],
            )?;
            Ok(changed == 1)
        })
    }

    /// Closes an open settlement: confirmed marks the authorization settled for good;
    /// failed releases it. Only a row still open changes (the caller and the background
    /// resolver may race to close it); returns whether this call closed it. `tx_hash`
    /// names the transaction that mined, when it is not the latest one sent.
    pub fn finish_settlement(
        &self,
        settlement: &Settlement,
        status: SettlementStatus,
        error: Option<&str>,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.finish_with_hash(settlement, status, error, None, now)
    }

    /// [`Store::finish_settlement`], recording which transaction mined.
    pub fn finish_with_hash(
        &self,
        settlement: &Settlement,
        status: SettlementStatus,
        error: Option<&str>,
        mined: Option<B256>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (chain, asset, payer, nonce) = key_params(&settlement.key());
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let changed = tx.execute(
                "UPDATE settlements SET status = ?2, error = ?3, updated_at = ?4,
                     tx_hash = COALESCE(?5, tx_hash)
                 WHERE id = ?1 AND status IN ('pending', 'sent')",
                params![
                    settlement.id,
                    status.as_str(),
                    error,
                    now,
                    mined.map(|h| h.to_string())
                ],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            match status {
                SettlementStatus::Confirmed => {
                    tx.execute(
                        "INSERT INTO authorizations (chain_id, asset, payer, nonce, state, lease_until)
                         VALUES (?1, ?2, ?3, ?4, 'settled', 0)
                         ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET state = 'settled'",
                        params![chain, asset, payer, nonce],
                    )?;
                }
                SettlementStatus::Failed => {
                    tx.execute(
                        "DELETE FROM authorizations
                         WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state != 'settled'",
                        params![chain, asset, payer, nonce],
                    )?;
                }
                SettlementStatus::Pending | SettlementStatus::Sent => {}
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// One settlement by id.
    pub fn settlement(&self, id: i64) -> Result<Option<Settlement>, StoreError> {
        self.query("WHERE id = ?1", params![id])
            .map(|mut v| v.pop())
    }

    /// Settlements not yet confirmed or failed (to resolve after a restart).
    pub fn open_settlements(&self) -> Result<Vec<Settlement>, StoreError> {
        self.query("WHERE status IN ('pending', 'sent')", params![])
    }

    /// The newest settlement of `key`: what a repeated settle of the same
    /// authorization answers from instead of sending a second transaction.
    pub fn latest_for(&self, key: &AuthorizationKey) -> Result<Option<Settlement>, StoreError> {
        let (chain, asset, payer, nonce) = key_params(key);
        self.query(
            "WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
            params![chain, asset, payer, nonce],
        )
        .map(|mut v| v.pop())
    }

    /// The whole journal, oldest first.
    pub fn journal(&self) -> Result<Vec<Settlement>, StoreError> {
        self.query("", params![])
    }

    fn query(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Settlement>, StoreError> {
        let sql = format!(
            "SELECT id, chain_id, asset, payer, nonce, pay_to, amount, status, tx_hash, raw_tx, error,
                    prior_hashes, updated_at
             FROM settlements {filter} ORDER BY id"
        );
        self.with(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(args, |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    [
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, String>(7)?,
                    ],
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<Vec<u8>>>(9)?,
                    row.get::<_, Option<String>>(10)?,
                    row.get::<_, String>(11)?,
                    row.get::<_, i64>(12)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    id,
                    chain_id,
                    [asset, payer, nonce, pay_to, amount, status],
                    tx_hash,
                    raw,
                    error,
                    prior,
                    updated_at,
                ) = row?;
                let bad =
                    |what: &str, value: &str| StoreError::Corrupt(format!("{what} {value:?}"));
                out.push(Settlement {
                    id,
                    chain_id: u64::try_from(chain_id)
                        .map_err(|_| bad("chain id", &chain_id.to_string()))?,
                    asset: asset.parse().map_err(|_| bad("asset", &asset))?,
                    payer: payer.parse().map_err(|_| bad("payer", &payer))?,
                    nonce: nonce.parse().map_err(|_| bad("nonce", &nonce))?,
                    pay_to: pay_to.parse().map_err(|_| bad("payTo", &pay_to))?,
                    amount: amount.parse().map_err(|_| bad("amount", &amount))?,
                    status: SettlementStatus::parse(&status)
                        .ok_or_else(|| bad("status", &status))?,
                    tx_hash: tx_hash
                        .as_deref()
                        .map(|h| h.parse().map_err(|_| bad("tx hash", h)))
                        .transpose()?,
                    raw_tx: raw.map(Bytes::from),
                    prior_hashes: prior
                        .split(',')
                        .filter(|h| !h.is_empty())
                        .map(|h| h.parse().map_err(|_| bad("prior tx hash", h)))
                        .collect::<Result<_, _>>()?,
                    error,
                    updated_at: u64::try_from(updated_at).unwrap_or(0),
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests;
