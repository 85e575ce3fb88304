//! One receipt poll loop per chain for every transaction in flight, and the fee
//! estimate cached per block.
//!
//! Polling each transaction's receipt on its own costs one RPC call per settlement per
//! poll, and at high concurrency those reads contend with block production on the
//! node. Instead one loop reads the block number and, when a block is new, all of its
//! receipts at once (`eth_getBlockReceipts`), handing each to whoever waits on it.
//!
//! A block scan only finds transactions mined after the scan's starting point, so a
//! hash is "anchored" (left to the scans) only when it was registered before its
//! transaction was broadcast while the loop was scanning. Any other hash gets one
//! direct `eth_getTransactionReceipt` after the loop's next block-number read: that
//! read and the scans after it cover every block.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::eips::eip1559::Eip1559Estimation;
use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionReceipt;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// First poll interval after a block arrives.
const FAST_POLL: Duration = Duration::from_millis(5);
/// First retry after a broadcast woke the loop and its receipt was not there yet: a
/// devnet mines a moment after it answers the send, and waiting FAST_POLL doubled
/// there put a bimodal 10 ms on the latency of an idle facilitator.
const AFTER_SEND: Duration = Duration::from_millis(1);
/// Slowest poll interval while something is in flight.
const SLOW_POLL: Duration = Duration::from_millis(500);
/// How long a found receipt is kept for waiters that register late.
const KEEP_FOUND: Duration = Duration::from_secs(60);
/// How long a fee estimate is trusted when no newer block is known.
const FEE_TTL: Duration = Duration::from_secs(1);

type Receipt = Arc<TransactionReceipt>;

struct Entry {
    /// Registered before broadcast while the loop was scanning: the scans find it.
    anchored: bool,
    waiters: Vec<oneshot::Sender<Receipt>>,
    /// Forgotten after this (a transaction that never mines).
    until: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<B256, Entry>,
    found: HashMap<B256, (Instant, Receipt)>,
    /// Every block up to this one was scanned; `None` while the loop is idle.
    scanned: Option<u64>,
    /// Newest block seen.
    head: Option<u64>,
    fees: Option<(Option<u64>, Instant, Eip1559Estimation)>,
    /// The node answered `eth_getBlockReceipts` with an error: ask per transaction.
    no_block_receipts: bool,
}

/// The per-chain receipt watcher; its loop runs while it lives.
pub(super) struct Watcher {
    state: Mutex<State>,
    wake: Arc<Notify>,
    provider: DynProvider,
    /// How long a registered hash is watched.
    keep: Duration,
}

