//! The replay guard's SQLite mirror: `Settling`, `Paid` and `Served` records written
//! by one thread that commits whatever has queued up in one transaction (group
//! commit), so SQLite never blocks the async workers and a restart finds every
//! decided authorization where it was, bound to the request it paid for.
//!
//! The file is synced in full (`synchronous = FULL`): a `Settling` record written
//! before a settle must survive a power cut, not only a crash of the process.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use x402::eip3009::AuthorizationKey;
use x402::wire::{SettleResponse, X402Version};

use alloy::primitives::B256;

use super::{RequestDigest, Stage};

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

/// One write for the writer thread, in the order it was asked for.
enum Op {
    Put {
        key: AuthorizationKey,
        record: Box<Record>,
    },
    Delete {
        key: AuthorizationKey,
    },
    /// Commit what is queued; served records keep their delay.
    Flush(oneshot::Sender<Result<(), LedgerError>>),
    /// Commit everything, served records too (shutdown, after the answers went out).
    FlushAll(oneshot::Sender<Result<(), LedgerError>>),
}

/// The SQLite mirror, written by one thread that commits whatever has queued up in
/// one transaction (group commit).
pub(super) struct Ledger {
    ops: Mutex<std::sync::mpsc::Sender<Op>>,
}

const SCHEMA: &str = "
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS payments (
    chain_id    INTEGER NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    stage       TEXT NOT NULL CHECK (stage IN ('settling', 'paid', 'served')),
    transaction_hash TEXT,
    receipt     TEXT,
    expires     INTEGER NOT NULL,
    request_digest TEXT,
    redemptions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, asset, payer, nonce)
);
";

/// Schema versions after the first release: a ledger written before them gains the
/// columns on open (old rows read as unbound, never redeemed).
const MIGRATIONS: [localdb::Migration; 2] = [
    |conn| localdb::add_column_if_missing(conn, "payments", "request_digest", "TEXT"),
    |conn| {
        localdb::add_column_if_missing(
            conn,
            "payments",
            "redemptions",
            "INTEGER NOT NULL DEFAULT 0",
        )
    },
];

/// What is remembered of one authorization.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    /// Where it stands.
    pub(super) stage: Stage,
    /// When it is forgotten (unix seconds).
    pub(super) expires: u64,
    /// The request it is bound to; `None` for a row written before binding existed.
    pub(super) digest: Option<RequestDigest>,
    /// Redemptions so far.
    pub(super) redemptions: u32,
}

/// One remembered authorization and its record.
pub(super) type Row = (AuthorizationKey, Record);

impl Ledger {
    /// Opens (or creates) the ledger at `path`, drops what expired by `now` and
    /// returns the rest with a running writer.
    pub(super) fn open(path: &Path, now: u64) -> Result<(Self, Vec<Row>), LedgerError> {
        let sqlite = |e: rusqlite::Error| LedgerError::Sqlite {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let conn = localdb::open(path, SCHEMA).map_err(sqlite)?;
        localdb::migrate(&conn, &MIGRATIONS).map_err(sqlite)?;
        conn.execute(
            "DELETE FROM payments WHERE expires <= ?1",
            params![localdb::codec::saturating_int(now)],
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

    /// Queues `record` for `key` (a `Fresh` stage is never written).
    pub(super) fn put(&self, key: AuthorizationKey, record: Record) {
        self.send(Op::Put {
            key,
            record: Box::new(record),
        });
    }

    /// Queues forgetting `key`.
    pub(super) fn delete(&self, key: AuthorizationKey) {
        self.send(Op::Delete { key });
    }

    fn send(&self, op: Op) {
        let sender = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        if sender.send(op).is_err() {
            tracing::error!("the payment ledger's writer stopped; records are in memory only");
        }
    }

    /// Waits until everything queued so far is committed.
    pub(super) async fn flush(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx));
        rx.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Waits until everything queued so far is committed, delayed served records too.
    pub(super) async fn flush_all(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::FlushAll(tx));
        rx.await.map_err(|_| LedgerError::Stopped)?
    }
}

fn key_params(key: &AuthorizationKey) -> rusqlite::Result<(i64, String, String, String)> {
    localdb::codec::authorization_key(key.chain_id, &key.asset, &key.payer, &key.nonce)
}

fn load(conn: &Connection) -> Result<Vec<Row>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT chain_id, asset, payer, nonce, stage, transaction_hash, receipt, expires, request_digest, redemptions FROM payments",
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
            row.get::<_, Option<String>>(8)?,
            row.get::<_, i64>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (chain, asset, payer, nonce, stage, hash, receipt, expires, digest, redemptions) = row?;
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
        let digest = match digest.map(|d| d.parse::<B256>()) {
            None => None,
            Some(Ok(d)) => Some(RequestDigest(d)),
            Some(Err(_)) => {
                // Unreadable, so no request could prove it is the one: keep the row
                // (a settle must still be learned) but let nothing redeem it.
                tracing::error!("payment ledger: unreadable request digest for ({payer}, {nonce})");
                Some(RequestDigest(B256::ZERO))
            }
        };
        out.push((
            key,
            Record {
                stage,
                expires: u64::try_from(expires).unwrap_or(0),
                digest,
                redemptions: u32::try_from(redemptions).unwrap_or(u32::MAX),
            },
        ));
    }
    Ok(out)
}

/// How often the writer deletes rows whose time is up, so the file stays the size of
/// what is remembered.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a `served` record waits before it is written. The answer's last byte was
/// handed to hyper, not yet to the socket: a kill -9 in between must leave the
/// authorization `paid` (redeemable with the same header, answered again with the
/// original receipt), never `served` with no answer delivered. By the time this
/// passes the bytes are in the kernel, which delivers them even if the process dies.
/// The live process refuses a replay at once from memory; only a crash inside this
/// window can cost the seller one extra answer, never the buyer a second charge.
pub const SERVED_WRITE_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

