//! The soak run shared by the CI test (`tests/it/soak.rs`, 1,000 requests) and the bench
//! (`benches/soak.rs`, 10,000): paid requests at a fixed concurrency against `agora
//! serve --rpc` on a devnet, mixed with the traffic that must never cost a buyer
//! anything: upstream 500s (10%), replays of an already-served header (5%),
//! authorizations that expire too soon (5%), malformed headers (2%), and buyers who
//! spend their own nonce while their call is at a slow upstream (5%: they cancel the
//! authorization or send themselves 1 unit with the same nonce, which leaves the nonce
//! used and the seller unpaid; none of them may be served). Every answer's status is
//! checked, then the chain: each successful call charged exactly once, nothing else
//! charged, and the payee's balance up by exactly price × successes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use devnet::Devnet;
use testkit::spend::{Spend, spend};
use tokio::sync::Notify;
use x402::PaymentRequirements;
use x402::time::unix_now;

use super::{Answer, PRICE, Rng, Seller, UPSTREAM_FAILURE};

/// Buyer accounts (devnet accounts 2..).
const BUYERS: usize = 8;
/// How long one request may keep retrying an unknown outcome with the same header.
const RETRY_LIMIT: Duration = Duration::from_secs(60);

/// How big a soak run is.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub requests: usize,
    pub concurrency: usize,
    pub seed: u64,
}

impl SoakConfig {
    /// `AGORA_SOAK_REQUESTS` (else `default_requests`), `AGORA_SOAK_CONCURRENCY`
    /// (else 32), `AGORA_SOAK_SEED` (else the clock); `--requests N` and
    /// `--concurrency N` in `args` win over the environment.
    pub fn from_env(default_requests: usize, args: &[String]) -> Self {
        let number = |var: &str, flag: &str, default: usize| -> usize {
            let from_args = args
                .iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned();
            match from_args.or_else(|| std::env::var(var).ok()) {
                Some(v) => v.trim().parse().unwrap_or_else(|_| {
                    panic!("{flag} / {var} must be a positive integer, not {v:?}")
                }),
                None => default,
            }
        };
        Self {
            requests: number("AGORA_SOAK_REQUESTS", "--requests", default_requests).max(1),
            concurrency: number("AGORA_SOAK_CONCURRENCY", "--concurrency", 32).max(1),
            seed: Rng::seed_from_env("AGORA_SOAK_SEED"),
        }
    }
}

/// What a request is meant to exercise, and so what it must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A fresh, valid payment: 200 with a receipt, charged once.
    Paid,
    /// The upstream answers 500: the buyer sees that 500 and is not charged.
    UpstreamFails,
    /// A header that was already served, sent again: 402, never charged again.
    Replay,
    /// validBefore = now + 20 s: 402 `expires_too_soon`, not charged.
    ExpiresTooSoon,
    /// Not a payment header at all: 400.
    Malformed,
    /// While the call is at the upstream, its buyer cancels the authorization or
    /// spends the same nonce on itself: 402 `authorization_spent_elsewhere`, never
    /// served, and the payee gains nothing.
    SpendsOwnNonce,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Paid => "200 with a receipt",
            Kind::UpstreamFails => "the upstream's own 500",
            Kind::Replay => "402",
            Kind::ExpiresTooSoon => "402 expires_too_soon",
            Kind::Malformed => "400",
            Kind::SpendsOwnNonce => "402 authorization_spent_elsewhere",
        }
    }
}

/// The mix: 10% upstream 500s, 5% replays, 5% expiring too soon, 2% malformed, 5%
/// buyers spending their own nonce mid-call, the rest fresh payments; shuffled with
/// the seed.
pub fn plan(requests: usize, rng: &mut Rng) -> Vec<Kind> {
    let share = |percent: usize| requests * percent / 100;
    let mut kinds = Vec::with_capacity(requests);
    kinds.extend(std::iter::repeat_n(Kind::UpstreamFails, share(10)));
    kinds.extend(std::iter::repeat_n(Kind::Replay, share(5)));
    kinds.extend(std::iter::repeat_n(Kind::ExpiresTooSoon, share(5)));
    kinds.extend(std::iter::repeat_n(Kind::Malformed, share(2)));
    kinds.extend(std::iter::repeat_n(Kind::SpendsOwnNonce, share(5)));
    kinds.resize(requests, Kind::Paid);
    rng.shuffle(&mut kinds);
    kinds
}

