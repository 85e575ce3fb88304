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

use alloy::primitives::{Address, U256};
use rusqlite::{Connection, OptionalExtension, params};

pub use x402::eip3009::AuthorizationKey;

mod rows;
mod settlements;

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
    #[error("another process is using the facilitator database {path}")]
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
CREATE INDEX IF NOT EXISTS authorizations_reserved ON authorizations (lease_until) WHERE state = 'reserved';
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

fn key_params(key: &AuthorizationKey) -> rusqlite::Result<(i64, String, String, String)> {
    localdb::codec::authorization_key(key.chain_id, &key.asset, &key.payer, &key.nonce)
}

/// Schema versions after the first release: a journal written before
/// `prior_hashes` gains it on open (old settlements had no replaced transactions).
const MIGRATIONS: [localdb::Migration; 1] = [|conn| {
    localdb::add_column_if_missing(
        conn,
        "settlements",
        "prior_hashes",
        "TEXT NOT NULL DEFAULT ''",
    )
}];

impl Store {
    /// Opens (creating if needed) the database at `path`, taking its lock, and sweeps
    /// what a dead process left behind: reservations (their requests died with it)
    /// and `settling` claims whose settlement never reached the journal.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = lock(path)?;
        let conn = localdb::open(path, SCHEMA)?;
        localdb::migrate(&conn, &MIGRATIONS)?;
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
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let claimed = claim_on(&tx, key, want, now, lease_seconds)?;
            tx.commit()?;
            Ok(claimed)
        })
    }

    /// [`Store::claim_from`] for settling and, when granted and `begin`, the
    /// settlement's `pending` journal row, read back as stored, both in one commit:
    /// the paid path waits for one fsync here instead of three. Either both happen or
    /// neither does.
    pub fn claim_settlement(
        &self,
        key: &AuthorizationKey,
        terms: (Address, U256),
        begin: bool,
        now: u64,
        lease_seconds: u64,
    ) -> Result<(Claim, Option<GuardState>, Option<Settlement>), StoreError> {
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let (verdict, prior) = claim_on(&tx, key, GuardState::Settling, now, lease_seconds)?;
            let row = if verdict == Claim::Granted && begin {
                Some(settlements::begin_on(&tx, key, terms, now)?)
            } else {
                None
            };
            tx.commit()?;
            Ok((verdict, prior, row))
        })
    }

    /// Frees a verified-but-unsettled `key` so the same authorization can be used
    /// again; a settlement in flight or done is never freed this way.
    pub fn release(&self, key: &AuthorizationKey) -> Result<(), StoreError> {
        let (chain, asset, payer, nonce) = key_params(key)?;
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
        let (chain, asset, payer, nonce) = key_params(key)?;
        self.with(|conn| {
            conn.execute(
                "DELETE FROM authorizations
                 WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state != 'settled'",
                params![chain, asset, payer, nonce],
            )?;
            Ok(())
        })
    }
}

/// The claim itself, on a connection already inside the caller's savepoint.
fn claim_on(
    conn: &Connection,
    key: &AuthorizationKey,
    want: GuardState,
    now: u64,
    lease_seconds: u64,
) -> Result<(Claim, Option<GuardState>), StoreError> {
    let (chain, asset, payer, nonce) = key_params(key)?;
    let now_i = localdb::codec::saturating_int(now);
    if want == GuardState::Reserved {
        // Reservations whose lease ended are garbage: without this sweep, verifies
        // of fresh nonces would pile rows up until the next restart.
        conn.execute(
            "DELETE FROM authorizations WHERE state = 'reserved' AND lease_until < ?1",
            params![now_i],
        )?;
    }
    let current: Option<(String, i64)> = conn
        .query_row(
            "SELECT state, lease_until FROM authorizations
             WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
            params![chain, asset, payer, nonce],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let prior = match &current {
        Some((state, lease_until)) => {
            GuardState::parse(state).filter(|s| *s != GuardState::Reserved || *lease_until >= now_i)
        }
        None => None,
    };
    let verdict = match current {
        None => Claim::Granted,
        Some((state, lease_until)) => match GuardState::parse(&state) {
            Some(GuardState::Settled) => Claim::Settled,
            Some(GuardState::Settling) => Claim::InFlight,
            Some(GuardState::Reserved) if want == GuardState::Settling || lease_until < now_i => {
                Claim::Granted
            }
            Some(GuardState::Reserved) => Claim::InFlight,
            None => return Err(StoreError::Corrupt(format!("guard state {state:?}"))),
        },
    };
    if verdict == Claim::Granted {
        let lease = localdb::codec::saturating_int(now.saturating_add(lease_seconds));
        conn.execute(
            "INSERT INTO authorizations (chain_id, asset, payer, nonce, state, lease_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (chain_id, asset, payer, nonce)
             DO UPDATE SET state = excluded.state, lease_until = excluded.lease_until",
            params![chain, asset, payer, nonce, want.as_str(), lease],
        )?;
    }
    Ok((verdict, prior))
}

#[cfg(test)]
mod tests;
