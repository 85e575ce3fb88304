//! The replay guard's SQLite mirror: `Settling`, `Paid` and `Served` records written
//! by one thread that commits whatever has queued up in one transaction (group
//! commit), so SQLite never blocks the async workers and a restart finds every
//! decided authorization where it was.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use x402::eip3009::AuthorizationKey;
use x402::wire::{SettleResponse, X402Version};

use super::Stage;

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
        stage: Box<Stage>,
        expires: u64,
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

/// One remembered authorization: its key, stage and expiry (unix seconds).
pub(super) type Row = (AuthorizationKey, Stage, u64);

impl Ledger {
    /// Opens (or creates) the ledger at `path`, drops what expired by `now` and
    /// returns the rest with a running writer.
    pub(super) fn open(path: &Path, now: u64) -> Result<(Self, Vec<Row>), LedgerError> {
        let sqlite = |e: rusqlite::Error| LedgerError::Sqlite {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let conn = localdb::open(path, SCHEMA).map_err(sqlite)?;
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

    /// Queues `stage` for `key` (a `Fresh` stage is never written).
    pub(super) fn put(&self, key: AuthorizationKey, stage: &Stage, expires: u64) {
        self.send(Op::Put {
            key,
            stage: Box::new(stage.clone()),
            expires,
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
                Op::Put { ref stage, .. } if **stage == Stage::Served => {
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
                    params![chain, asset, payer, nonce, stage_name(stage), hash, receipt, to_i64(*expires)],
                )?;
            }
            Op::Delete { key } => {
                let (chain, asset, payer, nonce) = key_params(key);
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
