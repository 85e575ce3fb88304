//! Fetching registration documents, away from log processing: a worker takes agents
//! whose document is pending from the database, resolves their URIs (`data:`,
//! `http(s)://` with a size and time limit and a few retries with backoff, `ipfs://`
//! through a configured gateway), parses them with erc8004's lenient reader and records
//! the document or why it could not be read, per agent. A slow or broken document only
//! ever delays its own agent.
//!
//! URIs come from anyone who registers an agent, so by default the document client
//! refuses loopback, private and link-local targets (resolved names and literal
//! addresses, redirects included); the operator-configured IPFS gateway is trusted.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use erc8004::Registration;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::FetchConfig;
use crate::record::FetchError;
use crate::store::{FetchOutcome, PendingFetch, Store, StoreError};

/// Results are written in groups of at most this many.
const FLUSH_EVERY: usize = 64;

/// How long the worker waits for one more result before writing the ones it has.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// Redirects followed per document.
const MAX_REDIRECTS: usize = 5;

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

/// The error the guarded resolver and redirect policy raise, found again in reqwest's
/// error chain to report `blocked_address`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is a loopback, private or link-local address; registration files must be on public hosts"
)]
struct Blocked(String);

/// Resolves names to public addresses only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a globally routable address (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

/// A literal IP host that is not public, if `url` has one.
fn blocked_literal(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = literal.parse().ok()?;
    (!is_public(ip)).then(|| ip.to_string())
}

/// Resolves and reads registration documents.
pub(crate) struct Fetcher {
    documents: reqwest::Client,
    gateway: reqwest::Client,
    ipfs_gateway: Url,
    config: FetchConfig,
}

impl Fetcher {
    /// Builds the two HTTP clients (guarded for documents unless private addresses are
    /// allowed, plain for the gateway).
    pub(crate) fn new(config: FetchConfig, ipfs_gateway: Url) -> Result<Self, reqwest::Error> {
        let user_agent = concat!("agora-indexer/", env!("CARGO_PKG_VERSION"));
        let mut documents = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(config.timeout);
        if config.allow_private_addresses {
            documents = documents.redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS));
        } else {
            documents = documents.dns_resolver(Arc::new(PublicOnly)).redirect(
                reqwest::redirect::Policy::custom(|attempt| {
                    if let Some(host) = blocked_literal(attempt.url()) {
                        attempt.error(Blocked(host))
                    } else if attempt.previous().len() >= MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }),
            );
        }
        let gateway = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(config.timeout)
            .build()?;
        Ok(Self {
            documents: documents.build()?,
            gateway,
            ipfs_gateway,
            config,
        })
    }

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
                    return Err(Failure::new("blocked_address", Blocked(host).to_string()));
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

    /// `ipfs://<cid>/<path>` (or the older `ipfs://ipfs/<cid>`) on the gateway.
    fn gateway_url(&self, uri: &str) -> Result<Url, Failure> {
        let rest = uri.get("ipfs://".len()..).unwrap_or_default();
        let rest = rest.strip_prefix("ipfs/").unwrap_or(rest);
        if rest.is_empty() {
            return Err(Failure::new(
                "malformed",
                format!("{uri:?} names no IPFS content"),
            ));
        }
        self.ipfs_gateway
            .join(&format!("ipfs/{rest}"))
            .map_err(|e| {
                Failure::new(
                    "malformed",
                    format!("{uri:?} cannot be put on the gateway: {e}"),
                )
            })
    }

    async fn with_retries(
        &self,
        client: &reqwest::Client,
        url: Url,
    ) -> Result<Registration, Failure> {
        let mut attempt = 0;
        loop {
            let result =
                tokio::time::timeout(self.config.timeout, self.download(client, url.clone())).await;
            let failure = match result {
                Ok(Ok(bytes)) => {
                    return serde_json::from_slice(&bytes).map_err(|e| {
                        Failure::new(
                            "malformed",
                            format!("the document at {url} is not a registration: {e}"),
                        )
                    });
                }
                Ok(Err(f)) => f,
                Err(_) => Failure::transient(
                    "timeout",
                    format!("{url} did not answer within {:?}", self.config.timeout),
                ),
            };
            if !failure.retry || attempt >= self.config.retries {
                return Err(failure);
            }
            let backoff = self.config.backoff.saturating_mul(1 << attempt.min(16));
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// One GET, reading at most `max_bytes`.
    async fn download(&self, client: &reqwest::Client, url: Url) -> Result<Vec<u8>, Failure> {
        let limit = self.config.max_bytes;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| request_failure(&url, &e))?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("{url} answered HTTP {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Failure::transient("http_status", message)
            } else {
                Failure::new("http_status", message)
            });
        }
        let too_large = || {
            Failure::new(
                "too_large",
                format!("the document at {url} is larger than the {limit}-byte limit"),
            )
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_failure(&url, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    store.record_fetches(done, now)?;
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

fn request_failure(url: &Url, e: &reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<Blocked>() {
            return Failure::new("blocked_address", blocked.to_string());
        }
        source = err.source();
    }
    if e.is_timeout() {
        Failure::transient("timeout", format!("{url} timed out"))
    } else {
        Failure::transient("unreachable", format!("{url} could not be reached: {e}"))
    }
}

/// The start of a URI, for messages (data URIs can be long).
fn preview(uri: &str) -> String {
    const MAX: usize = 60;
    match uri.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &uri[..cut]),
        None => format!("{uri:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow_private: bool) -> Fetcher {
        let config = FetchConfig {
            allow_private_addresses: allow_private,
            ..FetchConfig::default()
        };
        Fetcher::new(config, Url::parse("http://127.0.0.1:9/").unwrap()).unwrap()
    }

    fn failure(outcome: FetchOutcome) -> FetchError {
        match outcome {
            FetchOutcome::Failed(e) => e,
            FetchOutcome::Fetched(doc) => panic!("unexpectedly read {doc:?}"),
        }
    }

    #[test]
    fn public_addresses_are_told_apart() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn data_uris_parse_and_odd_uris_fail_with_a_kind() {
        let f = fetcher(false);
        let doc = Registration::from_data_uri(r#"data:application/json,{"name":"n"}"#).unwrap();
        match f.fetch(&doc.to_data_uri()).await {
            FetchOutcome::Fetched(read) => assert_eq!(read.name, "n"),
            FetchOutcome::Failed(e) => panic!("{e:?}"),
        }
        let cases = [
            ("data:application/json;base64,!!", "malformed"),
            ("ar://abc", "unsupported_uri"),
            ("no scheme at all", "unsupported_uri"),
            ("ipfs://", "malformed"),
            ("http://127.0.0.1:9/agent.json", "blocked_address"),
            ("http://[::1]:9/agent.json", "blocked_address"),
            ("http://localhost:9/agent.json", "blocked_address"),
        ];
        for (uri, kind) in cases {
            assert_eq!(failure(f.fetch(uri).await).kind, kind, "{uri}");
        }
    }

    #[test]
    fn ipfs_uris_go_through_the_gateway() {
        let f = fetcher(true);
        assert_eq!(
            f.gateway_url("ipfs://bafyabc/agent.json").unwrap().as_str(),
            "http://127.0.0.1:9/ipfs/bafyabc/agent.json"
        );
        assert_eq!(
            f.gateway_url("ipfs://ipfs/bafyabc").unwrap().as_str(),
            "http://127.0.0.1:9/ipfs/bafyabc"
        );
    }
}
