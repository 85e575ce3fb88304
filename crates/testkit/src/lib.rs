//! agora's test kit: one copy of every fixture that the integration tests and benches
//! of several crates share (a devnet, the embedded facilitator on it, loopback
//! servers and upstreams, the registrar, signed payments, child processes and key
//! files, the `agora serve`/`agora index` daemons, autoresearch repositories), so a
//! fixture is fixed in one place. Used only as a dev-dependency.

#![allow(clippy::unwrap_used)]

pub mod autoresearch;
pub mod chain;
pub mod daemon;
pub mod embedded;
pub mod loopback;
pub mod pay;
pub mod process;
pub mod registrar;
pub mod spend;
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

/// `GET url` read as JSON, for the many checks that read one document.
pub async fn get_json(url: &str) -> serde_json::Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `check` every `every` until it answers `Ok`, and returns that value; after
/// `within` it fails with the last `Err` (what was seen instead), for state that
/// another task or process reaches in its own time.
pub async fn until<T, F, Fut>(within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(tokio::time::Instant::now() < deadline, "{seen}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits up to `within` until the value `watch` holds satisfies `f`, and returns it;
/// the panic names `what` and shows the last value. For state a supervisor publishes
/// through a `tokio::sync::watch` channel.
pub async fn watched<T: Clone + std::fmt::Debug>(
    watch: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    within: Duration,
    f: impl FnMut(&T) -> bool,
) -> T {
    let found = tokio::time::timeout(within, watch.wait_for(f))
        .await
        .map(|r| r.expect("the sender is alive").clone());
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", *watch.borrow()))
}

/// Polls `check` every 20 ms until it holds, failing with `what` after `within`,
/// for state that background tasks set.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until(within, Duration::from_millis(20), || {
        let holds = check();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err(format!("timed out waiting for {what}"))
            }
        }
    })
    .await;
}

/// Waits until the agora indexer at `url` has read `agents` registration files (the
/// x402 ones its public API lists with `fetch_status` "ok"), polling every 100 ms and
/// failing after `within`.
pub async fn indexed(url: &str, agents: usize, within: Duration) {
    let client = http();
    let page_url = format!("{url}/api/v1/public/agents?x402=true");
    until(within, Duration::from_millis(100), || async {
        let page: Option<serde_json::Value> = match client.get(&page_url).send().await {
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
            Ok(())
        } else {
            Err(format!(
                "the indexer did not read {agents} registration files within {within:?}"
            ))
        }
    })
    .await;
}
