//! Following the registry: each poll checks that the last indexed block is still on the
//! chain (rolling back to the fork point when it is not), then indexes block ranges up
//! to the head minus the confirmation depth. A range is read as: hash of its last block,
//! `eth_getLogs`, the hash again; if the hash moved, the chain changed while reading and
//! the range is read again. A range the RPC refuses is halved until it is accepted, and
//! grows back after a run of successes.

use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{BlockNumberOrTag, Filter};
use alloy::transports::TransportResult;
use serde::Serialize;
use tokio::sync::Notify;

use crate::IndexerError;
use crate::events::{self, ChainEvent, Skip};
use crate::store::{Batch, Cursor, Store};

/// Successful ranges in a row before the range doubles again.
const GROW_AFTER: u32 = 8;

/// Reorgs and inconsistent reads in a row before a pass gives up and backs off.
const MAX_UNSETTLED: u32 = 8;

/// Longest pause between polls after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What one [`crate::Indexer::sync`] pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyncReport {
    /// The chain head seen at the start of the pass.
    pub head_block: u64,
    /// Head minus confirmations: where the pass stopped.
    pub target_block: u64,
    /// The last indexed block after the pass.
    pub indexed_block: Option<u64>,
    /// Registry events stored.
    pub events: usize,
    /// Reorgs found and rolled back.
    pub reorgs: usize,
}

/// Where the follower stands, for `/health`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SyncState {
    pub(crate) head_block: Option<u64>,
    pub(crate) target_block: Option<u64>,
    pub(crate) indexed_block: Option<u64>,
    pub(crate) caught_up: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) reorgs: u64,
}

/// Shared between the follower and the API.
#[derive(Debug)]
pub(crate) struct Status(Mutex<SyncState>);

impl Status {
    /// Not caught up yet; `indexed` is the cursor found in the database.
    pub(crate) fn starting(indexed: Option<u64>) -> Self {
        Self(Mutex::new(SyncState {
            indexed_block: indexed,
            ..SyncState::default()
        }))
    }

    pub(crate) fn snapshot(&self) -> SyncState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut SyncState)) {
        if let Ok(mut state) = self.0.lock() {
            f(&mut state);
        }
    }
}

/// The adaptive `eth_getLogs` range.
#[derive(Debug)]
struct Range {
    size: u64,
    successes: u32,
}

/// Settings the follower needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct FollowConfig {
    pub(crate) confirmations: u64,
    pub(crate) max_range: u64,
    pub(crate) start_block: u64,
    pub(crate) reorg_window: u64,
    pub(crate) rpc_timeout: Duration,
}

/// Indexes one registry on one chain into the store.
pub(crate) struct Follower {
    provider: DynProvider,
    store: Arc<Store>,
    chain_id: u64,
    registry: Address,
    config: FollowConfig,
    range: Mutex<Range>,
    status: Arc<Status>,
    wake_fetcher: Arc<Notify>,
}

impl Follower {
    pub(crate) fn new(
        provider: DynProvider,
        store: Arc<Store>,
        (chain_id, registry): (u64, Address),
        config: FollowConfig,
        status: Arc<Status>,
        wake_fetcher: Arc<Notify>,
    ) -> Self {
        let size = config.max_range.max(1);
        Self {
            provider,
            store,
            chain_id,
            registry,
            config,
            range: Mutex::new(Range { size, successes: 0 }),
            status,
            wake_fetcher,
        }
    }

