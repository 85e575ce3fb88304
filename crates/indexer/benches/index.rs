//! Indexer throughput on a real devnet, each number against a baseline from the same
//! run: 10,000 agents are registered (batched into a few large blocks with automine
//! off), then indexed from block 0 (registry events per second, then registration
//! documents per second), then the API's p50/p95 latency for filtered queries is
//! measured against `/health`, which touches no database.
//!
//! `cargo bench -p indexer --bench index` measures; without `--bench` (as under
//! `cargo test --all-targets`) it runs a small smoke pass so it stays working.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use alloy::rpc::types::BlockNumberOrTag;
use base64::Engine;
use devnet::Devnet;
use erc8004::IIdentityRegistry;
use indexer::{Indexer, IndexerConfig};

const SENDERS: usize = 10;

const SKILLS: [&str; 4] = [
    "devops_mlops/model_versioning",
    "natural_language_processing/natural_language_generation/text_completion",
    "natural_language_processing/language_translation/translation",
    "research_and_development/scientific_research",
];

/// A small inline registration document (short URIs keep gas per agent low).
fn uri(i: usize) -> String {
    let json = format!(
        r#"{{"name":"agent-{i}","description":"bench agent","x402Support":true,"services":[{{"name":"OASF","skills":["{}"]}}]}}"#,
        SKILLS[i % SKILLS.len()]
    );
    format!(
        "data:application/json;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(json)
    )
}

/// Sends `count` registrations spread over the senders without mining, then mines
/// until the pool is empty; returns the blocks mined.
async fn register(chain: &Devnet, count: usize) -> u64 {
    let provider = chain.provider().unwrap();
    chain.set_automine(false).await.unwrap();
    let _: bool = provider
        .raw_request("anvil_setBlockGasLimit".into(), ("0x1dcd6500",))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let account = chain.accounts()[s + 1].clone();
            let provider = chain.provider_for(account.signer()).unwrap();
            tokio::spawn(async move {
                let registry =
                    IIdentityRegistry::new(devnet::IDENTITY_REGISTRY_ADDRESS, provider.clone());
                let mut nonce = provider
                    .get_transaction_count(account.address())
                    .await
                    .unwrap();
                for i in (s..count).step_by(SENDERS) {
                    let _pending = registry
                        .register_1(uri(i))
                        .nonce(nonce)
                        .gas(600_000)
                        .max_fee_per_gas(100_000_000_000)
                        .max_priority_fee_per_gas(1)
                        .send()
                        .await
                        .unwrap();
                    nonce += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut blocks = 0;
    loop {
        chain.mine().await.unwrap();
        blocks += 1;
        let block = provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .unwrap();
        if block.transactions.is_empty() {
            break;
        }
    }
    chain.set_automine(true).await.unwrap();
    blocks - 1
}

/// p50 and p95 of `n` sequential GETs of `path`, after a warm-up.
async fn latency(client: &reqwest::Client, url: &str, n: usize) -> (Duration, Duration) {
    for _ in 0..n / 10 + 1 {
        client.get(url).send().await.unwrap().bytes().await.unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let response = client.get(url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.bytes().await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    (samples[n / 2], samples[n * 95 / 100])
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (agents, requests) = if measuring { (10_000, 200) } else { (40, 20) };

    let chain = testkit::chain::devnet(SENDERS + 1).await;
    let start = Instant::now();
    let blocks = register(&chain, agents).await;
    let registering = start.elapsed();

    let db = tempfile::tempdir().unwrap();
    let mut config = IndexerConfig::new(chain.rpc_url(), db.path().join("bench.db"));
    config.poll_interval = Duration::from_millis(100);
    let indexer = Indexer::open(config).await.unwrap();
    let start = Instant::now();
    let report = indexer.sync().await.unwrap();
    let indexing = start.elapsed();
    assert_eq!(
        report.events,
        agents * 3,
        "Transfer, Registered, MetadataSet each"
    );
    let start = Instant::now();
    let documents = indexer.fetch_pending().await.unwrap();
    let fetching = start.elapsed();
    assert_eq!(documents, agents);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(indexer.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let health = format!("{base}/health");
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(&health)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the indexer reports caught up");

    let queries = [
        ("`/health` (baseline, no database)", "/health".to_string()),
        (
            "skill, exact",
            format!("/api/v1/public/agents?skill={}", SKILLS[0]),
        ),
        (
            "skill, `natural_language_processing/*`",
            "/api/v1/public/agents?skill=natural_language_processing/*".to_string(),
        ),
        ("unfiltered list", "/api/v1/public/agents".to_string()),
        (
            "search (substring scan)",
            "/api/v1/public/agents?search=agent-7".to_string(),
        ),
    ];
    let filtered = testkit::get_json(&format!("{base}{}", queries[1].1)).await;
    assert_eq!(
        filtered["total"].as_u64(),
        Some(agents.div_ceil(SKILLS.len()) as u64)
    );
    let mut rows = Vec::new();
    for (label, path) in &queries {
        let (p50, p95) = latency(&client, &format!("{base}{path}"), requests).await;
        rows.push((label, p50, p95));
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    chain.stop().await;

    let baseline = rows[0].1;
    println!(
        "\nindexer benchmark ({} mode): {agents} agents in {blocks} blocks, registered in {:.1} s\n",
        if measuring { "bench" } else { "smoke" },
        registering.as_secs_f64()
    );
    println!("| stage | work | time | rate |");
    println!("|---|---|---|---|");
    println!(
        "| index events from block 0 | {} events | {:.2} s | {:.0} events/s |",
        report.events,
        indexing.as_secs_f64(),
        report.events as f64 / indexing.as_secs_f64()
    );
    println!(
        "| fetch + parse documents (data: URIs) | {documents} documents | {:.2} s | {:.0} documents/s |",
        fetching.as_secs_f64(),
        documents as f64 / fetching.as_secs_f64()
    );
    println!("\n| API request ({requests} sequential, keep-alive) | p50 | p95 | p50 vs baseline |");
    println!("|---|---|---|---|");
    for (label, p50, p95) in rows {
        println!(
            "| {label} | {} | {} | {:.1}x |",
            ms(p50),
            ms(p95),
            p50.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}
