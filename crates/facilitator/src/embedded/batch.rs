//! Group-commit settlement: one sender task per chain owns the signer's nonce and
//! turns queued settlements into transactions.
//!
//! The node, not agora, is the bottleneck of settlement: every transaction costs a
//! block slot and several RPC calls. So while [`IN_FLIGHT`] settlement transactions
//! are in flight, the next settlements of the chain's known tokens queue up and leave
//! together as one Multicall3 `aggregate3` transaction with `allowFailure` set for each
//! member: one member that reverts never fails the others. When nothing is in flight a
//! settlement leaves at once, alone, as a plain `transferWithAuthorization` (no
//! batching delay when idle). A batch also leaves when it is full or its oldest member
//! waited the longest wait allowed.
//!
//! Crash safety is the single transaction's: every member's journal row records the
//! batch's signed bytes, in one SQLite transaction, before the broadcast, and each
//! member is resolved on its own, by the receipt's `AuthorizationUsed` logs or by the
//! token's `authorizationState`.

use std::collections::VecDeque;

use alloy::primitives::{Bytes, address};
use alloy::sol;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::settle::SendError;
use super::*;

sol! {
    /// Multicall3's batch entry point (the canonical contract's ABI).
    interface IMulticall3 {
        struct Call3 {
            address target;
            bool allowFailure;
            bytes callData;
        }
        struct Result {
            bool success;
            bytes returnData;
        }
        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
    }
}

/// Multicall3's canonical address (the same on Base, Base Sepolia and most EVM
/// chains; `agora devnet` installs it there).
pub const MULTICALL3: Address = address!("cA11bde05977b3631167028862bE2a173976CA11");

/// Transactions in flight before queued settlements wait for one of them to mine.
/// With one, the chain sat idle while each receipt was read and the next batch was
/// journaled; with two, the next batch is on its way meanwhile, and on a chain with
/// slow blocks a payment that arrives just after a send can still make the same block.
/// Measured on the devnet (`cargo bench -p gateway --bench settlement`, the two builds
/// taking turns): c=16 1.3-1.4x and c=64 1.1-1.3x the throughput of one.
const IN_FLIGHT: usize = 2;

/// Gas of the Multicall3 frame around a batch's members.
const BATCH_OVERHEAD_GAS: u64 = 50_000;

/// Most gas one transaction may ask for (EIP-7825, Fusaka: 2^24). A batch whose gas
/// limit is above it, or above the block's, is rejected at broadcast, and so is every
/// fee bump of it: its members would all end up unpaid after being served.
const MAX_TRANSACTION_GAS: u64 = 1 << 24;

/// Most members a batch may have so that its gas limit, `BATCH_OVERHEAD_GAS` plus
/// `per_member_gas` for each, stays within [`MAX_TRANSACTION_GAS`] and the chain's
/// block gas limit (when known); at least 1, which is sent alone, without the frame.
fn max_batch_members(per_member_gas: u64, block_gas_limit: Option<u64>) -> usize {
    let limit = block_gas_limit.map_or(MAX_TRANSACTION_GAS, |b| b.min(MAX_TRANSACTION_GAS));
    let room = limit.saturating_sub(BATCH_OVERHEAD_GAS);
    let members = room.checked_div(per_member_gas).unwrap_or(u64::MAX);
    usize::try_from(members).unwrap_or(usize::MAX).max(1)
}

