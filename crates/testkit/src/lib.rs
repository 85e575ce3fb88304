//! agora's test kit: one copy of every fixture that the integration tests and benches
//! of several crates share (a devnet, the embedded facilitator on it, loopback
//! servers and upstreams, the registrar, signed payments, child processes and key
//! files), so a fixture is fixed in one place. Used only as a dev-dependency.

#![allow(clippy::unwrap_used)]

pub mod chain;
pub mod embedded;
pub mod loopback;
pub mod pay;
pub mod process;
pub mod registrar;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

/// An HTTP client for loopback tests: no proxies from the environment.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The status `GET url` answers with.
pub async fn status_of(url: &str) -> u16 {
    http().get(url).send().await.unwrap().status().as_u16()
}

/// Polls `check` every 20 ms until it holds, failing with `what` after `within`,
/// for state that background tasks set.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the agora indexer at `url` has read `agents` registration files (the
/// x402 ones its public API lists with `fetch_status` "ok"), polling every 100 ms and
/// failing after `within`.
pub async fn indexed(url: &str, agents: usize, within: Duration) {
    let client = http();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let page: Option<serde_json::Value> = match client
            .get(format!("{url}/api/v1/public/agents?x402=true"))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let fetched = page
            .as_ref()
            .and_then(|p| p["items"].as_array())
            .map_or(0, |items| {
                items.iter().filter(|a| a["fetch_status"] == "ok").count()
            });
        if fetched == agents {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the indexer did not read {agents} registration files within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
