//! The indexer's SQLite database: the raw registry events per block (the source of
//! truth, so a reorg is undone by deleting rows and replaying), the agents projected
//! from them with their fetched documents, a tag table for skill/domain/protocol
//! filters, recent block hashes for reorg detection, and the cursor.
//!
//! Every batch of blocks lands in one transaction together with the cursor, so a crash
//! or restart resumes exactly after the last committed block and never stores an event
//! twice (the event key is the primary key, and a duplicate is an error, not ignored).
//! Writes go through one connection, API reads (in `query`) through another; WAL lets
//! them overlap.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use alloy::hex;
use alloy::primitives::{Address, B256, Bytes};
use erc8004::Registration;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::agent::{OnChain, Profile};
use crate::events::{ChainEvent, Change};
use crate::query::TagKind;
use crate::record::{FetchError, FetchStatus};

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("indexer database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row holds something this version cannot read.
    #[error(
        "indexer database holds an unreadable value: {0}; delete the database file to re-index"
    )]
    Corrupt(String),
    /// The database follows another registry on this chain.
    #[error(
        "this database indexes registry {stored} on chain {chain_id}, not {configured}; use another database file for another registry"
    )]
    RegistryMismatch {
        /// The chain.
        chain_id: u64,
        /// The registry recorded in the database.
        stored: Address,
        /// The registry configured now.
        configured: Address,
    },
}

/// A block the index has reached, by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) block: u64,
    pub(crate) hash: B256,
}

/// One range of blocks, ready to commit.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The events in the range, in chain order.
    pub(crate) events: Vec<ChainEvent>,
    /// Hashes to remember for reorg detection (blocks with events, and the range end).
    pub(crate) hashes: Vec<Cursor>,
    /// The last block of the range.
    pub(crate) cursor: Cursor,
    /// Hashes below this block are forgotten.
    pub(crate) keep_from: u64,
}

/// An agent whose registration document is waiting to be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PendingFetch {
    pub(crate) chain_id: u64,
    pub(crate) agent_id: u64,
    pub(crate) uri: String,
}

/// How fetching one document ended.
#[derive(Debug, Clone)]
pub(crate) enum FetchOutcome {
    Fetched(Box<Registration>),
    Failed(FetchError),
}

/// SQLite store; see the module docs.
pub(crate) struct Store {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS chains (
    chain_id     INTEGER PRIMARY KEY,
    registry     TEXT NOT NULL,
    cursor_block INTEGER,
    cursor_hash  TEXT
);
CREATE TABLE IF NOT EXISTS blocks (
    chain_id INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    hash     TEXT NOT NULL,
    PRIMARY KEY (chain_id, number)
);
CREATE TABLE IF NOT EXISTS events (
    chain_id     INTEGER NOT NULL,
    block        INTEGER NOT NULL,
    log_index    INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    tx_hash      TEXT NOT NULL,
    agent_id     INTEGER NOT NULL,
    kind         TEXT NOT NULL
        CHECK (kind IN ('registered', 'uri_updated', 'metadata_set', 'transfer')),
    address      TEXT,
    from_address TEXT,
    uri          TEXT,
    meta_key     TEXT,
    meta_value   BLOB,
    PRIMARY KEY (chain_id, block, log_index)
);
CREATE INDEX IF NOT EXISTS events_by_agent ON events (chain_id, agent_id, block, log_index);
CREATE TABLE IF NOT EXISTS agents (
    chain_id         INTEGER NOT NULL,
    agent_id         INTEGER NOT NULL,
    registry         TEXT NOT NULL,
    owner            TEXT NOT NULL,
    uri              TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    registered_block INTEGER NOT NULL,
    registered_tx    TEXT NOT NULL,
    updated_block    INTEGER NOT NULL,
    registration     TEXT,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    image            TEXT,
    search_text      TEXT NOT NULL,
    x402             INTEGER NOT NULL,
    active           INTEGER NOT NULL,
    service_type     TEXT,
    skills           TEXT NOT NULL,
    domains          TEXT NOT NULL,
    protocols        TEXT NOT NULL,
    services         TEXT NOT NULL,
    fetch_status     TEXT NOT NULL CHECK (fetch_status IN ('pending', 'ok', 'error', 'none')),
    fetch_error_kind TEXT,
    fetch_error      TEXT,
    fetched_at       INTEGER,
    PRIMARY KEY (chain_id, agent_id)
);
CREATE INDEX IF NOT EXISTS agents_registered ON agents (registered_block, chain_id, agent_id);
CREATE INDEX IF NOT EXISTS agents_owner ON agents (owner);
CREATE INDEX IF NOT EXISTS agents_pending ON agents (chain_id, agent_id) WHERE fetch_status = 'pending';
CREATE TABLE IF NOT EXISTS tags (
    chain_id INTEGER NOT NULL,
    agent_id INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('skill', 'domain', 'protocol')),
    value    TEXT NOT NULL,
    PRIMARY KEY (chain_id, agent_id, kind, value)
);
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (kind, value, chain_id, agent_id);
";