    /// Polls forever, pausing `interval` between passes and backing off on failures.
    pub(crate) async fn run(self: Arc<Self>, interval: Duration) {
        let mut failures: u32 = 0;
        loop {
            let pause = match self.poll().await {
                Ok(_) => {
                    failures = 0;
                    interval
                }
                Err(e) => {
                    tracing::warn!(chain = self.chain_id, "indexing paused: {e}");
                    failures = failures.saturating_add(1);
                    interval
                        .saturating_mul(1 << failures.min(6))
                        .min(MAX_BACKOFF)
                        .max(interval)
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// One pass: reorg check, then every range up to the target. Records the outcome
    /// in the status either way.
    pub(crate) async fn poll(&self) -> Result<SyncReport, IndexerError> {
        let result = self.catch_up().await;
        self.status.update(|s| match &result {
            Ok(report) => {
                s.head_block = Some(report.head_block);
                s.target_block = Some(report.target_block);
                s.indexed_block = report.indexed_block;
                s.caught_up = report
                    .indexed_block
                    .is_some_and(|b| b >= report.target_block)
                    || report.target_block < self.config.start_block;
                s.last_error = None;
                s.reorgs += report.reorgs as u64;
            }
            Err(e) => {
                s.caught_up = false;
                s.last_error = Some(e.to_string());
            }
        });
        result
    }

    async fn catch_up(&self) -> Result<SyncReport, IndexerError> {
        let head = self
            .rpc("eth_blockNumber", self.provider.get_block_number())
            .await?;
        let target = head.saturating_sub(self.config.confirmations);
        let mut report = SyncReport {
            head_block: head,
            target_block: target,
            ..SyncReport::default()
        };
        let mut unsettled = 0;
        loop {
            if unsettled > MAX_UNSETTLED {
                return Err(IndexerError::Rpc {
                    action: "eth_getLogs",
                    message: format!(
                        "the chain changed {unsettled} times in a row while it was being read (a load-balanced RPC whose nodes disagree?); retrying after a pause"
                    ),
                });
            }
            let cursor = self.store.cursor(self.chain_id)?;
            if let Some(last) = cursor
                && self.block_hash(last.block).await? != Some(last.hash)
            {
                self.unwind(last).await?;
                report.reorgs += 1;
                unsettled += 1;
                continue;
            }
            let from = cursor.map_or(self.config.start_block, |c| c.block + 1);
            if from > target {
                report.indexed_block = cursor.map(|c| c.block);
                return Ok(report);
            }
            let span = self.range_size();
            let to = from.saturating_add(span - 1).min(target);
            let Some(end) = self.block_hash(to).await? else {
                report.indexed_block = cursor.map(|c| c.block);
                return Ok(report);
            };
            let filter = Filter::new()
                .address(self.registry)
                .event_signature(events::TOPICS.to_vec())
                .from_block(from)
                .to_block(to);
            let logs = match self
                .rpc("eth_getLogs", self.provider.get_logs(&filter))
                .await
            {
                Ok(logs) => logs,
                Err(e) if span > 1 => {
                    self.shrink(to - from + 1, &e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.block_hash(to).await? != Some(end) {
                unsettled += 1;
                continue;
            }
            let Some(events) = self.decode(&logs, to, end) else {
                unsettled += 1;
                continue;
            };
            unsettled = 0;
            self.grow();
            let mut hashes: Vec<Cursor> = events
                .iter()
                .map(|e| Cursor {
                    block: e.block,
                    hash: e.block_hash,
                })
                .collect();
            hashes.dedup();
            let batch = Batch {
                hashes,
                cursor: Cursor {
                    block: to,
                    hash: end,
                },
                keep_from: to.saturating_sub(self.config.reorg_window),
                events,
            };
            if self.store.apply(self.chain_id, &batch)? {
                self.wake_fetcher.notify_one();
            }
            report.events += batch.events.len();
        }
    }

    /// The events of a range, or `None` when the logs disagree with the range end's
    /// hash or lack positions (read the range again).
    fn decode(
        &self,
        logs: &[alloy::rpc::types::Log],
        to: u64,
        end: B256,
    ) -> Option<Vec<ChainEvent>> {
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            match events::decode(log) {
                Ok(event) if event.block == to && event.block_hash != end => return None,
                Ok(event) => out.push(event),
                Err(Skip::Unpositioned) => return None,
                Err(skip) => {
                    tracing::warn!(chain = self.chain_id, "skipped a registry log: {skip}")
                }
            }
        }
        out.sort_by_key(|e| (e.block, e.log_index));
        Some(out)
    }

    /// Finds the newest remembered block still on the chain and rolls back to it.
    async fn unwind(&self, stale: Cursor) -> Result<(), IndexerError> {
        let mut fork = None;
        for known in self.store.recent_blocks(self.chain_id)? {
            if self.block_hash(known.block).await? == Some(known.hash) {
                fork = Some(known);
                break;
            }
        }
        let rebuilt = self.store.rollback(self.chain_id, fork)?;
        tracing::warn!(
            chain = self.chain_id,
            stale = stale.block,
            fork = ?fork.map(|f| f.block),
            rebuilt,
            "reorg: rolled back to the fork point"
        );
        self.wake_fetcher.notify_one();
        Ok(())
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>, IndexerError> {
        let block = self
            .rpc(
                "eth_getBlockByNumber",
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Number(number))
                    .into_future(),
            )
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    async fn rpc<T>(
        &self,
        action: &'static str,
        call: impl Future<Output = TransportResult<T>>,
    ) -> Result<T, IndexerError> {
        match tokio::time::timeout(self.config.rpc_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(IndexerError::Rpc {
                action,
                message: e.to_string(),
            }),
            Err(_) => Err(IndexerError::Rpc {
                action,
                message: format!("no answer within {:?}", self.config.rpc_timeout),
            }),
        }
    }

    fn range_size(&self) -> u64 {
        self.range.lock().map_or(1, |r| r.size.max(1))
    }

    fn shrink(&self, refused: u64, e: &IndexerError) {
        if let Ok(mut range) = self.range.lock() {
            range.size = (refused / 2).max(1);
            range.successes = 0;
            tracing::debug!(
                chain = self.chain_id,
                size = range.size,
                "log range refused: {e}"
            );
        }
    }

    fn grow(&self) {
        if let Ok(mut range) = self.range.lock() {
            range.successes += 1;
            if range.successes >= GROW_AFTER && range.size < self.config.max_range {
                range.size = range.size.saturating_mul(2).min(self.config.max_range);
                range.successes = 0;
            }
        }
    }
}
