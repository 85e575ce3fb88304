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

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// The error the guarded resolver and redirect policies raise, found again in
/// reqwest's error chain to report `blocked_address`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Blocked(String);

impl Blocked {
    /// `host` is (or resolves only to) a non-public address.
    fn address(host: impl std::fmt::Display) -> Self {
        Self(format!(
            "{host} is a loopback, private or link-local address; registration files must be on public hosts"
        ))
    }
}

/// Resolves names to public addresses only, except `trusted` (the operator's IPFS
/// gateway, which may well be a node on this machine).
struct PublicOnly {
    trusted: Option<String>,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let trusted = self
            .trusted
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| trusted || is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(
                    Box::new(Blocked::address(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a globally routable address (not loopback, private, link-local,
/// shared, benchmarking, reserved, documentation, multicast or unspecified), looking
/// through the IPv6 forms that carry an IPv4 address to the one they reach.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_documentation()
        || v4.is_multicast()
        // 0.0.0.0/8, "this network"
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT
        || (a == 100 && (64..128).contains(&b))
        // 198.18.0.0/15, benchmarking (RFC 2544)
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4, reserved
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // ::/96, IPv4-compatible (deprecated; also :: and ::1): never a public host.
        [0, 0, 0, 0, 0, 0, _, _] => false,
        // 64:ff9b::/96, well-known NAT64: it reaches the IPv4 address in its last 32
        // bits, so it is as public as that address (DNS64 networks need the public ones).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded(hi, lo)),
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): translated inside some network.
        [0x64, 0xff9b, 1, ..] => false,
        // 2002::/16, 6to4: the IPv4 address is in bits 16..48.
        [0x2002, hi, lo, ..] => is_public_v4(embedded(hi, lo)),
        _ => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// Follows at most `MAX_REDIRECTS` redirects, refusing literal non-public hosts (names
/// are checked by the `PublicOnly` resolver). `trusted` is the gateway's (host, port):
/// hops there are followed, but its host on another port is refused, since a trusted
/// loopback gateway must not become a way to reach other services on its machine.
fn public_redirects(trusted: Option<(Option<String>, Option<u16>)>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let url = attempt.url();
        if let Some((host, port)) = &trusted {
            let hop_host = url.host_str().map(str::to_ascii_lowercase);
            if hop_host == *host {
                if url.port_or_known_default() == *port {
                    return attempt.follow();
                }
                let refused = Blocked(format!(
                    "the IPFS gateway redirected to {url}, another port on its own host; only its own origin or public hosts are followed"
                ));
                return attempt.error(refused);
            }
        }
        match blocked_literal(url) {
            Some(host) => attempt.error(Blocked::address(host)),
            None => attempt.follow(),
        }
    })
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
    /// Builds the two HTTP clients: documents only from public addresses unless private
    /// ones are allowed; the gateway anywhere the operator put it, but a redirect away
    /// from it only to public addresses. Neither reads proxies from the environment.
    pub(crate) fn new(config: FetchConfig, ipfs_gateway: Url) -> Result<Self, reqwest::Error> {
        let user_agent = concat!("agora-indexer/", env!("CARGO_PKG_VERSION"));
        let builder = || {
            reqwest::Client::builder()
                .user_agent(user_agent)
                .connect_timeout(config.timeout)
                .no_proxy()
        };
        let (documents, gateway) = if config.allow_private_addresses {
            let policy = || reqwest::redirect::Policy::limited(MAX_REDIRECTS);
            (
                builder().redirect(policy()).build()?,
                builder().redirect(policy()).build()?,
            )
        } else {
            let gateway_host = ipfs_gateway.host_str().map(str::to_ascii_lowercase);
            let gateway_origin = (gateway_host.clone(), ipfs_gateway.port_or_known_default());
            (
                builder()
                    .dns_resolver(Arc::new(PublicOnly { trusted: None }))
                    .redirect(public_redirects(None))
                    .build()?,
                builder()
                    .dns_resolver(Arc::new(PublicOnly {
                        trusted: gateway_host,
                    }))
                    .redirect(public_redirects(Some(gateway_origin)))
                    .build()?,
            )
        };
        Ok(Self {
            documents,
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

    /// `ipfs://<cid>/<path>` (or the older `ipfs://ipfs/<cid>`) on the gateway, once
    /// the CID is a real CID and the path cannot climb out of it.
    fn gateway_url(&self, uri: &str) -> Result<Url, Failure> {
        let rest = uri.get("ipfs://".len()..).unwrap_or_default();
        let rest = rest.strip_prefix("ipfs/").unwrap_or(rest);
        if rest.is_empty() {
            return Err(Failure::new(
                "malformed",
                format!("{} names no IPFS content", preview(uri)),
            ));
        }
        let (cid, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        cid::check(cid).map_err(|why| {
            Failure::new(
                "malformed",
                format!(
                    "{} does not name an IPFS CID ({why}); use ipfs://<CID>/<path> with a CIDv0 (Qm..., 46 characters) or a CIDv1 such as bafy...",
                    preview(uri)
                ),
            )
        })?;
        check_ipfs_path(path).map_err(|why| {
            Failure::new(
                "malformed",
                format!(
                    "{} has an unusable path after the CID ({why}); use plain names such as ipfs://<CID>/agent.json",
                    preview(uri)
                ),
            )
        })?;
        self.ipfs_gateway
            .join(&format!("ipfs/{rest}"))
            .map_err(|e| {
                Failure::new(
                    "malformed",
                    format!("{} cannot be put on the gateway: {e}", preview(uri)),
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

/// Checks the path after an `ipfs://` CID: URL path characters only (no `?`, `#`,
/// backslash or whitespace), percent escapes that do not hide a dot or a slash, and no
/// `.` or `..` segment, so the gateway URL stays under `/ipfs/<cid>/`.
fn check_ipfs_path(path: &str) -> Result<(), String> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escaped = path
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| "a % that does not start a %XX escape".to_string())?;
            if matches!(escaped, b'.' | b'/' | b'\\') || escaped.is_ascii_control() {
                return Err(format!("the escape %{escaped:02X}"));
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)) {
            return Err(match b {
                b'?' | b'#' => format!(
                    "a {:?}: query strings and fragments are not content",
                    b as char
                ),
                _ if b.is_ascii_whitespace() => "whitespace".to_string(),
                _ => format!(
                    "the character {:?}",
                    path.get(i..).and_then(|p| p.chars().next()).unwrap_or('?')
                ),
            });
        }
        i += 1;
    }
    if path
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err("a . or .. segment".to_string());
    }
    Ok(())
}

/// CIDs as the IPFS specs define them (CIDv0: a base58btc sha2-256 multihash; CIDv1: a
/// multibase string of version, codec and multihash), checked structurally so a
/// registrant's `ipfs://` URI cannot smuggle anything else onto the gateway URL.
mod cid {
    /// Longest CID string accepted (a sha2-512 CIDv1 in base16 is about 140).
    const MAX_LEN: usize = 256;
    const BASE58BTC: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    const BASE16: &[u8] = b"0123456789abcdef";

    /// Whether `text` is a CID; the error says what is wrong with it.
    pub(super) fn check(text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err("it is empty".into());
        }
        if text.len() > MAX_LEN {
            return Err(format!("it is longer than {MAX_LEN} characters"));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(format!("{c:?} is not a CID character"));
        }
        if text.starts_with("Qm") {
            if text.len() != 46 {
                return Err(format!(
                    "a CIDv0 has 46 characters, this has {}",
                    text.len()
                ));
            }
            let bytes = radix(text, BASE58BTC)?;
            return match bytes.as_slice() {
                [0x12, 0x20, digest @ ..] if digest.len() == 32 => Ok(()),
                _ => Err("a CIDv0 is a base58btc sha2-256 multihash".into()),
            };
        }
        let mut chars = text.chars();
        let prefix = chars.next().unwrap_or_default();
        let body = chars.as_str();
        let bytes = match prefix {
            'b' => bits(body, BASE32, 5)?,
            'B' => bits(&body.to_ascii_lowercase(), BASE32, 5).and_then(|b| upper(body, b))?,
            'f' => bits(body, BASE16, 4)?,
            'F' => bits(&body.to_ascii_lowercase(), BASE16, 4).and_then(|b| upper(body, b))?,
            'k' => radix(body, BASE36)?,
            'K' => radix(&body.to_ascii_lowercase(), BASE36).and_then(|b| upper(body, b))?,
            'z' => radix(body, BASE58BTC)?,
            other => {
                return Err(format!(
                    "{other:?} is not a multibase prefix agora reads (b, B, f, F, k, K, z)"
                ));
            }
        };
        cid_v1(&bytes)
    }

    /// Refuses lower-case letters in an upper-case multibase body.
    fn upper(body: &str, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        if body.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err("an upper-case multibase prefix with lower-case letters".into());
        }
        Ok(bytes)
    }

    /// `<version=1><codec><multihash code><digest length><digest>`, varints throughout.
    fn cid_v1(bytes: &[u8]) -> Result<(), String> {
        let mut rest = bytes;
        let version = varint(&mut rest)?;
        if version != 1 {
            return Err(format!(
                "CID version {version}; a multibase CID is version 1"
            ));
        }
        let _codec = varint(&mut rest)?;
        let _hash = varint(&mut rest)?;
        let length = varint(&mut rest)?;
        if u64::try_from(rest.len()).ok() != Some(length) {
            return Err(format!(
                "its multihash says {length} digest bytes but {} follow",
                rest.len()
            ));
        }
        Ok(())
    }

    /// One unsigned LEB128 varint of at most 9 bytes, as multiformats allow.
    fn varint(rest: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..9 {
            let Some((&byte, tail)) = rest.split_first() else {
                return Err("it ends inside its header".into());
            };
            *rest = tail;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 9 bytes".into())
    }

    /// Decodes an RFC 4648 bit-group encoding without padding (base32, base16).
    fn bits(body: &str, alphabet: &[u8], width: u32) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(body.len() * width as usize / 8);
        let (mut acc, mut held) = (0u32, 0u32);
        for c in body.bytes() {
            let digit = position(alphabet, c)?;
            acc = (acc << width) | digit;
            held += width;
            if held >= 8 {
                held -= 8;
                out.push((acc >> held) as u8);
                acc &= (1 << held) - 1;
            }
        }
        if held >= width || acc != 0 {
            return Err("its last character carries stray bits".into());
        }
        Ok(out)
    }

    /// Decodes a positional (big number) encoding (base58btc, base36).
    fn radix(body: &str, alphabet: &[u8]) -> Result<Vec<u8>, String> {
        let base = alphabet.len() as u32;
        let zero = alphabet.first().copied().unwrap_or_default();
        let leading = body.bytes().take_while(|&c| c == zero).count();
        let mut number: Vec<u8> = Vec::new(); // little-endian base 256
        for c in body.bytes() {
            let mut carry = position(alphabet, c)?;
            for byte in number.iter_mut() {
                carry += u32::from(*byte) * base;
                *byte = (carry & 0xff) as u8;
                carry >>= 8;
            }
            while carry > 0 {
                number.push((carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        let mut out = vec![0u8; leading];
        out.extend(number.iter().rev());
        Ok(out)
    }

    fn position(alphabet: &[u8], c: u8) -> Result<u32, String> {
        alphabet
            .iter()
            .position(|&a| a == c)
            .map(|p| p as u32)
            .ok_or_else(|| format!("{:?} is not a character of its base", char::from(c)))
    }
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
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};

    use super::*;

    /// A CIDv1 (raw, sha2-256) and a CIDv0 of the same digest.
    const CID_V1: &str = "bafkreienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds24";
    const CID_V0: &str = "QmXrPn9Qua3vJxYhKLrKDAWz8bYEh6773NVRq95hTTTDrW";

    fn fetcher(allow_private: bool) -> Fetcher {
        fetcher_on(allow_private, "http://127.0.0.1:9/")
    }

    fn fetcher_on(allow_private: bool, gateway: &str) -> Fetcher {
        let config = FetchConfig {
            allow_private_addresses: allow_private,
            timeout: Duration::from_secs(3),
            retries: 0,
            ..FetchConfig::default()
        };
        Fetcher::new(config, Url::parse(gateway).unwrap()).unwrap()
    }

    fn failure(outcome: FetchOutcome) -> FetchError {
        match outcome {
            FetchOutcome::Failed(e) => e,
            FetchOutcome::Fetched(doc) => panic!("unexpectedly read {doc:?}"),
        }
    }

    fn fetched(outcome: FetchOutcome) -> Registration {
        match outcome {
            FetchOutcome::Fetched(doc) => *doc,
            FetchOutcome::Failed(e) => panic!("not read: {e:?}"),
        }
    }

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    fn document(name: &str) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"name":"{name}"}}"#),
        )
            .into_response()
    }

    fn redirect(to: String) -> Response {
        (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
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
            "198.18.0.1",
            "198.19.255.254",
            "240.0.0.1",
            "255.255.255.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            // IPv4-compatible ::/96, whatever it embeds
            "::8.8.8.8",
            "::a9fe:a9fe",
            // well-known NAT64 reaching a private IPv4
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::198.18.0.1",
            // local-use NAT64, whatever it embeds
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1:ffff::1",
            // 6to4 of a private IPv4
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "2002:f000:1::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "100.128.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            // NAT64 and 6to4 of a public IPv4 (DNS64 networks resolve to these)
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
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
            ("http://[64:ff9b::7f00:1]:9/agent.json", "blocked_address"),
            ("http://198.18.0.1:9/agent.json", "blocked_address"),
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
            f.gateway_url(&format!("ipfs://{CID_V1}/agent.json"))
                .unwrap()
                .as_str(),
            format!("http://127.0.0.1:9/ipfs/{CID_V1}/agent.json")
        );
        assert_eq!(
            f.gateway_url(&format!("ipfs://ipfs/{CID_V0}"))
                .unwrap()
                .as_str(),
            format!("http://127.0.0.1:9/ipfs/{CID_V0}")
        );
    }

    #[test]
    fn cids_are_read_as_the_specs_define_them() {
        for good in [
            CID_V1,
            CID_V0,
            // dag-pb CIDv1 and real-world ones from the IPFS docs
            "bafybeienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds24",
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            // the same CIDv1 in the other multibases read
            "BAFKREIENK64YY45SF4D7IVLPDAFKC7PTWVCGBUMUR5SDB5C5FW5MONDS24",
            "f017012208d57b98c73b22f07f4556f180aa17df3b54460d1948f6430f45d2dbac73472d7",
            "zdj7Wewe9aUm3XXBfrd45ow5YMYkojgQdXEugtxVwUNGu282S",
            "k51qzi5uqu5djpes6xime7j8ruh32dnezocsyck35be5skr4qwk8f0o9fjsjx3",
        ] {
            assert_eq!(cid::check(good), Ok(()), "{good}");
        }
        let long = format!("b{}", "a".repeat(300));
        for bad in [
            "",
            "bafyagent",
            "bafyabc",
            "Qm",
            &CID_V0[..45],
            // 0, O, I and l are not base58btc
            "QmXrPn9Qua3vJxYhKLrKDAWz8bYEh6773NVRq95hTTTDr0",
            // one character short, one extra: the digest length no longer matches
            &CID_V1[..CID_V1.len() - 1],
            &format!("{CID_V1}a"),
            // upper-case letters in a base32-lower CID
            "bafkreienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds2A",
            "BAFKREIENK64YY45SF4D7IVLPDAFKC7PTWVCGBUMUR5SDB5C5FW5MONDs24",
            // version 2 and an unknown multibase
            "bciqabcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx",
            "mAXASIA",
            "..",
            "localhost:22",
            "bafk reienk",
            long.as_str(),
        ] {
            let err = cid::check(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[tokio::test]
    async fn bad_ipfs_uris_never_reach_the_gateway() {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = Arc::clone(&seen);
        let gateway = serve(Router::new().fallback(move |uri: Uri| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(uri.to_string());
                document("via the gateway")
            }
        }))
        .await;
        let f = fetcher_on(false, &format!("http://{gateway}/"));
        let bad = [
            "ipfs://bafyagent/agent.json".to_string(),
            format!("ipfs://{CID_V1}/../../admin"),
            format!("ipfs://{CID_V1}/a/../../../admin"),
            format!("ipfs://{CID_V1}/./agent.json"),
            format!("ipfs://{CID_V1}/a/%2e%2e/%2E%2E/admin"),
            format!("ipfs://{CID_V1}/a%2fb"),
            format!("ipfs://{CID_V1}/a%5c..%5cb"),
            format!("ipfs://{CID_V1}/a%zz"),
            format!("ipfs://{CID_V1}?x=1"),
            format!("ipfs://{CID_V1}/agent.json?x=1"),
            format!("ipfs://{CID_V1}#top"),
            format!("ipfs://{CID_V1}/agent.json#top"),
            format!("ipfs://{CID_V1} /agent.json"),
            format!("ipfs://{CID_V1}/a b.json"),
            format!("ipfs://{CID_V1}/a\tb.json"),
            format!("ipfs://{CID_V1}\\..\\admin"),
            format!("ipfs://{CID_V1}/a\\b"),
            format!("ipfs://../{CID_V1}"),
            format!("ipfs://ipfs/../{CID_V1}"),
            format!("ipfs://{CID_V1}/é.json"),
            "ipfs://localhost:22/x".to_string(),
            "ipfs://127.0.0.1/x".to_string(),
        ];
        for uri in &bad {
            let e = failure(f.fetch(uri).await);
            assert_eq!(e.kind, "malformed", "{uri}: {e:?}");
            assert!(e.message.contains("ipfs://"), "{uri}: {e:?}");
        }
        assert_eq!(*seen.lock().unwrap(), Vec::<String>::new());

        for (uri, path) in [
            (
                format!("ipfs://{CID_V1}/agent.json"),
                format!("/ipfs/{CID_V1}/agent.json"),
            ),
            (
                format!("ipfs://ipfs/{CID_V0}/a/b%20c.json"),
                format!("/ipfs/{CID_V0}/a/b%20c.json"),
            ),
            (format!("ipfs://{CID_V0}"), format!("/ipfs/{CID_V0}")),
        ] {
            assert_eq!(fetched(f.fetch(&uri).await).name, "via the gateway");
            assert_eq!(seen.lock().unwrap().pop(), Some(path), "{uri}");
        }
    }

    #[tokio::test]
    async fn the_gateway_is_followed_only_to_itself_or_public_hosts() {
        let private_hits = Arc::new(AtomicUsize::new(0));
        let hits = Arc::clone(&private_hits);
        let private = serve(Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { document("a private service") }
        }))
        .await;
        let port = private.port();
        let gateway = serve(Router::new().fallback(move |uri: Uri| async move {
            let path = uri.path();
            match path.rsplit('/').next().unwrap_or_default() {
                "moved.json" => redirect(format!("/ipfs/{CID_V1}/agent.json")),
                "private.json" => redirect(format!("http://127.0.0.1:{port}/agent.json")),
                "mapped.json" => redirect(format!("http://[::ffff:7f00:1]:{port}/agent.json")),
                "nat64.json" => redirect(format!("http://[64:ff9b::7f00:1]:{port}/agent.json")),
                "named.json" => redirect(format!("http://localhost:{port}/agent.json")),
                "agent.json" => document("via the gateway"),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }))
        .await;
        // The gateway by name, as an operator running a local IPFS node would write it,
        // and by address. A hop to `localhost` on another port is refused by the first
        // as another port of its own host, by the second as a name that resolves to a
        // private address.
        for gateway in [
            format!("http://localhost:{}/", gateway.port()),
            format!("http://{gateway}/"),
        ] {
            let f = fetcher_on(false, &gateway);
            let read = fetched(f.fetch(&format!("ipfs://{CID_V1}/moved.json")).await);
            assert_eq!(read.name, "via the gateway");
            for target in ["private", "mapped", "nat64", "named"] {
                let e = failure(f.fetch(&format!("ipfs://{CID_V1}/{target}.json")).await);
                assert_eq!(e.kind, "blocked_address", "{gateway} {target}: {e:?}");
            }
        }
        assert_eq!(private_hits.load(Ordering::SeqCst), 0);

        // With private addresses allowed (development), redirects are followed.
        let open = fetcher_on(true, &format!("http://{gateway}/"));
        let read = fetched(open.fetch(&format!("ipfs://{CID_V1}/private.json")).await);
        assert_eq!(read.name, "a private service");
        assert_eq!(private_hits.load(Ordering::SeqCst), 1);
    }

    /// The proxy variables reqwest would read, pointed at a closed loopback port.
    const PROXY_VARIABLES: [&str; 6] = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];

    /// Runs `fetches_directly_despite_proxy_variables` in a child test process with the
    /// proxy variables set, so no other test in this process sees them.
    #[test]
    fn proxies_from_the_environment_are_ignored() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let module = module_path!().split_once("::").unwrap().1;
        let test = format!("{module}::fetches_directly_despite_proxy_variables");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", &test, "--ignored", "--test-threads=1"]);
        for var in PROXY_VARIABLES {
            child.env(var, format!("http://{dead}"));
        }
        child.env_remove("NO_PROXY").env_remove("no_proxy");
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    }

    #[tokio::test]
    #[ignore = "run by proxies_from_the_environment_are_ignored with proxy variables set"]
    async fn fetches_directly_despite_proxy_variables() {
        for var in PROXY_VARIABLES {
            let value = std::env::var(var).unwrap_or_default();
            assert!(
                value.starts_with("http://127.0.0.1:"),
                "{var} is not set; run proxies_from_the_environment_are_ignored instead"
            );
        }
        let docs = serve(Router::new().fallback(|| async { document("direct") })).await;
        let gateway = format!("http://{docs}/");
        let open = fetcher_on(true, &gateway);
        let read = fetched(open.fetch(&format!("http://{docs}/agent.json")).await);
        assert_eq!(read.name, "direct");
        let read = fetched(open.fetch(&format!("ipfs://{CID_V1}")).await);
        assert_eq!(read.name, "direct");
        let guarded = fetcher_on(false, &gateway);
        let read = fetched(guarded.fetch(&format!("ipfs://{CID_V1}")).await);
        assert_eq!(read.name, "direct");
    }
}
