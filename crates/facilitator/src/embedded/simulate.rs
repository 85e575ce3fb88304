//! Group-commit verify simulation: one task per chain sends the `eth_call`s that
//! simulate each payment's `transferWithAuthorization` for verify.
//!
//! Every verify simulates its payment, and under load those calls are most of what
//! the node executes for agora. So while one simulation is in flight, the next ones
//! queue and leave together as one `eth_call` of Multicall3 `aggregate3`, every
//! member with `allowFailure` (EIP-3009 lets any caller, Multicall3 included, submit
//! an authorization). With nothing in flight a simulation leaves at once, alone: no
//! delay when idle.
//!
//! A batch may say "valid", never "invalid". Members run one after another on one
//! state, so a member may fail there just because an earlier one ran (two payments
//! of one payer who can afford one): a member that failed inside a batch, or a
//! batch that failed as a whole, is simulated again alone, which also names the
//! reason as before. The other way round, an earlier member can only use its nonce
//! and move its payer's funds, which never makes a later member pass, except by
//! paying that member's payer; such a member is simulated again alone too.

use alloy::primitives::Bytes;
use alloy::transports::TransportError;
use tokio::sync::{mpsc, oneshot};

use super::batch::{IMulticall3, aggregate3};
use super::*;

/// One simulation handed to the chain's simulator.
pub(super) struct Job {
    /// The token to call.
    asset: Address,
    /// `transferWithAuthorization` calldata.
    call: Bytes,
    /// The authorization's payer and payee: a member whose payer an earlier member
    /// pays is not judged inside the batch.
    from: Address,
    to: Address,
    reply: oneshot::Sender<Simulated>,
}

/// What the simulator learned about one payment.
pub(super) enum Simulated {
    /// Simulated alone: the node's answer, read as a single simulation always was.
    Alone(Result<Bytes, TransportError>),
    /// Succeeded inside a batch: it succeeds alone too.
    Passed,
    /// Not judged by its batch: simulate it alone.
    Retry,
}

/// The simulator of one chain: sends queued simulations as described above, with at
/// most `max_size` in one call, until the job channel closes.
pub(super) async fn run(
    provider: DynProvider,
    sender: Address,
    max_size: usize,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_size {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A verify that gave up no longer needs its simulation.
        batch.retain(|job| !job.reply.is_closed());
        if let [_] = batch.as_slice() {
            if let Some(job) = batch.pop() {
                let tx = TransactionRequest::default()
                    .from(sender)
                    .to(job.asset)
                    .input(job.call.into());
                let answer = provider.call(tx).await;
                let _ = job.reply.send(Simulated::Alone(answer));
            }
        } else if !batch.is_empty() {
            together(&provider, sender, batch).await;
        }
    }
}

/// One `aggregate3` call for `batch`, answering each member.
async fn together(provider: &DynProvider, sender: Address, batch: Vec<Job>) {
    let input = aggregate3(batch.iter().map(|job| (job.asset, &job.call)));
    let tx = TransactionRequest::default()
        .from(sender)
        .to(MULTICALL3)
        .input(input.into());
    let results = provider
        .call(tx)
        .await
        .ok()
        .and_then(|out| IMulticall3::aggregate3Call::abi_decode_returns(&out).ok())
        .filter(|results| results.len() == batch.len());
    let Some(results) = results else {
        for job in batch {
            let _ = job.reply.send(Simulated::Retry);
        }
        return;
    };
    let payees: Vec<Address> = batch.iter().map(|job| job.to).collect();
    for (i, (job, result)) in batch.into_iter().zip(results).enumerate() {
        let helped = payees[..i].contains(&job.from);
        let answer = if result.success && !helped {
            Simulated::Passed
        } else {
            Simulated::Retry
        };
        let _ = job.reply.send(answer);
    }
}

/// Hands the simulation of `checked` (its settlement `tx`) to its chain's
/// simulator; `None` when it is to be simulated alone right here: the chain does not
/// batch, the token is not one of its known ones (another token might treat a
/// Multicall3 caller differently), or the simulator stopped.
pub(super) async fn queued(checked: &Checked<'_>, tx: &TransactionRequest) -> Option<Simulated> {
    let chain = checked.chain;
    let simulator = chain.simulator.as_ref()?;
    let asset = checked.request.payment_requirements.asset;
    if !chain.batchable.contains(&asset) {
        return None;
    }
    let authorization = &checked.request.payment_payload.payload.authorization;
    let (reply, answer) = oneshot::channel();
    let job = Job {
        asset,
        call: tx.input.input().cloned().unwrap_or_default(),
        from: authorization.from,
        to: authorization.to,
        reply,
    };
    simulator.send(job).ok()?;
    answer.await.ok()
}
