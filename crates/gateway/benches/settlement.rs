//! Settlement at scale on a real devnet: paid requests through the gateway and its
//! embedded facilitator at concurrency 1, 16, 64 and 256, with settlement batching
//! off and on in the same run. Each row asserts the payee's exact balance and reports
//! paid/s, p50/p99 and the facilitator's JSON-RPC calls per paid request by method;
//! the gas per payment is read from the settlement receipts, single vs batched.
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
use gateway::{Documents, Gateway, GatewayConfig, Route, Site};
use testkit::loopback::serve;
use testkit::pay::PRICE;
use x402::Facilitator;

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
}

/// What one sweep measured.
struct Sweep {
    rows: Vec<Row>,
    /// Average gas per payment of transactions carrying one payment.
    single_gas: Option<f64>,
    /// Average gas per payment of batch transactions.
    batched_gas: Option<f64>,
}

/// Paid throughput at each of `levels` (concurrency, paid requests) through a fresh
/// gateway (with its on-disk ledger, as `agora serve` runs) and embedded facilitator
/// settling with `batch`; every row asserts that the payee received exactly its
/// payments and that every valid payment was served.
async fn sweep(chain: &Devnet, batch: BatchConfig, levels: &[(usize, usize)]) -> Sweep {
    let dir = tempfile::tempdir().unwrap();
    let mut config = testkit::embedded::config(chain, dir.path());
    config.batch = batch;
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
    let http = testkit::http();
    let buyers: Vec<PrivateKeySigner> = (0..16).map(|_| PrivateKeySigner::random()).collect();
    let total: usize = levels.iter().map(|(_, n)| n).sum();
    for buyer in &buyers {
        chain
            .mint_usdc(buyer.address(), U256::from(PRICE * total as u64))
            .await
            .unwrap();
    }
    let mut rows = Vec::new();
    for &(concurrency, paid) in levels {
        let headers: Arc<Vec<String>> = Arc::new(
            (0..paid)
                .map(|i| testkit::pay::header(&buyers[i % buyers.len()], &requirement))
                .collect(),
        );
        let before = chain.usdc_balance(payee).await.unwrap();
        let rpc_before = facilitator.rpc_calls();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, url, headers, next) =
                    (http.clone(), url.clone(), headers.clone(), next.clone());
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
            chain.usdc_balance(payee).await.unwrap() - before,
            U256::from(PRICE * paid as u64),
            "the payee received exactly the payments at concurrency {concurrency}"
        );
        if std::env::var_os("AGORA_BENCH_STAGES").is_some() {
            for line in gateway
                .metrics()
                .render()
                .lines()
                .filter(|l| l.starts_with("agora_gateway_stage_seconds_sum"))
            {
                println!("c={concurrency} {line}");
            }
        }
        let mut rpc = facilitator.rpc_calls();
        for (method, count) in rpc.iter_mut() {
            *count -= rpc_before.get(method).copied().unwrap_or(0);
        }
        rows.push(Row {
            concurrency,
            paid,
            per_second: paid as f64 / elapsed.as_secs_f64(),
            p50: percentile(&took, 0.50),
            p99: percentile(&took, 0.99),
            rpc,
        });
    }
    // Gas per payment from the receipts: each transaction's gas over its members.
    let mut members: std::collections::HashMap<B256, u64> = std::collections::HashMap::new();
    for row in facilitator.journal().unwrap() {
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
    Sweep {
        rows,
        single_gas: average(single),
        batched_gas: average(batched),
    }
}

fn print_rows(label: &str, rows: &[Row]) {
    for row in rows {
        let total: u64 = row.rpc.values().sum();
        let by_method: Vec<String> = row
            .rpc
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(m, n)| format!("{m} {:.2}", *n as f64 / row.paid as f64))
            .collect();
        println!(
            "| {} | {label} | {} | {:.1} | {:.1} ms | {:.1} ms | {:.2} ({}) |",
            row.concurrency,
            row.paid,
            row.per_second,
            ms(row.p50),
            ms(row.p99),
            total as f64 / row.paid as f64,
            by_method.join(", ")
        );
    }
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let levels: &[(usize, usize)] = if measuring {
        &[(1, 100), (16, 400), (64, 640), (256, 1024)]
    } else {
        &[(1, 2), (16, 16)]
    };
    let chain = testkit::chain::devnet(2).await;
    let off = sweep(&chain, BatchConfig::OFF, levels).await;
    let on = sweep(&chain, BatchConfig::default(), levels).await;
    chain.stop().await;

    println!(
        "settlement bench ({} mode): paid requests through the gateway and its embedded facilitator, batching off vs on in one run",
        if measuring { "bench" } else { "smoke" }
    );
    println!(
        "| concurrency | batching | paid | paid/s | p50 | p99 | RPC calls per paid request (by method) |"
    );
    println!("|---|---|---|---|---|---|---|");
    print_rows("off", &off.rows);
    print_rows("on", &on.rows);
    for (a, b) in off.rows.iter().zip(&on.rows) {
        println!(
            "c={}: batching on / off throughput {:.2}x",
            a.concurrency,
            b.per_second / a.per_second
        );
    }
    let gas = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:.0}"));
    println!(
        "gas per payment: alone {} (batching off); alone {}, batched {} (batching on)",
        gas(off.single_gas),
        gas(on.single_gas),
        gas(on.batched_gas)
    );
}