/// `config` for a chain, with its batches clamped to what one transaction can carry
/// there (read the latest block's gas limit; without it, the EIP-7825 cap alone),
/// warning with the clamped value when the configured batch size asked for more.
pub(super) async fn fitting(
    provider: &DynProvider,
    network: &Network,
    config: BatchConfig,
    per_member_gas: u64,
) -> BatchConfig {
    if config.max_size <= 1 {
        return config;
    }
    let block_gas_limit = match provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
    {
        Ok(Some(block)) => Some(block.header.gas_limit),
        _ => None,
    };
    let fits = max_batch_members(per_member_gas, block_gas_limit);
    if config.max_size <= fits {
        return config;
    }
    tracing::warn!(
        network = %network.caip2(),
        "the batch size {} is clamped to {fits}: a batch's gas limit is {BATCH_OVERHEAD_GAS} + {per_member_gas} per settlement, and one transaction may use at most {} gas (the per-transaction cap of 2^24{}); larger queues leave in several transactions",
        config.max_size,
        block_gas_limit.map_or(MAX_TRANSACTION_GAS, |b| b.min(MAX_TRANSACTION_GAS)),
        block_gas_limit.map_or_else(String::new, |b| format!(" and the block gas limit of {b}")),
    );
    BatchConfig {
        max_size: fits,
        ..config
    }
}

/// When settlements of one chain leave together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most settlements in one transaction, and verify simulations in one `eth_call`;
    /// 1 sends every settlement and simulation alone.
    pub max_size: usize,
    /// Longest a queued settlement waits for a transaction in flight to mine.
    pub max_wait: Duration,
}

impl BatchConfig {
    /// Every settlement in its own transaction, sent at once.
    pub const OFF: Self = Self {
        max_size: 1,
        max_wait: Duration::ZERO,
    };
}

impl Default for BatchConfig {
    /// Batches of up to 64 settlements, none waiting more than 50 ms for the
    /// transactions in flight.
    fn default() -> Self {
        Self {
            max_size: 64,
            max_wait: Duration::from_millis(50),
        }
    }
}

/// One settlement handed to the chain's sender.
pub(super) struct Job {
    /// Its journal row, `pending`.
    pub(super) journal_id: i64,
    /// The token to call.
    pub(super) asset: Address,
    /// `transferWithAuthorization` calldata.
    pub(super) call: Bytes,
    /// Gas for a settlement sent alone (a token this facilitator was told to settle,
    /// estimated); `None` for a chain's known token, which may join a batch and gets
    /// the gas-limit cap.
    pub(super) gas: Option<u64>,
    /// The transaction that carries it, or why none does.
    pub(super) reply: oneshot::Sender<Result<B256, SendError>>,
}

/// The sender of one chain: queues jobs and sends them as described above, until the
/// job channel closes.
pub(super) async fn run(inner: Arc<Inner>, chain_id: u64, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let Some(chain) = inner.chains.get(&chain_id) else {
        return;
    };
    let config = chain.batch;
    let mut queue: VecDeque<(Instant, Job)> = VecDeque::new();
    // Receipt waits of the transactions in flight; one that mined (or waited past
    // the receipt timeout) no longer holds the queue back.
    let mut in_flight: Vec<(Instant, oneshot::Receiver<Arc<TransactionReceipt>>)> = Vec::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut next_nonce: Option<u64> = None;
    loop {
        let deadline = queue.front().map(|(at, _)| *at + config.max_wait);
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => queue.push_back((Instant::now(), job)),
                None => return,
            },
            Some(()) = done_rx.recv() => {}
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
        while let Ok(job) = jobs.try_recv() {
            queue.push_back((Instant::now(), job));
        }
        while let Some((oldest, _)) = queue.front() {
            in_flight.retain_mut(|(sent, mined)| {
                sent.elapsed() < inner.receipt_timeout
                    && matches!(mined.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
            let ready = in_flight.len() < IN_FLIGHT
                || queue.len() >= config.max_size
                || oldest.elapsed() >= config.max_wait;
            if !ready {
                break;
            }
            let batch = take_batch(&mut queue, config.max_size);
            if let Some((hash, mined)) = inner.send_batch(chain, batch, &mut next_nonce).await {
                in_flight.push((Instant::now(), mined));
                // Wakes this loop when the transaction mines.
                let woken = chain.watch.expect(hash);
                let done = done_tx.clone();
                let wait = inner.receipt_timeout;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(wait, woken).await;
                    let _ = done.send(());
                });
            }
        }
    }
}

