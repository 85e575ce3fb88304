//! Store tests: one registry per database, reorg rollback, no event stored twice, late
//! fetch results dropped.

use super::*;
use crate::events::Change;
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
