//! The agents table as a projection of the stored events: an agent is rebuilt by
//! folding its events, and written with its derived listing and tags.

use alloy::primitives::{Address, Bytes};
use erc8004::Registration;
use rusqlite::{OptionalExtension, Transaction, params};

use super::codec::{address_text, int, json, parse, to_json, uint};
use super::{FetchState, StoreError};
use crate::agent::{OnChain, Profile};
use crate::events::{ChainEvent, Change};
use crate::query::TagKind;
use crate::record::{FetchError, FetchStatus};

/// Folds every stored event of one agent from scratch.
pub(super) fn replay(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
) -> Result<Option<OnChain>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT block, log_index, block_hash, tx_hash, kind, address, from_address, uri,
                meta_key, meta_value
         FROM events WHERE chain_id = ?1 AND agent_id = ?2 ORDER BY block, log_index",
    )?;
    let rows = stmt.query_map(params![int(chain_id)?, int(agent_id)?], |row| {
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
pub(super) fn load_onchain(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
) -> Result<Option<OnChain>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT owner, uri, metadata, registered_block, registered_tx, updated_block
             FROM agents WHERE chain_id = ?1 AND agent_id = ?2",
        )?
        .query_row(params![int(chain_id)?, int(agent_id)?], |row| {
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
pub(super) fn write_agent(
    tx: &Transaction<'_>,
    chain_id: u64,
    agent_id: u64,
    registry: &str,
    state: Option<&OnChain>,
) -> Result<bool, StoreError> {
    let key = params![int(chain_id)?, int(agent_id)?];
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
pub(super) fn put_agent(
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
        int(chain_id)?,
        int(agent_id)?,
        registry,
        address_text(&state.owner),
        state.uri,
        to_json(&state.metadata)?,
        int(state.registered_block)?,
        state.registered_tx.to_string(),
        int(state.updated_block)?,
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
    let key = params![int(chain_id)?, int(agent_id)?];
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
        insert.execute(params![
            int(chain_id)?,
            int(agent_id)?,
            kind.as_str(),
            value
        ])?;
    }
    Ok(())
}
