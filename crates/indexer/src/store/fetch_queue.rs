//! The document queue: agents whose registration document is waiting, and storing what
//! fetching it found.

use rusqlite::params;

use super::chain::registry_of;
use super::codec::{int, uint};
use super::projection::{load_onchain, put_agent};
use super::{FetchOutcome, FetchState, PendingFetch, Store, StoreError};
use crate::record::FetchStatus;

impl Store {
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
            let rows = stmt.query_map(
                params![int(chain_id)?, localdb::codec::saturating_int(limit as u64)],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )?;
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
                    fetched_at: Some(localdb::codec::saturating_int(now)),
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
