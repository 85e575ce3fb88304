//! Fetching registration documents, away from log processing: a worker takes agents
//! whose document is pending from the database, resolves their URIs (`data:`,
//! `http(s)://` with a size and time limit and a few retries with backoff, `ipfs://`
//! through a configured gateway), parses them with erc8004's lenient reader and records
//! the document or why it could not be read, per agent. A slow or broken document only
//! ever delays its own agent.
//!
//! URIs come from anyone who registers an agent, so by default the document client
//! refuses loopback, private and link-local targets (resolved names and literal
//! addresses, redirects included). The operator-configured IPFS gateway is trusted, but
//! only its own origin: an `ipfs://` URI must name a well-formed CID (and a path without
//! `..`) before any request is made, and a redirect away from the gateway must lead to a
//! public address like any document. Neither client uses proxies from the environment,
//! so `HTTP_PROXY` cannot carry registrants' URIs somewhere the checks do not see.
//!
//! This file holds the worker; [`client`] builds the two HTTP clients and downloads
//! with retries, [`addresses`] decides which addresses are public, and [`ipfs`] turns
//! an `ipfs://` URI into a gateway URL once its CID and path check out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use erc8004::Registration;
use reqwest::Url;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::FetchConfig;
use crate::record::FetchError;
use crate::store::{FetchOutcome, PendingFetch, Store, StoreError};

mod addresses;
mod client;
mod ipfs;
#[cfg(test)]
mod tests;

use addresses::{Blocked, blocked_literal};

/// Results are written in groups of at most this many.
const FLUSH_EVERY: usize = 64;

/// How long the worker waits for one more result before writing the ones it has.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// Why one attempt failed; `retry` marks failures another attempt may cure.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    message: String,
    retry: bool,
}

impl Failure {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry: false,
        }
    }

    fn transient(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry: true,
            ..Self::new(kind, message)
        }
    }
}

/// Resolves and reads registration documents.
pub(crate) struct Fetcher {
    documents: reqwest::Client,
    gateway: reqwest::Client,
    ipfs_gateway: Url,
    config: FetchConfig,
}

impl Fetcher {
    /// Reads the document at `uri`.
    pub(crate) async fn fetch(&self, uri: &str) -> FetchOutcome {
        match self.resolve(uri.trim()).await {
            Ok(doc) => FetchOutcome::Fetched(Box::new(doc)),
            Err(f) => FetchOutcome::Failed(FetchError {
                kind: f.kind.to_string(),
                message: f.message,
            }),
        }
    }

    async fn resolve(&self, uri: &str) -> Result<Registration, Failure> {
        let scheme = uri
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "data" => Registration::from_data_uri(uri)
                .map_err(|e| Failure::new("malformed", e.to_string())),
            "http" | "https" => {
                let url = Url::parse(uri)
                    .map_err(|e| Failure::new("malformed", format!("{uri:?} is not a URL: {e}")))?;
                if !self.config.allow_private_addresses
                    && let Some(host) = blocked_literal(&url)
                {
                    return Err(Failure::new(
                        "blocked_address",
                        Blocked::address(host).to_string(),
                    ));
                }
                self.with_retries(&self.documents, url).await
            }
            "ipfs" => {
                let url = self.gateway_url(uri)?;
                self.with_retries(&self.gateway, url).await
            }
            _ => Err(Failure::new(
                "unsupported_uri",
                format!("{} is not a data:, http(s):// or ipfs:// URI", preview(uri)),
            )),
        }
    }

    /// Fetches pending documents until the queue is empty and nothing is in flight; with
    /// `wait`, then sleeps until woken or `idle` passes and carries on forever.
    pub(crate) async fn work(
        self: Arc<Self>,
        store: Arc<Store>,
        chain_id: u64,
        wake: Arc<Notify>,
        wait: Option<Duration>,
    ) -> Result<usize, StoreError> {
        let concurrency = self.config.concurrency.max(1);
        let mut in_flight: HashSet<PendingFetch> = HashSet::new();
        let mut running = JoinSet::new();
        let mut done: Vec<(PendingFetch, FetchOutcome)> = Vec::new();
        let mut recorded = 0;
        loop {
            if running.len() < concurrency {
                let wanted = in_flight.len() + concurrency - running.len();
                for pending in store.pending_fetches(chain_id, wanted)? {
                    if running.len() >= concurrency {
                        break;
                    }
                    if in_flight.insert(pending.clone()) {
                        let fetcher = Arc::clone(&self);
                        running.spawn(async move {
                            let outcome = fetcher.fetch(&pending.uri).await;
                            (pending, outcome)
                        });
                    }
                }
            }
            if running.is_empty() {
                recorded += flush(&store, &mut done, &mut in_flight)?;
                if !store.pending_fetches(chain_id, 1)?.is_empty() {
                    continue;
                }
                match wait {
                    Some(idle) => {
                        tokio::select! {
                            () = wake.notified() => {}
                            () = tokio::time::sleep(idle) => {}
                        }
                        continue;
                    }
                    None => return Ok(recorded),
                }
            }
            match tokio::time::timeout(FLUSH_AFTER, running.join_next()).await {
                Ok(Some(Ok(result))) => done.push(result),
                Ok(Some(Err(e))) => tracing::warn!("a registration fetch task failed: {e}"),
                Ok(None) => {}
                Err(_) => {
                    recorded += flush(&store, &mut done, &mut in_flight)?;
                }
            }
            if done.len() >= FLUSH_EVERY {
                recorded += flush(&store, &mut done, &mut in_flight)?;
            }
        }
    }
}

/// Writes finished fetches and forgets them as in flight.
fn flush(
    store: &Store,
    done: &mut Vec<(PendingFetch, FetchOutcome)>,
    in_flight: &mut HashSet<PendingFetch>,
) -> Result<usize, StoreError> {
    if done.is_empty() {
        return Ok(0);
    }
    store.record_fetches(done, x402::time::unix_now())?;
    for (pending, outcome) in done.iter() {
        if let FetchOutcome::Failed(e) = outcome {
            tracing::debug!(
                agent = pending.agent_id,
                kind = e.kind,
                "registration not read: {}",
                e.message
            );
        }
        in_flight.remove(pending);
    }
    let count = done.len();
    done.clear();
    Ok(count)
}

/// The start of a URI, for messages (data URIs can be long).
fn preview(uri: &str) -> String {
    const MAX: usize = 60;
    match uri.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &uri[..cut]),
        None => format!("{uri:?}"),
    }
}