/// SQLite integers are i64; block numbers, chain ids and stored agent ids fit.
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn uint(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v}")))
}

pub(crate) fn address_text(a: &Address) -> String {
    hex::encode_prefixed(a)
}

pub(crate) fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The fetch fields of an agent row.
#[derive(Debug, Clone)]
struct FetchState {
    status: FetchStatus,
    error: Option<FetchError>,
    fetched_at: Option<i64>,
}

impl FetchState {
    fn queued(uri: &str) -> Self {
        Self {
            status: if uri.trim().is_empty() {
                FetchStatus::None
            } else {
                FetchStatus::Pending
            },
            error: None,
            fetched_at: None,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = open_connection(path)?;
        writer.execute_batch(SCHEMA)?;
        let reader = open_connection(path)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| StoreError::Corrupt("a previous database call panicked".into()))?;
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self
            .reader
            .lock()
            .map_err(|_| StoreError::Corrupt("a previous database call panicked".into()))?;
        f(&conn)
    }

    /// Records that this database follows `registry` on `chain_id`, refusing another
    /// registry on the same chain (its agents would mix with these).
    pub(crate) fn bind(&self, chain_id: u64, registry: Address) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO chains (chain_id, registry) VALUES (?1, ?2)",
                params![int(chain_id), address_text(&registry)],
            )?;
            let stored: String = tx.query_row(
                "SELECT registry FROM chains WHERE chain_id = ?1",
                params![int(chain_id)],
                |row| row.get(0),
            )?;
            let stored: Address = parse(&stored, "registry")?;
            if stored != registry {
                return Err(StoreError::RegistryMismatch {
                    chain_id,
                    stored,
                    configured: registry,
                });
            }
            Ok(())
        })
    }

    /// The last indexed block of `chain_id`, if any.
    pub(crate) fn cursor(&self, chain_id: u64) -> Result<Option<Cursor>, StoreError> {
        self.read(|conn| {
            let row: Option<(Option<i64>, Option<String>)> = conn
                .query_row(
                    "SELECT cursor_block, cursor_hash FROM chains WHERE chain_id = ?1",
                    params![int(chain_id)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match row {
                Some((Some(block), Some(hash))) => Ok(Some(Cursor {
                    block: uint(block, "cursor block")?,
                    hash: parse(&hash, "cursor hash")?,
                })),
                _ => Ok(None),
            }
        })
    }

    /// Remembered block hashes of `chain_id`, newest first, for finding a fork point.
    pub(crate) fn recent_blocks(&self, chain_id: u64) -> Result<Vec<Cursor>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT number, hash FROM blocks WHERE chain_id = ?1 ORDER BY number DESC",
            )?;
            let rows = stmt.query_map(params![int(chain_id)], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (number, hash) = row?;
                Ok(Cursor {
                    block: uint(number, "block number")?,
                    hash: parse(&hash, "block hash")?,
                })
            })
            .collect()
        })
    }

    /// Commits one range: its events, the agents they change, remembered hashes and the
    /// cursor, atomically. Returns whether any document fetch was queued.
    pub(crate) fn apply(&self, chain_id: u64, batch: &Batch) -> Result<bool, StoreError> {
        self.write(|tx| {
            let chain = int(chain_id);
            let registry = registry_of(tx, chain_id)?;
            let mut by_agent: BTreeMap<u64, Vec<&ChainEvent>> = BTreeMap::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (chain_id, block, log_index, block_hash, tx_hash, agent_id,
                         kind, address, from_address, uri, meta_key, meta_value)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?;
                for event in &batch.events {
                    let (address, from, uri, key, value) = event_columns(&event.change);
                    insert.execute(params![
                        chain,
                        int(event.block),
                        int(event.log_index),
                        event.block_hash.to_string(),
                        event.tx_hash.to_string(),
                        int(event.agent_id),
                        event.change.kind(),
                        address,
                        from,
                        uri,
                        key,
                        value,
                    ])?;
                    by_agent.entry(event.agent_id).or_default().push(event);
                }
            }
            let mut queued = false;
            for (agent_id, mut events) in by_agent {
                events.sort_by_key(|e| (e.block, e.log_index));
                let state = events
                    .into_iter()
                    .fold(load_onchain(tx, chain_id, agent_id)?, OnChain::apply);
                queued |= write_agent(tx, chain_id, agent_id, &registry, state.as_ref())?;
            }
            {
                let mut remember = tx.prepare_cached(
                    "INSERT OR REPLACE INTO blocks (chain_id, number, hash) VALUES (?1, ?2, ?3)",
                )?;
                for cursor in batch.hashes.iter().chain([&batch.cursor]) {
                    remember.execute(params![chain, int(cursor.block), cursor.hash.to_string()])?;
                }
            }
            tx.execute(
                "DELETE FROM blocks WHERE chain_id = ?1 AND number < ?2",
                params![chain, int(batch.keep_from)],
            )?;
            tx.execute(
                "UPDATE chains SET cursor_block = ?2, cursor_hash = ?3 WHERE chain_id = ?1",
                params![
                    chain,
                    int(batch.cursor.block),
                    batch.cursor.hash.to_string()
                ],
            )?;
            Ok(queued)
        })
    }

    /// Undoes everything above `fork` (everything, when `None`): deletes those events and
    /// hashes, rebuilds the agents they touched from the events that remain, and moves
    /// the cursor back. Returns how many agents were rebuilt.
    pub(crate) fn rollback(
        &self,
        chain_id: u64,
        fork: Option<Cursor>,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let chain = int(chain_id);
            let above = fork.map_or(-1, |f| int(f.block));
            let registry = registry_of(tx, chain_id)?;
            let affected: Vec<i64> = {
                let mut stmt = tx.prepare(
                    "SELECT DISTINCT agent_id FROM events WHERE chain_id = ?1 AND block > ?2",
                )?;
                stmt.query_map(params![chain, above], |row| row.get(0))?
                    .collect::<Result<_, _>>()?
            };
            tx.execute(
                "DELETE FROM events WHERE chain_id = ?1 AND block > ?2",
                params![chain, above],
            )?;
            tx.execute(
                "DELETE FROM blocks WHERE chain_id = ?1 AND number > ?2",
                params![chain, above],
            )?;
            for agent_id in &affected {
                let agent_id = uint(*agent_id, "agent id")?;
                let state = replay(tx, chain_id, agent_id)?;
                write_agent(tx, chain_id, agent_id, &registry, state.as_ref())?;
            }
            tx.execute(
                "UPDATE chains SET cursor_block = ?2, cursor_hash = ?3 WHERE chain_id = ?1",
                params![
                    chain,
                    fork.map(|f| int(f.block)),
                    fork.map(|f| f.hash.to_string())
                ],
            )?;
            Ok(affected.len())
        })
    }

    /// Up to `limit` agents of `chain_id` whose documents are waiting.
    pub(crate) fn pending_fetches(
        &self,
        chain_id: u64,
        limit: usize,
    ) -> Result<Vec<PendingFetch>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT agent_id, uri FROM agents
                 WHERE fetch_status = 'pending' AND chain_id = ?1
                 ORDER BY agent_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![int(chain_id), int(limit as u64)], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (agent_id, uri) = row?;
                Ok(PendingFetch {
                    chain_id,
                    agent_id: uint(agent_id, "agent id")?,
                    uri,
                })
            })
            .collect()
        })
    }

    /// Stores fetch results; one whose agent has moved to another URI meanwhile is
    /// dropped (the new URI is already queued).
    pub(crate) fn record_fetches(
        &self,
        results: &[(PendingFetch, FetchOutcome)],
        now: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            for (pending, outcome) in results {
                let Some(state) = load_onchain(tx, pending.chain_id, pending.agent_id)? else {
                    continue;
                };
                if state.uri != pending.uri {
                    continue;
                }
                let registry = registry_of(tx, pending.chain_id)?;
                let (document, status, error) = match outcome {
                    FetchOutcome::Fetched(doc) => (Some(doc.as_ref()), FetchStatus::Ok, None),
                    FetchOutcome::Failed(e) => (None, FetchStatus::Error, Some(e.clone())),
                };
                let fetch = FetchState {
                    status,
                    error,
                    fetched_at: Some(int(now)),
                };
                put_agent(
                    tx,
                    pending.chain_id,
                    pending.agent_id,
                    &registry,
                    &state,
                    document,
                    &fetch,
                )?;
            }
            Ok(())
        })
    }
}

