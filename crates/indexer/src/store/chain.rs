//! Following the chain: which registry a database belongs to, the cursor and remembered
//! block hashes, committing a range of blocks and rolling one back after a reorg.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use rusqlite::{OptionalExtension, Transaction, params};

use super::codec::{address_text, event_columns, int, parse, uint};
use super::projection::{load_onchain, replay, write_agent};
use super::{Batch, Cursor, Store, StoreError};
use crate::agent::OnChain;
use crate::events::ChainEvent;

impl Store {
    /// Records that this database follows `registry` on `chain_id`, refusing another
    /// registry on the same chain (its agents would mix with these).
    pub(crate) fn bind(&self, chain_id: u64, registry: Address) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO chains (chain_id, registry) VALUES (?1, ?2)",
                params![int(chain_id)?, address_text(&registry)],
            )?;
            let stored: String = tx.query_row(
                "SELECT registry FROM chains WHERE chain_id = ?1",
                params![int(chain_id)?],
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
                    params![int(chain_id)?],
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
            let rows = stmt.query_map(params![int(chain_id)?], |row| {
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
            let chain = int(chain_id)?;
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
                        int(event.block)?,
                        int(event.log_index)?,
                        event.block_hash.to_string(),
                        event.tx_hash.to_string(),
                        int(event.agent_id)?,
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
                    remember.execute(params![
                        chain,
                        int(cursor.block)?,
                        cursor.hash.to_string()
                    ])?;
                }
            }
            tx.execute(
                "DELETE FROM blocks WHERE chain_id = ?1 AND number < ?2",
                params![chain, int(batch.keep_from)?],
            )?;
            tx.execute(
                "UPDATE chains SET cursor_block = ?2, cursor_hash = ?3 WHERE chain_id = ?1",
                params![
                    chain,
                    int(batch.cursor.block)?,
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
            let chain = int(chain_id)?;
            let above = fork.map_or(Ok(-1), |f| int(f.block))?;
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
                    fork.map(|f| int(f.block)).transpose()?,
                    fork.map(|f| f.hash.to_string())
                ],
            )?;
            Ok(affected.len())
        })
    }
}

pub(super) fn registry_of(tx: &Transaction<'_>, chain_id: u64) -> Result<String, StoreError> {
    tx.query_row(
        "SELECT registry FROM chains WHERE chain_id = ?1",
        params![int(chain_id)?],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::Corrupt(format!("chain {chain_id} is not bound to a registry")))
}
