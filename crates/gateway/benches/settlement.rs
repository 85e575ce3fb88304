//! Settlement at scale on a real devnet: paid requests through the gateway and its
//! embedded facilitator at concurrency 1, 16, 64 and 256, with settlement batching
//! off and on taking turns in the same run. Each row asserts the payee's exact
//! balance and reports paid/s, p50/p99, the mean time in each gateway stage and the
//! facilitator's JSON-RPC calls per paid request by method; the gas per payment is
//! read from the settlement receipts, single vs batched.
//!
//! `cargo bench -p gateway --bench settlement` measures; without `--bench` (as under
//! `cargo test --all-targets`) it runs a small smoke pass so it stays working.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::routing::any;
use devnet::Devnet;
use facilitator::BatchConfig;
use facilitator::store::SettlementStatus;
use gateway::guard::SERVED_WRITE_DELAY;
use gateway::{Documents, Gateway, GatewayConfig, Route, Site};
use testkit::loopback::serve;
use testkit::pay::PRICE;
use x402::Facilitator;

/// The gateway writes each served record a moment after the answer went out. Each
/// measured row first waits that out, and a second more, so it does not pay for the
/// previous row's writes: without it the second row of every pair ran up to 0.6x its
/// speed when run first (c=16 batched: 800 vs 1,000 paid/s).
const SETTLE_DOWN: Duration = Duration::from_secs(1).saturating_add(SERVED_WRITE_DELAY);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One row of the concurrency sweep.
struct Row {
    concurrency: usize,
    paid: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    rpc: std::collections::BTreeMap<String, u64>,
    /// Mean seconds per paid request in each gateway stage (verify, upstream, settle).
    stages: std::collections::BTreeMap<String, f64>,
}

/// Each stage's (sum of seconds, count) from the gateway's latency histograms, read
/// off the operator metrics text so the bench sees what `/metrics` shows.
fn stage_totals(gateway: &Gateway) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut totals = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in gateway.metrics().render().lines() {
        let Some(rest) = line.strip_prefix("agora_gateway_stage_seconds_") else {
            continue;
        };
        let (Some(stage), Some(value)) = (
            rest.split("stage=\"")
                .nth(1)
                .and_then(|s| s.split('"').next()),
            line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let entry = totals.entry(stage.to_string()).or_default();
        if rest.starts_with("sum") {
            entry.0 += value;
        } else if rest.starts_with("count") {
            entry.1 += value;
        }
    }
    totals
}

/// A gateway (with its on-disk ledger, as `agora serve` runs) in front of an
/// embedded facilitator settling with one batch setting and its own signer, so two
/// stacks can take turns on one chain without sharing a nonce.
struct Stack {
    facilitator: Arc<facilitator::EmbeddedFacilitator>,
    gateway: Gateway,
    url: String,
    http: reqwest::Client,
    payee: Address,
    requirement: x402::PaymentRequirements,
    buyers: Vec<PrivateKeySigner>,
    _servers: (testkit::loopback::Server, testkit::loopback::Server),
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn new(chain: &Devnet, batch: BatchConfig, signer: usize, payments: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = testkit::embedded::config(chain, dir.path());
        config.batch = batch;
        config.signer = chain.accounts()[signer].signer();
        let facilitator = testkit::embedded::open(config).await;
        let upstream = serve(Router::new().fallback(any(|| async { "{\"ok\":true}" }))).await;
        let payee = Address::random();
        let requirement = testkit::pay::requirement(chain, payee, 600);
        let routes = vec![Route::new(
            "paid",
            "/services/paid",
            upstream.parsed_url(),
            vec![requirement.clone()],
        )];
        let gateway = Gateway::new(
            GatewayConfig {
                ledger: Some(dir.path().join("payments.db")),
                ..GatewayConfig::default()
            },
            facilitator.clone() as Arc<dyn Facilitator>,
        )
        .unwrap();
        gateway.install(
            routes.clone(),
            Documents::build(&Site::default(), &routes, None),
        );
        let server = serve(gateway.router()).await;
        let url = format!("{}/services/paid/x", server.url());
        let buyers: Vec<PrivateKeySigner> = (0..16).map(|_| PrivateKeySigner::random()).collect();
        for buyer in &buyers {
            chain
                .mint_usdc(buyer.address(), U256::from(PRICE * payments as u64))
                .await
                .unwrap();
        }
        Self {
            facilitator,
            gateway,
            url,
            http: testkit::http(),
            payee,
            requirement,
            buyers,
            _servers: (upstream, server),
            _dir: dir,
        }
    }