/// One request's fate.
#[derive(Debug, Clone)]
struct Outcome {
    index: usize,
    kind: Kind,
    /// The authorization it carried (none for malformed headers and replays).
    authorization: Option<(Address, B256)>,
    /// Answers in order (retries of an unknown outcome included).
    answers: Vec<String>,
    /// Whether the last answer is the one `kind` must get.
    as_expected: bool,
    served: bool,
}

/// The result of a soak run; `violations` empty means every check held.
pub struct SoakReport {
    pub config: SoakConfig,
    pub elapsed: Duration,
    pub by_kind: BTreeMap<String, (usize, usize)>,
    pub answers: BTreeMap<String, usize>,
    pub retried_unknown: usize,
    pub served: usize,
    pub charged: usize,
    pub charged_unserved: usize,
    pub charged_failed: usize,
    pub charged_expiring: usize,
    pub spent_served: usize,
    pub double_charges: usize,
    pub payee_delta: U256,
    pub violations: Vec<String>,
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "soak: {} requests at concurrency {} in {:.1} s ({:.0} requests/s), seed {}",
            self.config.requests,
            self.config.concurrency,
            secs,
            self.config.requests as f64 / secs.max(1e-9),
            self.config.seed
        )?;
        writeln!(f, "| request kind | count | answered as expected |")?;
        writeln!(f, "|---|---|---|")?;
        for (kind, (count, ok)) in &self.by_kind {
            writeln!(f, "| {kind} | {count} | {ok} |")?;
        }
        writeln!(f, "answers (retries included): {:?}", self.answers)?;
        writeln!(
            f,
            "unknown outcomes retried with the same header: {}",
            self.retried_unknown
        )?;
        writeln!(f, "| check | value | must be |")?;
        writeln!(f, "|---|---|---|")?;
        writeln!(f, "| served (200 with receipt) | {} | — |", self.served)?;
        writeln!(
            f,
            "| charged on chain | {} | {} |",
            self.charged, self.served
        )?;
        writeln!(
            f,
            "| charged + not served | {} | 0 |",
            self.charged_unserved
        )?;
        writeln!(f, "| double charges | {} | 0 |", self.double_charges)?;
        writeln!(
            f,
            "| served with a nonce its buyer spent elsewhere | {} | 0 |",
            self.spent_served
        )?;
        writeln!(
            f,
            "| charged for an upstream 500 | {} | 0 |",
            self.charged_failed
        )?;
        writeln!(
            f,
            "| charged for an expiring authorization | {} | 0 |",
            self.charged_expiring
        )?;
        writeln!(
            f,
            "| payee balance rise (atomic) | {} | {} |",
            self.payee_delta,
            U256::from(PRICE) * U256::from(self.served)
        )?;
        if self.violations.is_empty() {
            writeln!(f, "all checks held")
        } else {
            writeln!(f, "{} VIOLATIONS:", self.violations.len())?;
            for v in self.violations.iter().take(40) {
                writeln!(f, "  - {v}")?;
            }
            if self.violations.len() > 40 {
                writeln!(f, "  ... and {} more", self.violations.len() - 40)?;
            }
            Ok(())
        }
    }
}

/// The slow upstream of the spending buyers' route: each call (by path) waits at the
/// upstream until its buyer's own transaction mined, so the spend lands mid-call.
#[derive(Default)]
struct Holds {
    calls: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
}

impl Holds {
    fn notify(&self, path: &str) -> Arc<Notify> {
        self.calls
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .clone()
    }

    fn arrived(&self, path: &str) -> bool {
        self.calls.lock().unwrap().contains_key(path)
    }

    /// Serves the held upstream on loopback.
    async fn serve(self: &Arc<Self>) -> testkit::loopback::Server {
        let holds = self.clone();
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .fallback(move |request: Request| {
                let holds = holds.clone();
                async move {
                    let path = request.uri().path().to_string();
                    let release = holds.notify(&path);
                    // Bounded, so a test that lost its buyer cannot hang the run.
                    let _ = tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
                    axum::Json(serde_json::json!({"held": path}))
                }
            });
        testkit::loopback::serve(app).await
    }
}

struct Shared {
    url: String,
    requirement: PaymentRequirements,
    /// The route whose upstream holds each call for the spending buyers.
    held_url: String,
    held_requirement: PaymentRequirements,
    holds: Arc<Holds>,
    chain: Arc<Devnet>,
    /// One buyer transaction at a time (buyers share accounts, so their nonces).
    spending: tokio::sync::Mutex<()>,
    buyers: Vec<PrivateKeySigner>,
    plan: Vec<Kind>,
    next: AtomicUsize,
    /// Headers that were served, for replays.
    served_headers: Mutex<Vec<String>>,
    outcomes: Mutex<Vec<Outcome>>,
    client: reqwest::Client,
    seed: u64,
}

