//! Forwarding to the upstream and streaming its answer back.
//!
//! Request headers are cleaned before they leave: hop-by-hop headers, the payment
//! itself (the upstream never sees a spendable authorization) and any payer identity
//! a client forged are dropped, in every spelling an upstream might read as the same
//! name (CGI- and nginx-based servers treat `_` as `-`), and the verified payer is set
//! by the gateway. The client's address is appended to `X-Forwarded-For`. The
//! answer's body is relayed chunk by chunk as the upstream produces it. When the
//! upstream cannot be reached, the buyer learns that and nothing of where it is: the
//! URL (a seller's private network, sometimes a key in a query) stays in the log.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use alloy::primitives::Address;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use reqwest::Url;

/// Set on the upstream request to the payer the facilitator verified.
pub const PAYER_HEADER: &str = "x-payment-payer";
/// obol's companion identity header, cleared so a client cannot forge it.
const VERIFIED_WALLET_HEADER: &str = "x-verified-wallet";
/// The chain of client addresses; the gateway appends the one it saw.
const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// Headers a client must never get to the upstream under any spelling: the payment
/// itself and the identities only the gateway may assert.
const NEVER_FORWARDED: [&str; 4] = [
    x402::header::PAYMENT_SIGNATURE,
    x402::header::X_PAYMENT,
    PAYER_HEADER,
    VERIFIED_WALLET_HEADER,
];

/// Headers the gateway writes or vouches for; a client's underscore spelling of one
/// (`X_Forwarded_For`) is dropped so an upstream that folds `_` into `-` cannot read
/// it in place of the gateway's.
const GATEWAY_OWNED: [&str; 3] = [
    FORWARDED_FOR_HEADER,
    "x-forwarded-host",
    "x-forwarded-prefix",
];

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Why the upstream gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No response headers before the route's deadline.
    #[error("the service did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused, reset, or an unusable answer. The text says what went
    /// wrong in general words only; the upstream's URL and the full error are logged.
    #[error("the service could not be reached: {0}")]
    Unreachable(String),
}

impl UpstreamError {
    /// 504 for a timeout, 502 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A header name as an upstream that folds `_` into `-` reads it.
fn folded(name: &HeaderName) -> String {
    name.as_str().replace('_', "-")
}

/// The headers the upstream receives.
pub fn upstream_headers(incoming: &HeaderMap, payer: Option<Address>, prefix: &str) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let folded = folded(name);
            NEVER_FORWARDED.contains(&folded.as_str())
                || (name.as_str().contains('_') && GATEWAY_OWNED.contains(&folded.as_str()))
        })
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    if let Some(host) = incoming.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Ok(prefix) = HeaderValue::from_str(prefix) {
        headers.insert(HeaderName::from_static("x-forwarded-prefix"), prefix);
    }
    if let Some(payer) = payer
        && let Ok(value) = HeaderValue::from_str(&payer.to_checksum(None))
    {
        headers.insert(HeaderName::from_static(PAYER_HEADER), value);
    }
    headers
}

/// Appends `client` to `X-Forwarded-For`: every value already there (several header
/// lines are joined in order), then `, ` and the address. An IPv4 client seen through
/// a dual-stack socket is written as plain IPv4.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut chain: Vec<u8> = Vec::new();
    for value in headers.get_all(FORWARDED_FOR_HEADER) {
        let value = value.as_bytes().trim_ascii();
        if value.is_empty() {
            continue;
        }
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(value);
    }
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(client.to_canonical().to_string().as_bytes());
    let name = HeaderName::from_static(FORWARDED_FOR_HEADER);
    match HeaderValue::from_bytes(&chain) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            headers.remove(&name);
            if let Ok(value) = HeaderValue::from_str(&client.to_canonical().to_string()) {
                headers.insert(name, value);
            }
        }
    }
}

/// Middleware: appends the peer's address to the request's `X-Forwarded-For` before
/// any handler sees it, so the proxied request carries it. The peer comes from
/// axum's [`ConnectInfo`], present when the router is served by [`crate::serve`];
/// without it (a router mounted elsewhere) the header is left as the client sent it.
pub async fn forwarded_for(mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(ip) = peer {
        append_forwarded_for(request.headers_mut(), ip);
    }
    next.run(request).await
}

