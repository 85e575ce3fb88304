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

use rusqlite::Connection;

pub use x402::eip3009::AuthorizationKey;

mod guard;
mod lock_file;
mod rows;
mod schema;
mod settlements;

pub use guard::Claim;
pub use rows::{GuardState, Settlement, SettlementStatus};

use guard::key_params;
use lock_file::lock;
use schema::{MIGRATIONS, SCHEMA};

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
}

#[cfg(test)]
mod tests;