    /// `paid` pre-signed paid requests with `concurrency` in flight; asserts every one
    /// was served and the payee received exactly their sum.
    async fn row(&self, chain: &Devnet, concurrency: usize, paid: usize) -> Row {
        let headers: Arc<Vec<String>> = Arc::new(
            (0..paid)
                .map(|i| {
                    testkit::pay::header(&self.buyers[i % self.buyers.len()], &self.requirement)
                })
                .collect(),
        );
        let before = chain.usdc_balance(self.payee).await.unwrap();
        let rpc_before = self.facilitator.rpc_calls();
        let stages_before = stage_totals(&self.gateway);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, url, headers, next) = (
                    self.http.clone(),
                    self.url.clone(),
                    headers.clone(),
                    next.clone(),
                );
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(header) = headers.get(i) else {
                            return took;
                        };
                        let sent = Instant::now();
                        let r = http
                            .get(&url)
                            .header("payment-signature", header)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200, "every valid payment is served");
                        r.bytes().await.unwrap();
                        took.push(sent.elapsed());
                    }
                })
            })
            .collect();
        let mut took = Vec::with_capacity(paid);
        for w in workers {
            took.extend(w.await.unwrap());
        }
        let elapsed = started.elapsed();
        took.sort();
        assert_eq!(
            chain.usdc_balance(self.payee).await.unwrap() - before,
            U256::from(PRICE * paid as u64),
            "the payee received exactly the payments at concurrency {concurrency}"
        );
        let mut rpc = self.facilitator.rpc_calls();
        for (method, count) in rpc.iter_mut() {
            *count -= rpc_before.get(method).copied().unwrap_or(0);
        }
        let stages = stage_totals(&self.gateway)
            .into_iter()
            .map(|(stage, (sum, count))| {
                let (sum0, count0) = stages_before.get(&stage).copied().unwrap_or_default();
                (stage, (sum - sum0) / (count - count0).max(1.0))
            })
            .collect();
        Row {
            concurrency,
            stages,
            paid,
            per_second: paid as f64 / elapsed.as_secs_f64(),
            p50: percentile(&took, 0.50),
            p99: percentile(&took, 0.99),
            rpc,
        }
    }

    /// Average gas per payment of transactions carrying one payment, and of batches,
    /// from the receipts of every confirmed settlement.
    async fn gas(&self, chain: &Devnet) -> (Option<f64>, Option<f64>) {
        let mut members: std::collections::HashMap<B256, u64> = std::collections::HashMap::new();
        for row in self.facilitator.journal().unwrap() {
            if row.status == SettlementStatus::Confirmed {
                *members.entry(row.tx_hash.unwrap()).or_default() += 1;
            }
        }
        let provider = chain.provider().unwrap();
        let (mut single, mut batched) = ((0u64, 0u64), (0u64, 0u64));
        for (hash, count) in members {
            let receipt = provider
                .get_transaction_receipt(hash)
                .await
                .unwrap()
                .unwrap();
            let into = if count > 1 { &mut batched } else { &mut single };
            into.0 += receipt.gas_used;
            into.1 += count;
        }
        let average = |(gas, n): (u64, u64)| (n > 0).then(|| gas as f64 / n as f64);
        (average(single), average(batched))
    }
}

fn print_row(label: &str, row: &Row) {
    let total: u64 = row.rpc.values().sum();
    let by_method: Vec<String> = row
        .rpc
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(m, n)| format!("{m} {:.2}", *n as f64 / row.paid as f64))
        .collect();
    let stages: Vec<String> = row
        .stages
        .iter()
        .map(|(stage, mean)| format!("{stage} {:.1} ms", mean * 1000.0))
        .collect();
    println!(
        "| {} | {label} | {} | {:.1} | {:.1} ms | {:.1} ms | {} | {:.2} ({}) |",
        row.concurrency,
        row.paid,
        row.per_second,
        ms(row.p50),
        ms(row.p99),
        stages.join(", "),
        total as f64 / row.paid as f64,
        by_method.join(", ")
    );
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let levels: &[(usize, usize)] = if measuring {
        &[(1, 100), (16, 400), (64, 640), (256, 1024)]
    } else {
        &[(1, 2), (16, 16)]
    };
    let payments: usize = levels.iter().map(|(_, n)| n).sum();
    // Two stacks with their own signers take turns at each level, so both meet the
    // chain at the same height (a devnet gets slower as blocks pile up).
    let chain = testkit::chain::devnet(3).await;
    let off = Stack::new(&chain, BatchConfig::OFF, 0, payments).await;
    let on = Stack::new(&chain, BatchConfig::default(), 2, payments).await;
    let mut rows = Vec::new();
    for &(concurrency, paid) in levels {
        if measuring {
            tokio::time::sleep(SETTLE_DOWN).await;
        }
        let a = off.row(&chain, concurrency, paid).await;
        if measuring {
            tokio::time::sleep(SETTLE_DOWN).await;
        }
        let b = on.row(&chain, concurrency, paid).await;
        rows.push((a, b));
    }
    let (off_single, _) = off.gas(&chain).await;
    let (on_single, on_batched) = on.gas(&chain).await;
    chain.stop().await;

    println!(
        "settlement bench ({} mode): paid requests through the gateway and its embedded facilitator, batching off vs on taking turns in one run",
        if measuring { "bench" } else { "smoke" }
    );
    println!(
        "| concurrency | batching | paid | paid/s | p50 | p99 | mean per stage | RPC calls per paid request (by method) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (a, b) in &rows {
        print_row("off", a);
        print_row("on", b);
    }
    for (a, b) in &rows {
        println!(
            "c={}: batching on / off throughput {:.2}x, p50 {:.2}x",
            a.concurrency,
            b.per_second / a.per_second,
            ms(b.p50) / ms(a.p50)
        );
    }
    let gas = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:.0}"));
    println!(
        "gas per payment: alone {} (batching off); alone {}, batched {} (batching on)",
        gas(off_single),
        gas(on_single),
        gas(on_batched)
    );
}