fn write_forever(mut conn: Connection, ops: std::sync::mpsc::Receiver<Op>, path: String) {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Instant;
    let mut pruned = Instant::now();
    // Served records, in the order they came (one delay, so due times only grow).
    let mut deferred: std::collections::VecDeque<(Instant, Op)> = Default::default();
    let mut open = true;
    while open || !deferred.is_empty() {
        let first = match deferred.front() {
            _ if !open => None,
            Some((due, _)) => match ops.recv_timeout(due.saturating_duration_since(Instant::now()))
            {
                Ok(op) => Some(op),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            },
            None => match ops.recv() {
                Ok(op) => Some(op),
                Err(_) => return,
            },
        };
        let mut received: Vec<Op> = first.into_iter().collect();
        if open {
            while let Ok(more) = ops.try_recv() {
                received.push(more);
            }
        }
        let now = Instant::now();
        let everything = received.iter().any(|op| matches!(op, Op::FlushAll(_)));
        let mut batch = Vec::new();
        // Ripe served records first: nothing later in the queue touches a served key.
        while let Some((due, _)) = deferred.front() {
            if open && !everything && *due > now {
                break;
            }
            batch.extend(deferred.pop_front().map(|(_, op)| op));
        }
        for op in received {
            match op {
                Op::Put { ref record, .. } if record.stage == Stage::Served => {
                    deferred.push_back((now + SERVED_WRITE_DELAY, op));
                }
                op => batch.push(op),
            }
        }
        if batch.is_empty() {
            continue;
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            let now = localdb::codec::saturating_int(x402::time::unix_now());
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
            if let Op::Flush(done) | Op::FlushAll(done) = op {
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
            Op::Put { key, record } => {
                let stage = &record.stage;
                let (chain, asset, payer, nonce) = key_params(key)?;
                let (hash, receipt) = match stage {
                    Stage::Settling { transaction } => (transaction.map(|h| h.to_string()), None),
                    Stage::Paid { receipt } => (
                        receipt.transaction.map(|h| h.to_string()),
                        Some(receipt.to_wire(X402Version::V2).to_string()),
                    ),
                    Stage::Served | Stage::Fresh => (None, None),
                };
                if *stage == Stage::Fresh {
                    continue;
                }
                let digest = record.digest.map(|d| d.0.to_string());
                tx.execute(
                    "INSERT INTO payments (chain_id, asset, payer, nonce, stage, transaction_hash, receipt, expires, request_digest, redemptions)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET
                         stage = excluded.stage, transaction_hash = excluded.transaction_hash,
                         receipt = excluded.receipt, expires = excluded.expires,
                         request_digest = excluded.request_digest, redemptions = excluded.redemptions",
                    params![
                        chain,
                        asset,
                        payer,
                        nonce,
                        stage_name(stage),
                        hash,
                        receipt,
                        localdb::codec::saturating_int(record.expires),
                        digest,
                        i64::from(record.redemptions)
                    ],
                )?;
            }
            Op::Delete { key } => {
                let (chain, asset, payer, nonce) = key_params(key)?;
                tx.execute(
                    "DELETE FROM payments WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
                    params![chain, asset, payer, nonce],
                )?;
            }
            Op::Flush(_) | Op::FlushAll(_) => {}
        }
    }
    tx.commit()
}

/// The word a stage is stored under (the schema's CHECK lists the written ones).
fn stage_name(stage: &Stage) -> &'static str {
    match stage {
        Stage::Fresh => "fresh",
        Stage::Settling { .. } => "settling",
        Stage::Paid { .. } => "paid",
        Stage::Served => "served",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L6: the `Settling` record written before a settle must survive a power cut,
    /// so the ledger syncs every commit in full (WAL's default, NORMAL, does not).
    #[test]
    fn the_ledger_syncs_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let conn = localdb::open(&dir.path().join("payments.db"), SCHEMA).unwrap();
        let level: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(level, 2, "2 is FULL");
    }

    /// A ledger written before request binding (no `request_digest`, no
    /// `redemptions`, no schema version) opens, keeps its rows as unbound and never
    /// redeemed, and is stamped with the current version.
    #[tokio::test]
    async fn a_ledger_from_before_request_binding_opens_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
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
        let key = AuthorizationKey {
            chain_id: 84532,
            asset: alloy::primitives::Address::repeat_byte(1),
            payer: alloy::primitives::Address::repeat_byte(2),
            nonce: B256::repeat_byte(3),
        };
        let (chain, asset, payer, nonce) = key_params(&key).unwrap();
        old.execute(
            "INSERT INTO payments VALUES (?1, ?2, ?3, ?4, 'served', NULL, NULL, 2000)",
            params![chain, asset, payer, nonce],
        )
        .unwrap();
        drop(old);

        let (ledger, rows) = Ledger::open(&path, 1000).unwrap();
        let expected = Record {
            stage: Stage::Served,
            expires: 2000,
            digest: None,
            redemptions: 0,
        };
        assert_eq!(rows, vec![(key, expected.clone())]);
        ledger.put(
            key,
            Record {
                stage: Stage::Settling { transaction: None },
                redemptions: 1,
                ..expected
            },
        );
        ledger.flush_all().await.unwrap();
        drop(ledger);

        let reader = localdb::connect(&path).unwrap();
        let (version, redemptions): (i64, i64) = reader
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), redemptions FROM payments",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, redemptions), (2, 1));
    }
}