impl Watcher {
    /// A watcher over `provider` whose loop stops when the returned value is dropped.
    pub(super) fn start(provider: DynProvider, keep: Duration) -> Arc<Self> {
        let watcher = Arc::new(Self {
            state: Mutex::new(State::default()),
            wake: Arc::new(Notify::new()),
            provider,
            keep,
        });
        tokio::spawn(run(Arc::downgrade(&watcher), watcher.wake.clone()));
        watcher
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `hash` before its transaction is broadcast (call [`Watcher::sent`]
    /// once it is); the answer is its receipt.
    pub(super) fn expect(&self, hash: B256) -> oneshot::Receiver<Receipt> {
        self.register(hash, true)
    }

    /// A registered transaction was broadcast: look for its receipt now.
    pub(super) fn sent(&self) {
        self.wake.notify_one();
    }

    /// The receipt of `hash` (broadcast at any time, by anyone), waiting up to
    /// `timeout`; `None` when it did not come.
    pub(super) async fn receipt(&self, hash: B256, timeout: Duration) -> Option<Receipt> {
        let rx = self.register(hash, false);
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }

    fn register(&self, hash: B256, before_broadcast: bool) -> oneshot::Receiver<Receipt> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        if let Some((_, receipt)) = state.found.get(&hash) {
            let _ = tx.send(receipt.clone());
            return rx;
        }
        let anchored = before_broadcast && state.scanned.is_some();
        let until = Instant::now() + self.keep;
        let entry = state.entries.entry(hash).or_insert(Entry {
            anchored,
            waiters: Vec::new(),
            until,
        });
        entry.waiters.push(tx);
        entry.until = entry.until.max(until);
        drop(state);
        if !before_broadcast {
            self.wake.notify_one();
        }
        rx
    }

    /// The fee estimate for the newest known block, asked of the node at most once
    /// per block (and at most every [`FEE_TTL`] when no block is being watched).
    pub(super) async fn fees(
        &self,
    ) -> Result<Eip1559Estimation, alloy::transports::TransportError> {
        {
            let state = self.lock();
            if let Some((block, at, fees)) = state.fees {
                let same_block = block.is_some() && block == state.head;
                if same_block || at.elapsed() < FEE_TTL {
                    return Ok(fees);
                }
            }
        }
        let fees = self.provider.estimate_eip1559_fees().await?;
        let mut state = self.lock();
        let head = state.head;
        state.fees = Some((head, Instant::now(), fees));
        Ok(fees)
    }

    fn deliver(&self, state: &mut State, receipt: TransactionReceipt) {
        let hash = receipt.transaction_hash;
        let receipt = Arc::new(receipt);
        if let Some(entry) = state.entries.remove(&hash) {
            for waiter in entry.waiters {
                let _ = waiter.send(receipt.clone());
            }
        }
        state.found.insert(hash, (Instant::now(), receipt));
    }

    /// Direct receipt lookups of `hashes`, delivering those found.
    async fn look_up(&self, hashes: &[B256]) {
        for hash in hashes {
            if let Ok(Some(receipt)) = self.provider.get_transaction_receipt(*hash).await {
                self.deliver(&mut self.lock(), receipt);
            }
        }
    }

    /// The unanchored hashes still watched.
    fn unanchored(&self) -> Vec<B256> {
        self.lock()
            .entries
            .iter()
            .filter(|(_, e)| !e.anchored)
            .map(|(h, _)| *h)
            .collect()
    }

    /// One loop turn; returns whether a new block arrived, `None` when nothing is
    /// left to watch (the loop then sleeps until a registration wakes it, and the
    /// next hash starts with one direct lookup).
    async fn poll(&self) -> Option<bool> {
        let turn = self.turn().await;
        let mut state = self.lock();
        if state.entries.is_empty() {
            state.scanned = None;
            return None;
        }
        turn
    }

    async fn turn(&self) -> Option<bool> {
        // Starting from idle, the transaction has usually mined by the time it is
        // looked for (a devnet mines on receipt): one lookup, no block number.
        if self.lock().scanned.is_none() {
            let first = self.unanchored();
            if !first.is_empty() {
                self.look_up(&first).await;
                if self.lock().entries.is_empty() {
                    return Some(true);
                }
            }
        }
        let unanchored: Vec<B256> = {
            let mut state = self.lock();
            let now = Instant::now();
            state
                .found
                .retain(|_, (at, _)| now.duration_since(*at) < KEEP_FOUND);
            state.entries.retain(|_, e| e.until > now);
            if state.entries.is_empty() {
                state.scanned = None;
                return None;
            }
            state
                .entries
                .iter()
                .filter(|(_, e)| !e.anchored)
                .map(|(h, _)| *h)
                .collect()
        };
        let Ok(head) = self.provider.get_block_number().await else {
            return Some(false);
        };
        let (from, per_tx) = {
            let mut state = self.lock();
            let new_block = state.head.is_none_or(|h| head > h);
            state.head = Some(state.head.map_or(head, |h| h.max(head)));
            // The hashes read above were all registered before `head` was read.
            for hash in &unanchored {
                if let Some(entry) = state.entries.get_mut(hash) {
                    entry.anchored = true;
                }
            }
            let from = match state.scanned {
                Some(scanned) if head > scanned => Some(scanned + 1),
                Some(_) => None,
                None => {
                    state.scanned = Some(head);
                    None
                }
            };
            if from.is_none() && unanchored.is_empty() {
                return Some(new_block);
            }
            (from, state.no_block_receipts)
        };
        self.look_up(&unanchored).await;
        let Some(from) = from else {
            return Some(!unanchored.is_empty());
        };
        if per_tx {
            let hashes: Vec<B256> = self.lock().entries.keys().copied().collect();
            self.look_up(&hashes).await;
            self.lock().scanned = Some(head);
            return Some(true);
        }
        for block in from..=head {
            match self
                .provider
                .get_block_receipts(BlockNumberOrTag::Number(block).into())
                .await
            {
                Ok(receipts) => {
                    let mut state = self.lock();
                    for receipt in receipts.unwrap_or_default() {
                        if state.entries.contains_key(&receipt.transaction_hash) {
                            self.deliver(&mut state, receipt);
                        }
                    }
                    state.scanned = Some(block);
                }
                Err(alloy::transports::RpcError::ErrorResp(e)) => {
                    tracing::info!(
                        "the chain RPC does not serve eth_getBlockReceipts ({}); asking per transaction",
                        e.message
                    );
                    self.lock().no_block_receipts = true;
                    return Some(true);
                }
                Err(_) => return Some(false),
            }
        }
        Some(true)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// The loop: polls while something is in flight, sleeps on `wake` while idle, ends
/// once the watcher is dropped.
async fn run(watcher: Weak<Watcher>, wake: Arc<Notify>) {
    let mut interval = FAST_POLL;
    loop {
        let Some(w) = watcher.upgrade() else {
            return;
        };
        let turn = w.poll().await;
        drop(w);
        match turn {
            None => {
                wake.notified().await;
                interval = AFTER_SEND;
                continue;
            }
            Some(true) => interval = FAST_POLL,
            Some(false) => interval = (interval * 2).min(SLOW_POLL),
        }
        let notified = wake.notified();
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = notified => interval = AFTER_SEND,
        }
    }
}