/// The columns one event fills: address, from_address, uri, meta_key, meta_value.
type EventColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

fn event_columns(change: &Change) -> EventColumns {
    match change {
        Change::Registered { uri, owner } => (
            Some(address_text(owner)),
            None,
            Some(uri.clone()),
            None,
            None,
        ),
        Change::UriUpdated { uri, by } => {
            (Some(address_text(by)), None, Some(uri.clone()), None, None)
        }
        Change::MetadataSet { key, value } => {
            (None, None, None, Some(key.clone()), Some(value.to_vec()))
        }
        Change::Transfer { from, to } => (
            Some(address_text(to)),
            Some(address_text(from)),
            None,
            None,
            None,
        ),
    }
}

fn registry_of(tx: &Transaction<'_>, chain_id: u64) -> Result<String, StoreError> {
    tx.query_row(
        "SELECT registry FROM chains WHERE chain_id = ?1",
        params![int(chain_id)],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::Corrupt(format!("chain {chain_id} is not bound to a registry")))
}

/// Folds every stored event of one agent from scratch.
fn replay(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
) -> Result<Option<OnChain>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT block, log_index, block_hash, tx_hash, kind, address, from_address, uri,
                meta_key, meta_value
         FROM events WHERE chain_id = ?1 AND agent_id = ?2 ORDER BY block, log_index",
    )?;
    let rows = stmt.query_map(params![int(chain_id), int(agent_id)], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, Option<String>>(7)?,
            row.get::<_, Option<String>>(8)?,
            row.get::<_, Option<Vec<u8>>>(9)?,
        ))
    })?;
    let mut state = None;
    for row in rows {
        let (block, log_index, block_hash, tx_hash, kind, address, from, uri, key, value) = row?;
        let addr = |a: Option<String>| -> Result<Address, StoreError> {
            parse(a.as_deref().unwrap_or_default(), "event address")
        };
        let change = match kind.as_str() {
            "registered" => Change::Registered {
                uri: uri.unwrap_or_default(),
                owner: addr(address)?,
            },
            "uri_updated" => Change::UriUpdated {
                uri: uri.unwrap_or_default(),
                by: addr(address)?,
            },
            "metadata_set" => Change::MetadataSet {
                key: key.unwrap_or_default(),
                value: Bytes::from(value.unwrap_or_default()),
            },
            "transfer" => Change::Transfer {
                from: addr(from)?,
                to: addr(address)?,
            },
            other => return Err(StoreError::Corrupt(format!("event kind {other:?}"))),
        };
        let event = ChainEvent {
            block: uint(block, "block")?,
            block_hash: parse(&block_hash, "block hash")?,
            log_index: uint(log_index, "log index")?,
            tx_hash: parse(&tx_hash, "tx hash")?,
            agent_id,
            change,
        };
        state = OnChain::apply(state, &event);
    }
    Ok(state)
}

