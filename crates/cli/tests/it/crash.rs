//! Crash test of agora's money promise: for every payment the gateway accepts, either
//! the buyer got the answer and was charged once, or the buyer was not charged.
//!
//! Buyers make 200 logical paid calls against one route sold by `agora serve --rpc`
//! on a devnet while the daemon is SIGKILLed at random moments (seeded; the seed is
//! printed, `AGORA_CRASH_SEED=<seed>` replays the schedule) at least 20 times and
//! restarted on the same home and port. A buyer behaves as the contract tells it to:
//! on an unknown outcome (no answer, 503 `settlement_pending`, any other non-402
//! answer) it sends the same header again; on a 402 it signs a new authorization. When
//! every call has finished, the chain decides who was charged (`authorizationState`
//! and `AuthorizationUsed` events) and each authorization is classified.
//!
//! The same run again with group-commit settlement on (`--batch-max 16`) and more
//! buyers, so kills land while Multicall3 batches are in flight: every member must end
//! settled exactly once, or not at all and not served.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use support::{Answer, PRICE, Rng};
use tokio::sync::Semaphore;
use x402::PaymentRequirements;

const CALLS: usize = 200;
const KILLS: usize = 24;
const BUYERS: usize = 4;
/// Buyers when settlements are batched: enough to fill batches.
const BATCH_BUYERS: usize = 12;
/// Authorizations one logical call may sign before it gives up.
const MAX_AUTHORIZATIONS: usize = 20;
/// How long one logical call may take, all retries included.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// One authorization a buyer sent, and what became of it from the buyer's side.
#[derive(Debug, Clone)]
struct Sent {
    call: usize,
    payer: Address,
    nonce: B256,
    served: bool,
    /// Answers in order, e.g. `["no answer", "503 settlement_pending", "200"]`.
    answers: Vec<String>,
}

/// What the buyers saw, for the summary.
#[derive(Default)]
struct Seen {
    sent: Vec<Sent>,
    answers: BTreeMap<String, usize>,
    resigned: usize,
    expires_too_soon: usize,
    served_without_receipt: usize,
    unserved_calls: Vec<usize>,
}

struct Buyers {
    url: String,
    requirement: PaymentRequirements,
    next_call: AtomicUsize,
    released: Semaphore,
    done: AtomicUsize,
    seen: Mutex<Seen>,
    client: reqwest::Client,
    finished: AtomicBool,
}

impl Buyers {
    fn record(&self, sent_index: usize, answer: &Answer) {
        let mut seen = self.seen.lock().unwrap();
        *seen.answers.entry(answer.label()).or_insert(0) += 1;
        seen.sent[sent_index].answers.push(answer.label());
    }

    fn push(&self, call: usize, signed: &testkit::pay::Signed) -> usize {
        let mut seen = self.seen.lock().unwrap();
        seen.sent.push(Sent {
            call,
            payer: signed.payer,
            nonce: signed.nonce,
            served: false,
            answers: Vec::new(),
        });
        seen.sent.len() - 1
    }