/// The HTTP client used for upstreams: no redirects followed, no system proxy.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    x402::http::direct()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// Sends one request and waits for the response headers (not the body).
///
/// Failures are logged in full (URL included) and returned in general words, since
/// the error text reaches the buyer.
pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    let shown = url.to_string();
    let request = client.request(method, url).headers(headers).body(body);
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Err(_) => {
            tracing::warn!(upstream = %shown, ?timeout, "upstream did not answer in time");
            Err(UpstreamError::Timeout(timeout))
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = %shown, error = %x402::error_chain::flatten(&e), "upstream request failed");
            if e.is_timeout() {
                Err(UpstreamError::Timeout(timeout))
            } else {
                Err(UpstreamError::Unreachable(failure_in_general_words(&e)))
            }
        }
    }
}

/// What went wrong, without anything from the error's text: reqwest's message carries
/// the URL, and lower layers may name hosts (DNS, TLS certificates).
fn failure_in_general_words(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        source = s.source();
    }
    if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the connection failed before an answer arrived".to_string()
    }
}

/// Relays the upstream's status, headers and body (streamed) to the client, adding
/// `extra` headers; `keep` lives until the body has been sent (e.g. an in-flight slot).
pub fn relay<K: Send + 'static>(
    upstream: reqwest::Response,
    extra: HeaderMap,
    keep: K,
) -> Response {
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    strip_hop_by_hop(&mut headers);
    headers.extend(extra);
    let stream = upstream.bytes_stream().map(move |chunk| {
        let _held = &keep;
        chunk
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_and_forged_identity_never_reach_the_upstream() {
        let mut incoming = HeaderMap::new();
        incoming.insert("host", HeaderValue::from_static("seller.example"));
        incoming.insert("payment-signature", HeaderValue::from_static("abc"));
        incoming.insert("x-payment", HeaderValue::from_static("abc"));
        incoming.insert("x-payment-payer", HeaderValue::from_static("0xforged"));
        incoming.insert("x-verified-wallet", HeaderValue::from_static("0xforged"));
        incoming.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        incoming.insert("x-secret", HeaderValue::from_static("hop"));
        incoming.insert("content-type", HeaderValue::from_static("application/json"));
        let payer = Address::repeat_byte(0xab);
        let out = upstream_headers(&incoming, Some(payer), "/services/x");
        for gone in [
            "host",
            "payment-signature",
            "x-payment",
            "x-verified-wallet",
            "connection",
            "x-secret",
        ] {
            assert!(out.get(gone).is_none(), "{gone} leaked");
        }
        assert_eq!(out["x-payment-payer"], payer.to_checksum(None).as_str());
        assert_eq!(out["x-forwarded-host"], "seller.example");
        assert_eq!(out["x-forwarded-prefix"], "/services/x");
        assert_eq!(out["content-type"], "application/json");
        let free = upstream_headers(&incoming, None, "/services/x");
        assert!(free.get("x-payment-payer").is_none());
    }

    #[test]
    fn underscore_spellings_of_identity_and_payment_headers_are_dropped() {
        let mut incoming = HeaderMap::new();
        for name in [
            "X_Payment_Payer",
            "x_payment_payer",
            "x-payment_payer",
            "X_Verified_Wallet",
            "x_payment",
            "payment_signature",
            "X_Forwarded_For",
            "x_forwarded_host",
        ] {
            incoming.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("0xforged"),
            );
        }
        incoming.insert("x_request_id", HeaderValue::from_static("kept"));
        incoming.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        let payer = Address::repeat_byte(0xab);
        let out = upstream_headers(&incoming, Some(payer), "/services/x");
        let forged: Vec<_> = out
            .iter()
            .filter(|(_, v)| *v == "0xforged")
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(
            forged.is_empty(),
            "forged headers reached the upstream: {forged:?}"
        );
        assert_eq!(out["x-payment-payer"], payer.to_checksum(None).as_str());
        assert_eq!(out["x_request_id"], "kept", "other underscore headers pass");
        assert_eq!(out["x-forwarded-for"], "198.51.100.7");
    }

    #[test]
    fn forwarded_for_appends_the_client_to_the_chain() {
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let mut fresh = HeaderMap::new();
        append_forwarded_for(&mut fresh, client);
        assert_eq!(fresh["x-forwarded-for"], "203.0.113.9");

        let mut chained = HeaderMap::new();
        chained.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        chained.append(
            "x-forwarded-for",
            HeaderValue::from_static(" 10.0.0.1, 10.0.0.2 "),
        );
        chained.append("x-forwarded-for", HeaderValue::from_static(""));
        append_forwarded_for(&mut chained, client);
        assert_eq!(chained.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            chained["x-forwarded-for"],
            "198.51.100.7, 10.0.0.1, 10.0.0.2, 203.0.113.9"
        );

        let mut mapped = HeaderMap::new();
        append_forwarded_for(&mut mapped, "::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(mapped["x-forwarded-for"], "192.0.2.1");
    }
}