/// The on-chain part of a stored agent row.
fn load_onchain(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
) -> Result<Option<OnChain>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT owner, uri, metadata, registered_block, registered_tx, updated_block
             FROM agents WHERE chain_id = ?1 AND agent_id = ?2",
        )?
        .query_row(params![int(chain_id), int(agent_id)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    row.map(|(owner, uri, metadata, registered, tx_hash, updated)| {
        Ok(OnChain {
            owner: parse(&owner, "owner")?,
            uri,
            metadata: json(&metadata, "metadata")?,
            registered_block: uint(registered, "block")?,
            registered_tx: parse(&tx_hash, "tx hash")?,
            updated_block: uint(updated, "block")?,
        })
    })
    .transpose()
}

/// Writes (or deletes, for `None`) an agent after its on-chain state changed. The
/// fetched document is kept while the URI is unchanged; a new URI queues a fetch.
/// Returns whether a fetch was queued.
fn write_agent(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
    registry: &str,
    state: Option<&OnChain>,
) -> Result<bool, StoreError> {
    let key = params![int(chain_id), int(agent_id)];
    let Some(state) = state else {
        tx.execute(
            "DELETE FROM agents WHERE chain_id = ?1 AND agent_id = ?2",
            key,
        )?;
        tx.execute(
            "DELETE FROM tags WHERE chain_id = ?1 AND agent_id = ?2",
            key,
        )?;
        return Ok(false);
    };
    type Kept = (
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let existing: Option<Kept> = tx
        .prepare_cached(
            "SELECT uri, registration, fetch_status, fetch_error_kind, fetch_error, fetched_at
             FROM agents WHERE chain_id = ?1 AND agent_id = ?2",
        )?
        .query_row(key, |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .optional()?;
    let (document, fetch) = match existing {
        Some((uri, registration, status, kind, message, fetched_at)) if uri == state.uri => {
            let document: Option<Registration> = registration
                .as_deref()
                .map(|r| json(r, "registration"))
                .transpose()?;
            let status = FetchStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("fetch status {status:?}")))?;
            let error = kind.map(|kind| FetchError {
                kind,
                message: message.unwrap_or_default(),
            });
            (
                document,
                FetchState {
                    status,
                    error,
                    fetched_at,
                },
            )
        }
        _ => (None, FetchState::queued(&state.uri)),
    };
    put_agent(
        tx,
        chain_id,
        agent_id,
        registry,
        state,
        document.as_ref(),
        &fetch,
    )?;
    Ok(fetch.status == FetchStatus::Pending)
}

/// Upserts the agent row with its derived listing and rewrites its tags.
fn put_agent(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
    registry: &str,
    state: &OnChain,
    document: Option<&Registration>,
    fetch: &FetchState,
) -> Result<(), StoreError> {
    let profile = Profile::derive(state, document);
    let registration = document.map(to_json).transpose()?;
    tx.prepare_cached(
        "INSERT INTO agents (chain_id, agent_id, registry, owner, uri, metadata,
             registered_block, registered_tx, updated_block, registration, name, description,
             image, search_text, x402, active, service_type, skills, domains, protocols,
             services, fetch_status, fetch_error_kind, fetch_error, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)
         ON CONFLICT (chain_id, agent_id) DO UPDATE SET
             registry = excluded.registry, owner = excluded.owner, uri = excluded.uri,
             metadata = excluded.metadata, registered_block = excluded.registered_block,
             registered_tx = excluded.registered_tx, updated_block = excluded.updated_block,
             registration = excluded.registration, name = excluded.name,
             description = excluded.description, image = excluded.image,
             search_text = excluded.search_text, x402 = excluded.x402,
             active = excluded.active, service_type = excluded.service_type,
             skills = excluded.skills, domains = excluded.domains,
             protocols = excluded.protocols, services = excluded.services,
             fetch_status = excluded.fetch_status, fetch_error_kind = excluded.fetch_error_kind,
             fetch_error = excluded.fetch_error, fetched_at = excluded.fetched_at",
    )?
    .execute(params![
        int(chain_id),
        int(agent_id),
        registry,
        address_text(&state.owner),
        state.uri,
        to_json(&state.metadata)?,
        int(state.registered_block),
        state.registered_tx.to_string(),
        int(state.updated_block),
        registration,
        profile.name,
        profile.description,
        profile.image,
        profile.search_text(),
        profile.x402,
        profile.active,
        profile.service_type,
        to_json(&profile.skills)?,
        to_json(&profile.domains)?,
        to_json(&profile.protocols)?,
        to_json(&profile.services)?,
        fetch.status.as_str(),
        fetch.error.as_ref().map(|e| e.kind.clone()),
        fetch.error.as_ref().map(|e| e.message.clone()),
        fetch.fetched_at,
    ])?;
    let key = params![int(chain_id), int(agent_id)];
    tx.prepare_cached("DELETE FROM tags WHERE chain_id = ?1 AND agent_id = ?2")?
        .execute(key)?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO tags (chain_id, agent_id, kind, value) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let tags = profile
        .skills
        .iter()
        .map(|s| (TagKind::Skill, s.clone()))
        .chain(profile.domains.iter().map(|d| (TagKind::Domain, d.clone())))
        .chain(
            profile
                .protocols
                .iter()
                .map(|p| (TagKind::Protocol, p.to_lowercase())),
        );
    for (kind, value) in tags {
        insert.execute(params![int(chain_id), int(agent_id), kind.as_str(), value])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{AgentQuery, Sort};
    use crate::record::AgentRecord;
    use alloy::primitives::address;

    const REGISTRY: Address = address!("0x8004A818BFB912233c491871b3d84c89A494BD9e");
    const OWNER: Address = address!("0x00000000000000000000000000000000000000aa");
    const BUYER: Address = address!("0x00000000000000000000000000000000000000bb");

    fn hash(block: u64, fork: u8) -> B256 {
        let mut h = B256::repeat_byte(fork);
        h.0[..8].copy_from_slice(&block.to_be_bytes());
        h
    }

    fn event(block: u64, log_index: u64, agent_id: u64, fork: u8, change: Change) -> ChainEvent {
        ChainEvent {
            block,
            block_hash: hash(block, fork),
            log_index,
            tx_hash: hash(block, fork ^ 0xff),
            agent_id,
            change,
        }
    }

    fn mint(block: u64, agent_id: u64, uri: &str, fork: u8) -> Vec<ChainEvent> {
        vec![
            event(
                block,
                agent_id * 2,
                agent_id,
                fork,
                Change::Transfer {
                    from: Address::ZERO,
                    to: OWNER,
                },
            ),
            event(
                block,
                agent_id * 2 + 1,
                agent_id,
                fork,
                Change::Registered {
                    uri: uri.into(),
                    owner: OWNER,
                },
            ),
        ]
    }

    fn batch(events: Vec<ChainEvent>, block: u64, fork: u8) -> Batch {
        let hashes = events
            .iter()
            .map(|e| Cursor {
                block: e.block,
                hash: e.block_hash,
            })
            .collect();
        Batch {
            events,
            hashes,
            cursor: Cursor {
                block,
                hash: hash(block, fork),
            },
            keep_from: 0,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.db")).unwrap();
        store.bind(84532, REGISTRY).unwrap();
        (dir, store)
    }

    fn all(store: &Store) -> Vec<AgentRecord> {
        store
            .list(&AgentQuery {
                limit: 100,
                sort: Sort::RegisteredAsc,
                ..AgentQuery::default()
            })
            .unwrap()
            .0
    }

    #[test]
    fn a_database_follows_one_registry_per_chain() {
        let (_dir, store) = open();
        store.bind(84532, REGISTRY).unwrap();
        let err = store.bind(84532, OWNER).unwrap_err();
        assert!(matches!(err, StoreError::RegistryMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("use another database file"),
            "{err}"
        );
        store.bind(8453, OWNER).unwrap();
    }

    #[test]
    fn rollback_undoes_blocks_above_the_fork_and_keeps_documents_below() {
        let (_dir, store) = open();
        assert_eq!(store.cursor(84532).unwrap(), None);
        let mut below = mint(3, 0, "ipfs://a", 1);
        below.extend(mint(4, 2, "ipfs://c", 1));
        assert!(store.apply(84532, &batch(below, 5, 1)).unwrap());
        let doc: Registration = serde_json::from_str(r#"{"name":"kept"}"#).unwrap();
        let pending = store.pending_fetches(84532, 10).unwrap();
        assert_eq!(pending.len(), 2);
        let results: Vec<_> = pending
            .into_iter()
            .map(|p| (p, FetchOutcome::Fetched(Box::new(doc.clone()))))
            .collect();
        store.record_fetches(&results, 7).unwrap();

        let mut later = mint(8, 1, "ipfs://b", 2);
        later.push(event(
            9,
            0,
            0,
            2,
            Change::Transfer {
                from: OWNER,
                to: BUYER,
            },
        ));
        later.push(event(
            9,
            1,
            2,
            2,
            Change::UriUpdated {
                uri: "ipfs://moved".into(),
                by: OWNER,
            },
        ));
        store.apply(84532, &batch(later, 10, 2)).unwrap();
        let agents = all(&store);
        assert_eq!(agents.len(), 3);
        assert_eq!(agents[0].owner_address, BUYER);
        assert_eq!(agents[0].name, "kept");
        assert_eq!(agents[1].uri, "ipfs://moved");
        assert_eq!(agents[1].fetch_status, FetchStatus::Pending);
        assert_eq!(
            store
                .recent_blocks(84532)
                .unwrap()
                .iter()
                .map(|c| c.block)
                .collect::<Vec<_>>(),
            [10, 9, 8, 5, 4, 3]
        );

        let rebuilt = store
            .rollback(
                84532,
                Some(Cursor {
                    block: 5,
                    hash: hash(5, 1),
                }),
            )
            .unwrap();
        assert_eq!(rebuilt, 3);
        let agents = all(&store);
        let ids: Vec<u64> = agents.iter().map(|a| a.agent_id).collect();
        assert_eq!(ids, [0, 2], "agent 1 only existed above the fork");
        assert_eq!(agents[0].owner_address, OWNER);
        assert_eq!(agents[0].name, "kept", "same URI, document kept");
        assert_eq!(agents[0].fetch_status, FetchStatus::Ok);
        assert_eq!(agents[0].fetched_at, Some(7));
        assert_eq!(agents[1].uri, "ipfs://c");
        assert_eq!(
            agents[1].fetch_status,
            FetchStatus::Pending,
            "back on its old URI, fetched again"
        );
        assert_eq!(store.cursor(84532).unwrap().unwrap().block, 5);
        assert_eq!(store.stats().unwrap().total_events, 4);

        let replayed = mint(8, 1, "ipfs://b", 3);
        store.apply(84532, &batch(replayed, 10, 3)).unwrap();
        assert_eq!(
            all(&store).len(),
            3,
            "the same ids index again on the new branch"
        );

        store.rollback(84532, None).unwrap();
        assert!(all(&store).is_empty());
        assert_eq!(store.cursor(84532).unwrap(), None);
        assert!(store.recent_blocks(84532).unwrap().is_empty());
    }

    #[test]
    fn a_block_is_never_stored_twice() {
        let (_dir, store) = open();
        store.apply(84532, &batch(mint(3, 0, "", 1), 3, 1)).unwrap();
        assert!(store.apply(84532, &batch(mint(3, 0, "", 1), 3, 1)).is_err());
        let agents = all(&store);
        assert_eq!(agents.len(), 1);
        assert_eq!(
            agents[0].fetch_status,
            FetchStatus::None,
            "no URI, nothing to fetch"
        );
    }

    #[test]
    fn late_fetch_results_for_an_old_uri_are_dropped() {
        let (_dir, store) = open();
        store
            .apply(84532, &batch(mint(1, 0, "ipfs://old", 1), 1, 1))
            .unwrap();
        let stale = store.pending_fetches(84532, 10).unwrap().remove(0);
        let update = event(
            2,
            0,
            0,
            1,
            Change::UriUpdated {
                uri: "ipfs://new".into(),
                by: OWNER,
            },
        );
        store.apply(84532, &batch(vec![update], 2, 1)).unwrap();
        let failure = FetchError {
            kind: "timeout".into(),
            message: "slow".into(),
        };
        store
            .record_fetches(&[(stale, FetchOutcome::Failed(failure))], 1)
            .unwrap();
        let agent = store.get(84532, 0).unwrap().unwrap();
        assert_eq!(agent.fetch_status, FetchStatus::Pending);
        assert_eq!(agent.fetch_error, None);
        assert_eq!(
            store.pending_fetches(84532, 10).unwrap()[0].uri,
            "ipfs://new"
        );
    }
}