/// `aggregate3` calldata calling each `(token, calldata)` with `allowFailure` set, so
/// a member that reverts never fails the others (settlement batches and verify's
/// simulation batches alike).
pub(super) fn aggregate3<'a>(members: impl Iterator<Item = (Address, &'a Bytes)>) -> Vec<u8> {
    let calls = members
        .map(|(target, call)| IMulticall3::Call3 {
            target,
            allowFailure: true,
            callData: call.clone(),
        })
        .collect();
    IMulticall3::aggregate3Call { calls }.abi_encode()
}

/// Whether Multicall3 has code at its canonical address on the chain `provider`
/// reaches. Without it a batch would mine as a call to an empty account: nothing
/// moves (every member ends not charged), so batching (of settlements and of verify
/// simulations) is turned off for that chain instead, with a warning.
pub(super) async fn multicall_deployed(
    provider: &DynProvider,
    network: &Network,
    rpc_url: &str,
) -> bool {
    match provider.get_code_at(MULTICALL3).await {
        Ok(code) if !code.is_empty() => true,
        Ok(_) => {
            tracing::warn!(
                network = %network.caip2(),
                "no Multicall3 at {MULTICALL3} on this chain: settling each payment alone (deploy it there, or set the batch size to 1 to silence this)"
            );
            false
        }
        Err(e) => {
            tracing::warn!(
                network = %network.caip2(),
                "cannot read Multicall3's code ({}): settling each payment alone",
                scrub(&e.to_string(), rpc_url)
            );
            false
        }
    }
}

/// The next transaction's members: a job with its own gas leaves alone; otherwise up
/// to `max` batchable jobs in arrival order.
fn take_batch(queue: &mut VecDeque<(Instant, Job)>, max: usize) -> Vec<Job> {
    let mut batch = Vec::new();
    while let Some((_, job)) = queue.front() {
        let alone = job.gas.is_some();
        if alone && !batch.is_empty() || batch.len() >= max.max(1) {
            break;
        }
        if let Some((_, job)) = queue.pop_front() {
            batch.push(job);
        }
        if alone {
            break;
        }
    }
    batch
}

fn reply_all(jobs: Vec<Job>, result: impl Fn() -> Result<B256, SendError>) {
    for job in jobs {
        let _ = job.reply.send(result());
    }
}