/// Not payment headers, each in its own way: 400 for all of them.
const MALFORMED: [&str; 4] = [
    "not base64 at all!",
    "e30=",                     // {}
    "eyJ4NDAyVmVyc2lvbiI6Mn0=", // {"x402Version":2}
    "W1sxLDIsM11d",             // [[1,2,3]]
];

impl Shared {
    async fn one(&self, index: usize) -> Outcome {
        let kind = self.plan[index];
        let mut rng = Rng::new(self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
        let buyer = &self.buyers[index % self.buyers.len()];
        let mut url = format!("{}/soak/{index}", self.url);
        let mut authorization = None;
        let header = match kind {
            Kind::Paid => {
                let signed = testkit::pay::sign(buyer, &self.requirement);
                authorization = Some((signed.payer, signed.nonce));
                signed.header
            }
            Kind::UpstreamFails => {
                url.push_str("?fail=1");
                let signed = testkit::pay::sign(buyer, &self.requirement);
                authorization = Some((signed.payer, signed.nonce));
                signed.header
            }
            Kind::ExpiresTooSoon => {
                let signed =
                    testkit::pay::sign_valid_until(buyer, &self.requirement, unix_now() + 20);
                authorization = Some((signed.payer, signed.nonce));
                signed.header
            }
            Kind::Malformed => MALFORMED[index % MALFORMED.len()].to_string(),
            Kind::SpendsOwnNonce => return self.spends_own_nonce(index, buyer).await,
            Kind::Replay => match self.served_header(&mut rng).await {
                Some(h) => h,
                None => {
                    return Outcome {
                        index,
                        kind,
                        authorization,
                        answers: vec!["nothing was served to replay within 60 s".into()],
                        as_expected: false,
                        served: false,
                    };
                }
            },
        };
        let started = Instant::now();
        let mut answers = Vec::new();
        loop {
            let answer = super::send(&self.client, &url, &header).await;
            answers.push(answer.label());
            let unknown = match &answer {
                Answer::Pending { .. } | Answer::NoReply { .. } => true,
                // Busy or not ready: retrying the same header is allowed.
                Answer::Other { status, .. } => matches!(status, 429 | 503),
                _ => false,
            };
            if unknown && started.elapsed() < RETRY_LIMIT {
                let pause = match &answer {
                    Answer::Pending { retry_after } => {
                        (*retry_after).min(Duration::from_millis(500))
                    }
                    _ => Duration::from_millis(50),
                };
                tokio::time::sleep(pause).await;
                continue;
            }
            let as_expected = match (&answer, kind) {
                (Answer::Served { receipt_ok, .. }, Kind::Paid) => *receipt_ok,
                (Answer::Other { status, body }, Kind::UpstreamFails) => {
                    *status == 500 && body.contains(UPSTREAM_FAILURE)
                }
                (Answer::Refused { .. }, Kind::Replay) => true,
                (Answer::Refused { reason }, Kind::ExpiresTooSoon) => reason == "expires_too_soon",
                (Answer::BadRequest { .. }, Kind::Malformed) => true,
                _ => false,
            };
            let served = matches!(answer, Answer::Served { .. });
            if served && kind == Kind::Paid {
                self.served_headers.lock().unwrap().push(header.clone());
            }
            return Outcome {
                index,
                kind,
                authorization,
                answers,
                as_expected,
                served,
            };
        }
    }

    /// A paid call to the held upstream; while it is held there, its buyer spends the
    /// nonce itself (cancel or a 1-unit self-transfer, alternately), then the upstream
    /// answers and the gateway settles.
    async fn spends_own_nonce(&self, index: usize, buyer: &PrivateKeySigner) -> Outcome {
        let kind = Kind::SpendsOwnNonce;
        let signed = testkit::pay::sign(buyer, &self.held_requirement);
        let authorization = Some((signed.payer, signed.nonce));
        let path = format!("/spend/{index}");
        let url = format!("{}{path}", self.held_url);
        let client = self.client.clone();
        let header = signed.header.clone();
        let call = tokio::spawn(async move { super::send(&client, &url, &header).await });
        let holds = &self.holds;
        let arrived = testkit::until(Duration::from_secs(30), Duration::from_millis(10), || {
            let path = path.clone();
            async move {
                if holds.arrived(&path) {
                    Ok(())
                } else {
                    Err(format!("request #{index} never reached the upstream"))
                }
            }
        });
        arrived.await;
        let how = if index.is_multiple_of(2) {
            Spend::Cancel
        } else {
            Spend::SelfTransfer
        };
        {
            let _one = self.spending.lock().await;
            let nonce = signed.nonce;
            spend(
                &self.chain,
                buyer.clone(),
                buyer,
                &self.held_requirement,
                nonce,
                how,
            )
            .await;
        }
        self.holds.notify(&path).notify_one();
        let answer = call.await.expect("a spending buyer's call panicked");
        let as_expected = matches!(&answer, Answer::Refused { reason } if reason == "authorization_spent_elsewhere");
        Outcome {
            index,
            kind,
            authorization,
            served: matches!(answer, Answer::Served { .. }),
            answers: vec![format!("{} after {how:?}", answer.label())],
            as_expected,
        }
    }

    async fn served_header(&self, rng: &mut Rng) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            {
                let served = self.served_headers.lock().unwrap();
                if !served.is_empty() {
                    let pick = rng.below(served.len() as u64) as usize;
                    return Some(served[pick].clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let index = self.next.fetch_add(1, Ordering::SeqCst);
            if index >= self.plan.len() {
                return;
            }
            let outcome = self.one(index).await;
            self.outcomes.lock().unwrap().push(outcome);
        }
    }
}

/// Runs a whole soak: devnet, daemon, the traffic, the chain checks.
pub async fn run(config: SoakConfig) -> SoakReport {
    println!(
        "soak: {} requests at concurrency {}, seed {} (replay with AGORA_SOAK_SEED={})",
        config.requests, config.concurrency, config.seed, config.seed
    );
    let mut rng = Rng::new(config.seed);
    let super::Market {
        chain,
        payee,
        buyers,
        upstream: _upstream,
        mut seller,
        url,
        client,
        requirement,
        payee_before,
        dir: _dir,
    } = super::market("soak", BUYERS, 300).await;
    let buyer_addresses: HashSet<Address> = buyers.iter().map(|b| b.address()).collect();
    let chain = Arc::new(chain);
    // The spending buyers' route, on the same seller and payee, before a slow upstream.
    let holds = Arc::new(Holds::default());
    let held = holds.serve().await;
    seller.sell("soak-held", &held.url(), payee, 300).await;
    let held_url = format!("{}/services/soak-held", seller.url);
    let held_requirement = super::requirement(&client, &format!("{held_url}/x"))
        .await
        .expect("the held route answers an unpaid request with its 402");

    let shared = Arc::new(Shared {
        url,
        requirement,
        held_url,
        held_requirement,
        holds,
        chain: chain.clone(),
        spending: tokio::sync::Mutex::new(()),
        buyers,
        plan: plan(config.requests, &mut rng),
        next: AtomicUsize::new(0),
        served_headers: Mutex::new(Vec::new()),
        outcomes: Mutex::new(Vec::with_capacity(config.requests)),
        client,
        seed: config.seed,
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| tokio::spawn(shared.clone().worker()))
        .collect();
    for worker in workers {
        worker.await.expect("a soak worker panicked");
    }
    let elapsed = started.elapsed();
    // Let anything still settling land, then stop the daemon cleanly.
    tokio::time::sleep(Duration::from_secs(1)).await;
    seller.stop().await;

    let mut outcomes = std::mem::take(&mut *shared.outcomes.lock().unwrap());
    outcomes.sort_by_key(|o| o.index);
    judge(
        config,
        elapsed,
        &chain,
        &buyer_addresses,
        payee,
        payee_before,
        &outcomes,
        &seller,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn judge(
    config: SoakConfig,
    elapsed: Duration,
    chain: &Devnet,
    buyer_addresses: &HashSet<Address>,
    payee: Address,
    payee_before: U256,
    outcomes: &[Outcome],
    seller: &Seller,
) -> SoakReport {
    let mut violations = Vec::new();
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut retried_unknown = 0;
    // Wrong statuses, grouped by (kind, what came back): request numbers.
    let mut wrong: BTreeMap<(Kind, String), Vec<usize>> = BTreeMap::new();
    for o in outcomes {
        let entry = by_kind.entry(format!("{:?}", o.kind)).or_insert((0, 0));
        entry.0 += 1;
        if o.as_expected {
            entry.1 += 1;
        } else {
            wrong
                .entry((o.kind, o.answers.join(" -> ")))
                .or_default()
                .push(o.index);
        }
        retried_unknown += o.answers.len().saturating_sub(1);
        for a in &o.answers {
            *answers.entry(a.clone()).or_insert(0) += 1;
        }
    }

    let signed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.authorization.is_some())
        .collect();
    let pairs: Vec<(Address, B256)> = signed.iter().filter_map(|o| o.authorization).collect();
    let state = super::authorizations_used(chain, &pairs).await;
    let events = super::used_events(chain).await;
    let mut served = 0;
    let mut charged = 0;
    // Requests (with what they got) per broken money rule.
    let mut broken: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (o, &used) in signed.iter().zip(&state) {
        let pair = o.authorization.unwrap_or_default();
        let emitted = events.get(&pair).copied().unwrap_or(0);
        let this = || format!("#{} {:?}", o.index, o.answers);
        if o.kind == Kind::SpendsOwnNonce {
            // Its buyer used or cancelled the nonce itself (a cancel emits no
            // AuthorizationUsed): that is no charge; the payee's balance below says
            // whether anything reached the seller.
            if o.served {
                broken
                    .entry("SERVED with a nonce its buyer spent elsewhere (seller's loss)")
                    .or_default()
                    .push(this());
            }
            continue;
        }
        if (emitted == 1) != used || emitted > 1 {
            broken
                .entry("authorizationState and AuthorizationUsed events disagree")
                .or_default()
                .push(format!("#{}: state {used}, {emitted} events", o.index));
        }
        if used {
            charged += 1;
        }
        let rule = match (o.kind, o.served, used) {
            (Kind::Paid, true, _) => {
                served += 1;
                (!used).then_some("served but never charged (seller's loss)")
            }
            (Kind::Paid, false, true) => Some("CHARGED but NOT SERVED"),
            (Kind::UpstreamFails, _, true) => Some("CHARGED for an upstream 500"),
            (Kind::ExpiresTooSoon, _, true) => {
                Some("CHARGED for an authorization that expires too soon")
            }
            _ => None,
        };
        if let Some(rule) = rule {
            broken.entry(rule).or_default().push(this());
        }
    }
    let count = |rule: &str| broken.get(rule).map_or(0, Vec::len);
    let charged_unserved = count("CHARGED but NOT SERVED");
    let charged_failed = count("CHARGED for an upstream 500");
    let charged_expiring = count("CHARGED for an authorization that expires too soon");
    let spent_served = count("SERVED with a nonce its buyer spent elsewhere (seller's loss)");
    for (rule, requests) in &broken {
        violations.push(format!(
            "{} requests {rule}: {}{}",
            requests.len(),
            requests[..requests.len().min(5)].join(", "),
            if requests.len() > 5 { ", ..." } else { "" }
        ));
    }
    // A second charge of one authorization, or a charge of one this run never sent
    // (a replay can only cost money through one of these).
    let sent: HashSet<(Address, B256)> = pairs.iter().copied().collect();
    let double_charges: usize = events
        .iter()
        .filter(|((who, _), _)| buyer_addresses.contains(who))
        .map(|(pair, n)| if sent.contains(pair) { n - 1 } else { *n })
        .sum();
    if double_charges > 0 {
        violations.push(format!(
            "{double_charges} DOUBLE CHARGES: authorizations charged twice or charged without being sent"
        ));
    }
    let payee_after = chain.usdc_balance(payee).await.unwrap();
    let payee_delta = payee_after - payee_before;
    let expected = U256::from(PRICE) * U256::from(served);
    if payee_delta != expected {
        violations.push(format!(
            "the payee's balance rose by {payee_delta} atomic, not price × served = {expected}"
        ));
    }
    for ((kind, got), requests) in wrong {
        violations.push(format!(
            "{} {kind:?} requests must get {} but got [{got}] (requests {:?}{})",
            requests.len(),
            kind.expected(),
            &requests[..requests.len().min(5)],
            if requests.len() > 5 { ", ..." } else { "" }
        ));
    }
    if !violations.is_empty() {
        violations.push(format!("daemon log tail:\n{}", seller.log_tail(30)));
    }
    SoakReport {
        config,
        elapsed,
        by_kind,
        answers,
        retried_unknown,
        served,
        charged,
        charged_unserved,
        charged_failed,
        charged_expiring,
        spent_served,
        double_charges,
        payee_delta,
        violations,
    }
}