    /// One logical call: true when it ended served.
    async fn call(&self, call: usize, buyer: &PrivateKeySigner, rng: &mut Rng) -> bool {
        let started = Instant::now();
        // A little upstream work, so kills also land while the upstream is answering.
        let url = format!("{}/call/{call}?delay_ms={}", self.url, rng.below(40));
        for attempt in 0..MAX_AUTHORIZATIONS {
            if attempt > 0 {
                self.seen.lock().unwrap().resigned += 1;
            }
            let signed = testkit::pay::sign(buyer, &self.requirement);
            let index = self.push(call, &signed);
            loop {
                if started.elapsed() > CALL_LIMIT {
                    return false;
                }
                let answer = support::send(&self.client, &url, &signed.header).await;
                self.record(index, &answer);
                match answer {
                    Answer::Served { receipt_ok, .. } => {
                        let mut seen = self.seen.lock().unwrap();
                        seen.sent[index].served = true;
                        if !receipt_ok {
                            seen.served_without_receipt += 1;
                        }
                        return true;
                    }
                    Answer::Refused { reason } => {
                        if reason == "expires_too_soon" {
                            self.seen.lock().unwrap().expires_too_soon += 1;
                        }
                        break; // not charged: sign a new authorization
                    }
                    Answer::Pending { retry_after } => {
                        tokio::time::sleep(retry_after.min(Duration::from_millis(500))).await;
                    }
                    Answer::NoReply { .. } | Answer::Other { .. } | Answer::BadRequest { .. } => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        false
    }

    async fn run(self: Arc<Self>, buyer: PrivateKeySigner, mut rng: Rng) {
        loop {
            let permit = self.released.acquire().await.unwrap();
            permit.forget();
            let call = self.next_call.fetch_add(1, Ordering::SeqCst);
            if call >= CALLS {
                return;
            }
            tokio::time::sleep(rng.millis(0, 20)).await;
            if !self.call(call, &buyer, &mut rng).await {
                self.seen.lock().unwrap().unserved_calls.push(call);
            }
            if self.done.fetch_add(1, Ordering::SeqCst) + 1 == CALLS {
                self.finished.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_calls_survive_sigkill_without_charging_for_nothing() {
    crash(BUYERS, &["--batch-max", "1"], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_settlements_survive_sigkill_without_charging_for_nothing() {
    crash(
        BATCH_BUYERS,
        &["--batch-max", "16", "--batch-wait-ms", "50"],
        true,
    )
    .await;
}

/// The crash run with `buyers_n` concurrent buyers and `agora serve` given `serve_args`;
/// `batching` says the run must have formed Multicall3 batches.
async fn crash(buyers_n: usize, serve_args: &[&str], batching: bool) {
    let seed = Rng::seed_from_env("AGORA_CRASH_SEED");
    println!("crash test seed: {seed} (replay the kill schedule with AGORA_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let began = Instant::now();

    // A long validity, so a header retried across many restarts never gets too close
    // to its expiry (the gateway needs now + upstream timeout + settle timeout).
    let support::Market {
        chain,
        payee,
        buyers: buyer_keys,
        upstream,
        mut seller,
        url: route,
        client,
        requirement,
        payee_before,
        dir: _dir,
    } = support::market_with("crash", buyers_n, 3600, serve_args).await;
    let buyer_addresses: HashSet<Address> = buyer_keys.iter().map(|k| k.address()).collect();

    let buyers = Arc::new(Buyers {
        url: route.clone(),
        requirement,
        next_call: AtomicUsize::new(0),
        released: Semaphore::new(0),
        done: AtomicUsize::new(0),
        seen: Mutex::new(Seen::default()),
        client: client.clone(),
        finished: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    for (i, key) in buyer_keys.iter().enumerate() {
        let buyer_rng = Rng::new(seed ^ (0xB0B0 + i as u64));
        tasks.push(tokio::spawn(buyers.clone().run(key.clone(), buyer_rng)));
    }

    // Each daemon life: wait for the route, release a tranche of new calls, let it
    // work for a random moment, SIGKILL it, stay down a random moment, restart.
    let mut kills = 0;
    let mut released = 0;
    for round in 0..KILLS {
        assert!(
            support::wait_for_402(&client, &format!("{route}/x"), Duration::from_secs(30)).await,
            "the route did not come back after restart #{} (seed {seed})\n--- log tail ---\n{}",
            seller.starts,
            seller.log_tail(40)
        );
        let upto = CALLS * (round + 1) / (KILLS + 1);
        buyers.released.add_permits(upto - released);
        released = upto;
        tokio::time::sleep(rng.millis(0, 400)).await;
        seller.kill().await;
        kills += 1;
        tokio::time::sleep(rng.millis(0, 150)).await;
        seller.start().await;
    }
    // The last life: every remaining call, and every retry, finishes here.
    buyers.released.add_permits(CALLS - released + buyers_n);
    for task in tasks {
        tokio::time::timeout(CALL_LIMIT + Duration::from_secs(30), task)
            .await
            .expect("every buyer finishes after the last restart")
            .unwrap();
    }
    assert!(
        buyers.finished.load(Ordering::SeqCst),
        "not every logical call ran"
    );
    // Let anything the daemon still resolves land, then stop it cleanly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    seller.stop().await;
    // How many settlements shared a transaction (the kills hit batches in flight).
    let journal = facilitator::store::Store::inspect(&seller.home.join("facilitator.db"))
        .unwrap()
        .journal()
        .unwrap();
    let mut per_tx: HashMap<B256, usize> = HashMap::new();
    for row in journal.iter().filter(|r| r.tx_hash.is_some()) {
        *per_tx.entry(row.tx_hash.unwrap()).or_default() += 1;
    }
    let batched = per_tx.values().filter(|n| **n > 1).count();
    let members = per_tx.values().filter(|n| **n > 1).sum::<usize>();
    println!(
        "settlement transactions: {}, of which batches: {batched} carrying {members} settlements",
        per_tx.len()
    );
    let calls_elapsed = began.elapsed();

    // The chain is the truth about charges.
    let seen = std::mem::take(&mut *buyers.seen.lock().unwrap());
    let pairs: Vec<(Address, B256)> = seen.sent.iter().map(|s| (s.payer, s.nonce)).collect();
    let state = support::authorizations_used(&chain, &pairs).await;
    let events = support::used_events(&chain).await;
    let sent_set: HashSet<(Address, B256)> = pairs.iter().copied().collect();
    let mut disagreements = Vec::new();
    for (pair, used) in pairs.iter().zip(&state) {
        let emitted = events.get(pair).copied().unwrap_or(0);
        if emitted > 1 || (emitted == 1) != *used {
            disagreements.push(format!(
                "{pair:?}: authorizationState {used}, {emitted} AuthorizationUsed events"
            ));
        }
    }
    let foreign: Vec<_> = events
        .keys()
        .filter(|(who, _)| buyer_addresses.contains(who))
        .filter(|pair| !sent_set.contains(pair))
        .collect();

    let mut served_charged = 0;
    let mut unserved_uncharged = 0;
    let mut served_uncharged = 0;
    let mut charged_unserved = Vec::new();
    let mut charged_per_call: HashMap<usize, usize> = HashMap::new();
    for (sent, &charged) in seen.sent.iter().zip(&state) {
        match (sent.served, charged) {
            (true, true) => served_charged += 1,
            (false, false) => unserved_uncharged += 1,
            (true, false) => served_uncharged += 1,
            (false, true) => charged_unserved.push(sent),
        }
        if charged {
            *charged_per_call.entry(sent.call).or_insert(0) += 1;
        }
    }
    let charged_twice: Vec<usize> = charged_per_call
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(call, _)| *call)
        .collect();
    let charged = state.iter().filter(|c| **c).count();
    let payee_after = chain.usdc_balance(payee).await.unwrap();

    println!(
        "\ncrash test: {CALLS} logical calls, {buyers_n} buyers ({serve_args:?}), {kills} SIGKILLs, {} starts, \
         {} authorizations sent ({} re-signed after a 402), {:.1} s, seed {seed}",
        seller.starts,
        seen.sent.len(),
        seen.resigned,
        calls_elapsed.as_secs_f64()
    );
    println!("answers seen: {:?}", seen.answers);
    println!("| outcome | count | must be |");
    println!("|---|---|---|");
    println!("| served + charged once | {served_charged} | — |");
    println!("| not served + not charged | {unserved_uncharged} | — |");
    println!("| served + not charged | {served_uncharged} | — |");
    println!("| charged + not served | {} | 0 |", charged_unserved.len());
    println!(
        "| charged twice (a logical call with >1 charged authorization) | {} | 0 |",
        charged_twice.len()
    );
    println!(
        "payee balance rose by {} atomic; price × charged = {} × {charged} = {}",
        payee_after - payee_before,
        PRICE,
        U256::from(PRICE) * U256::from(charged)
    );

    let history = |s: &Sent| {
        format!(
            "call {} {} nonce {}: {:?}",
            s.call, s.payer, s.nonce, s.answers
        )
    };
    assert!(
        disagreements.is_empty(),
        "authorizationState and AuthorizationUsed events disagree: {disagreements:#?}"
    );
    assert!(
        foreign.is_empty(),
        "the buyers were charged for authorizations this test never sent: {foreign:?}"
    );
    assert!(
        charged_unserved.is_empty(),
        "{} authorizations were CHARGED but the buyer was NOT SERVED (seed {seed}):\n{}",
        charged_unserved.len(),
        charged_unserved
            .iter()
            .map(|s| {
                let rows: Vec<_> = journal
                    .iter()
                    .filter(|r| r.payer == s.payer && r.nonce == s.nonce)
                    .map(|r| format!("{:?} {:?} {:?}", r.status, r.tx_hash, r.error))
                    .collect();
                format!("{}\n  journal: {rows:?}", history(s))
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        charged_twice.is_empty(),
        "{} logical calls were CHARGED MORE THAN ONCE (seed {seed}): calls {charged_twice:?}:\n{}",
        charged_twice.len(),
        seen.sent
            .iter()
            .filter(|s| charged_twice.contains(&s.call))
            .map(history)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        seen.unserved_calls.is_empty(),
        "{} logical calls never got their answer within {CALL_LIMIT:?} and \
         {MAX_AUTHORIZATIONS} authorizations (seed {seed}): {:?}",
        seen.unserved_calls.len(),
        seen.unserved_calls
    );
    assert_eq!(
        payee_after - payee_before,
        U256::from(PRICE) * U256::from(charged),
        "the payee's balance must rise by exactly price × charged authorizations (seed {seed})"
    );
    assert_eq!(
        seen.expires_too_soon, 0,
        "authorizations valid for an hour were refused as expires_too_soon (seed {seed})"
    );
    assert_eq!(
        seen.served_without_receipt, 0,
        "200 answers without a PAYMENT-RESPONSE receipt (success, transaction) (seed {seed})"
    );
    assert!(kills >= 20, "the daemon was killed only {kills} times");
    if batching {
        assert!(
            batched > 0,
            "no settlements were batched; the run did not test batching"
        );
    }
    drop(upstream);
}