impl Inner {
    /// Signs `jobs` as one transaction under the signer's next nonce, journals it for
    /// every member, registers it with the receipt watcher and broadcasts it. Answers
    /// every job; returns the hash and its receipt wait when a transaction went out.
    async fn send_batch(
        &self,
        chain: &Chain,
        mut jobs: Vec<Job>,
        next_nonce: &mut Option<u64>,
    ) -> Option<(B256, oneshot::Receiver<Arc<TransactionReceipt>>)> {
        let unavailable = |e: &FacilitatorError| {
            let e = e.clone();
            move || Err(SendError::Unavailable(e.clone()))
        };
        let fees = match chain.watch.fees().await {
            Ok(fees) => fees,
            Err(e) => {
                let e = unreachable(chain, e);
                reply_all(jobs, unavailable(&e));
                return None;
            }
        };
        let nonce = match *next_nonce {
            Some(nonce) => nonce,
            None => match chain
                .provider
                .get_transaction_count(self.signer_address)
                .pending()
                .await
            {
                Ok(nonce) => nonce,
                Err(e) => {
                    let e = unreachable(chain, e);
                    reply_all(jobs, unavailable(&e));
                    return None;
                }
            },
        };
        loop {
            if jobs.is_empty() {
                return None;
            }
            let (to, input, gas) = match jobs.as_slice() {
                [job] => (
                    job.asset,
                    job.call.clone(),
                    job.gas.unwrap_or(self.gas_limit_cap),
                ),
                members => {
                    let input = aggregate3(members.iter().map(|job| (job.asset, &job.call)));
                    let size = u64::try_from(members.len()).unwrap_or(u64::MAX);
                    let gas =
                        BATCH_OVERHEAD_GAS.saturating_add(size.saturating_mul(self.gas_limit_cap));
                    (MULTICALL3, input.into(), gas)
                }
            };
            let signed = TransactionRequest::default()
                .from(self.signer_address)
                .to(to)
                .input(input.into())
                .nonce(nonce)
                .with_chain_id(chain.chain_id)
                .gas_limit(gas)
                .max_fee_per_gas(fees.max_fee_per_gas)
                .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
                .build(&self.wallet)
                .await;
            let envelope = match signed {
                Ok(envelope) => envelope,
                Err(e) => {
                    let e = FacilitatorError::Internal(format!("signing failed: {e}"));
                    reply_all(jobs, unavailable(&e));
                    return None;
                }
            };
            let hash = *envelope.tx_hash();
            let raw = envelope.encoded_2718();
            let ids: Vec<i64> = jobs.iter().map(|j| j.journal_id).collect();
            let journal_raw = raw.clone();
            let closed = self
                .db(move |s| s.mark_sent_all(&ids, hash, &journal_raw, unix_now()))
                .await;
            match closed {
                Ok(closed) if closed.is_empty() => {}
                Ok(closed) => {
                    // Rows closed meanwhile (abandoned by the resolver) must not be
                    // sent: sign again without them.
                    let (gone, kept) = jobs
                        .into_iter()
                        .partition(|j| closed.contains(&j.journal_id));
                    let e = FacilitatorError::Internal(
                        "the settlement was closed before it could be sent".into(),
                    );
                    reply_all(gone, unavailable(&e));
                    jobs = kept;
                    continue;
                }
                Err(e) => {
                    let e = FacilitatorError::Internal(e.to_string());
                    reply_all(jobs, unavailable(&e));
                    return None;
                }
            }
            let mined = chain.watch.expect(hash);
            let broadcast = chain.provider.send_raw_transaction(&raw).await;
            chain.watch.sent();
            match broadcast {
                Ok(_) => {
                    *next_nonce = Some(nonce + 1);
                    reply_all(jobs, || Ok(hash));
                }
                Err(e) => {
                    *next_nonce = None;
                    let why = scrub(&e.to_string(), &chain.rpc_url);
                    reply_all(jobs, || Err(SendError::Ambiguous(hash, why.clone())));
                }
            }
            return Some((hash, mined));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch gas limit `send_batch` signs for `n` members.
    fn batch_gas(n: usize, per_member: u64) -> u64 {
        BATCH_OVERHEAD_GAS + u64::try_from(n).unwrap() * per_member
    }

    #[test]
    fn batch_max_256_is_clamped_under_the_transaction_and_block_gas_limits() {
        let per_member = crate::DEFAULT_GAS_LIMIT_CAP;
        for block in [None, Some(30_000_000), Some(60_000_000), Some(5_000_000)] {
            let fits = max_batch_members(per_member, block);
            assert!(fits < 256, "{block:?}: {fits}");
            let limit = block.map_or(MAX_TRANSACTION_GAS, |b| b.min(MAX_TRANSACTION_GAS));
            assert!(batch_gas(fits, per_member) <= limit, "{block:?}: {fits}");
            assert!(
                batch_gas(fits + 1, per_member) > limit,
                "{block:?}: {fits} is the most that fits"
            );
        }
        // 2^24 with the default 250k per settlement: 66 members (16.55M gas).
        assert_eq!(max_batch_members(per_member, Some(30_000_000)), 66);
        assert_eq!(max_batch_members(per_member, Some(5_000_000)), 19);
        // A cap so high that not even two fit leaves every settlement alone.
        assert_eq!(max_batch_members(20_000_000, None), 1);
        assert_eq!(max_batch_members(0, None), usize::MAX);
    }
}
