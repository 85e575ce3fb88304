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
//!
//! This file holds the types and the connections; [`chain`] commits and rolls back
//! block ranges, [`projection`] folds events into agent rows, [`fetch_queue`] is the
//! document queue and [`codec`] converts values to and from columns.

use std::path::Path;
use std::sync::Mutex;

use alloy::primitives::{Address, B256};
use erc8004::Registration;
use rusqlite::{Connection, Transaction};

use crate::events::ChainEvent;
use crate::record::{FetchError, FetchStatus};

mod chain;
mod codec;
mod fetch_queue;
mod projection;
#[cfg(test)]
mod tests;

pub(crate) use codec::{address_text, int, json, parse, uint};

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

/// The tables and indexes, applied on every open (all `IF NOT EXISTS`).
const SCHEMA: &str = include_str!("schema.sql");

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
        let writer = localdb::open(path, SCHEMA)?;
        let reader = localdb::connect(path)?;
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
}
