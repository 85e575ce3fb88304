//! Gateway speed on a real devnet with the embedded facilitator, every number against
//! baselines measured in the same run on the same machine:
//! - unpaid requests (answered 402 by the gate) per second, vs the same requests
//!   through the gateway as a plain reverse proxy (a free route, no gate) and vs the
//!   upstream called directly;
//! - paid-request latency p50/p99 (verify, proxy, settle on chain) vs the plain proxy
//!   and the upstream called directly, sequentially;
//! - paid calls per second, sequentially, made the way a buyer makes them: through
//!   `x402::client` (GET, read the 402, choose, sign, retry with the payment, read the
//!   receipt), vs the plain proxy's sequential calls/s and vs paid calls whose headers
//!   were signed before the clock started.
//!
//! `cargo bench -p gateway --bench gateway` measures; without `--bench` (as under
//! `cargo test --all-targets`) it runs a small smoke pass so it stays working.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::routing::any;
use gateway::{Documents, Gateway, GatewayConfig, Route, Site};
use testkit::loopback::serve;
use testkit::pay::PRICE;
use x402::Facilitator;
use x402::client::{self, Answer, Client, Policy};

const CONCURRENCY: usize = 32;

/// Requests per second for `total` GETs of `url` with [`CONCURRENCY`] in flight;
/// every answer must have `status`.
async fn throughput(http: &reqwest::Client, url: &str, total: usize, status: u16) -> f64 {
    let started = Instant::now();
    let per_worker = total / CONCURRENCY;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let http = http.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    let r = http.get(&url).send().await.unwrap();
                    assert_eq!(r.status().as_u16(), status);
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    (per_worker * CONCURRENCY) as f64 / started.elapsed().as_secs_f64()
}

/// Sequential latencies of `n` requests built by `make`.
async fn latencies(
    n: usize,
    mut make: impl FnMut(usize) -> reqwest::RequestBuilder,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let r = make(i).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        out.push(started.elapsed());
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (unpaid_n, paid_n) = if measuring { (8000, 200) } else { (64, 4) };

    let chain = testkit::chain::devnet(2).await;
    let db = tempfile::tempdir().unwrap();
    let facilitator = testkit::embedded::facilitator(&chain, db.path()).await;
    let upstream_server = serve(Router::new().fallback(any(|| async { "{\"ok\":true}" }))).await;
    let upstream = upstream_server.url();
    let requirement = testkit::pay::requirement(&chain, chain.accounts()[1].address(), 600);
    let upstream_url = upstream_server.parsed_url();
    let routes = vec![
        Route::new(
            "paid",
            "/services/paid",
            upstream_url.clone(),
            vec![requirement.clone()],
        ),
        Route::new("plain", "/services/plain", upstream_url, Vec::new()),
    ];
    let gateway = Gateway::new(
        GatewayConfig::default(),
        facilitator.clone() as Arc<dyn Facilitator>,
    )
    .unwrap();
    gateway.install(
        routes.clone(),
        Documents::build(&Site::default(), &routes, None),
    );
    let gateway_server = serve(gateway.router()).await;
    let base = gateway_server.url();
    let http = testkit::http();

    let direct_url = format!("{upstream}/x");
    let plain_url = format!("{base}/services/plain/x");
    let paid_url = format!("{base}/services/paid/x");
    // Warm the connection pools.
    throughput(&http, &direct_url, CONCURRENCY, 200).await;
    throughput(&http, &plain_url, CONCURRENCY, 200).await;
    throughput(&http, &paid_url, CONCURRENCY, 402).await;

    let direct_rps = throughput(&http, &direct_url, unpaid_n, 200).await;
    let plain_rps = throughput(&http, &plain_url, unpaid_n, 200).await;
    let challenge_rps = throughput(&http, &paid_url, unpaid_n, 402).await;

    let buyer = PrivateKeySigner::random();
    chain
        .mint_usdc(buyer.address(), U256::from(PRICE * 2 * paid_n as u64))
        .await
        .unwrap();
    let headers: Vec<String> = (0..paid_n)
        .map(|_| testkit::pay::header(&buyer, &requirement))
        .collect();
    let before = chain.usdc_balance(requirement.pay_to).await.unwrap();
    let direct = latencies(paid_n, |_| http.get(&direct_url)).await;
    let plain = latencies(paid_n, |_| http.get(&plain_url)).await;
    let paid = latencies(paid_n, |i| {
        http.get(&paid_url).header("payment-signature", &headers[i])
    })
    .await;
    let buyer_client = Client::new(
        client::http_client().unwrap(),
        buyer,
        Policy::new(U256::from(PRICE)),
    );
    let started = Instant::now();
    for _ in 0..paid_n {
        let request = buyer_client.http().get(&paid_url).build().unwrap();
        match buyer_client.pay(request).await.unwrap() {
            Answer::Delivered(d) => {
                d.response.bytes().await.unwrap();
            }
            other => panic!("expected a delivered answer, got {other:?}"),
        }
    }
    let client_elapsed = started.elapsed();
    let earned = chain.usdc_balance(requirement.pay_to).await.unwrap() - before;
    assert_eq!(
        earned,
        U256::from(PRICE * 2 * paid_n as u64),
        "every paid call settled exactly"
    );

    println!(
        "gateway bench ({unpaid_n} unpaid requests at concurrency {CONCURRENCY}, {paid_n} paid requests sequentially)"
    );
    println!("| case | result | vs plain proxy | vs upstream direct |");
    println!("|---|---|---|---|");
    println!("| upstream direct | {direct_rps:.0} req/s | | 1.00x |");
    println!(
        "| plain reverse proxy (no gate) | {plain_rps:.0} req/s | 1.00x | {:.2}x |",
        plain_rps / direct_rps
    );
    println!(
        "| unpaid request -> 402 | {challenge_rps:.0} req/s | {:.2}x | {:.2}x |",
        challenge_rps / plain_rps,
        challenge_rps / direct_rps
    );
    let stages = gateway.metrics().render();
    for line in stages
        .lines()
        .filter(|l| l.starts_with("agora_gateway_stage_seconds_sum"))
    {
        println!("{line}");
    }
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        let (d, pl, pa) = (
            percentile(&direct, p),
            percentile(&plain, p),
            percentile(&paid, p),
        );
        println!(
            "| upstream direct latency {name} | {:.2} ms | | 1.00x |",
            ms(d)
        );
        println!(
            "| plain proxy latency {name} | {:.2} ms | 1.00x | {:.2}x |",
            ms(pl),
            ms(pl) / ms(d)
        );
        println!(
            "| paid request latency {name} (verify + proxy + settle on chain) | {:.2} ms | {:.2}x | {:.2}x |",
            ms(pa),
            ms(pa) / ms(pl),
            ms(pa) / ms(d)
        );
    }
    let per_second = |total: Duration| paid_n as f64 / total.as_secs_f64();
    let plain_seq = per_second(plain.iter().sum());
    let presigned_seq = per_second(paid.iter().sum());
    let client_seq = per_second(client_elapsed);
    println!("| sequential calls/s | result | vs plain proxy | vs pre-signed paid |");
    println!("|---|---|---|---|");
    println!("| plain proxy | {plain_seq:.1} calls/s | 1.00x | |");
    println!(
        "| paid, header signed beforehand | {presigned_seq:.1} calls/s | {:.3}x | 1.00x |",
        presigned_seq / plain_seq
    );
    println!(
        "| paid through x402::client (402 + sign + retry + settle) | {client_seq:.1} calls/s | {:.3}x | {:.2}x |",
        client_seq / plain_seq,
        client_seq / presigned_seq
    );
}
