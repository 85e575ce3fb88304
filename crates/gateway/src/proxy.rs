//! Forwarding to the upstream and streaming its answer back.
//!
//! Request headers are cleaned before they leave: hop-by-hop headers, the payment
//! itself (the upstream never sees a spendable authorization) and any payer identity
//! a client forged are dropped, and the verified payer is set by the gateway. The
//! answer's body is relayed chunk by chunk as the upstream produces it.

use std::time::Duration;

use alloy::primitives::Address;
use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use reqwest::Url;

/// Set on the upstream request to the payer the facilitator verified.
pub const PAYER_HEADER: &str = "x-payment-payer";
/// obol's companion identity header, cleared so a client cannot forge it.
const VERIFIED_WALLET_HEADER: &str = "x-verified-wallet";

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
    /// Connection refused, reset, or an unusable answer.
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

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The headers the upstream receives.
pub fn upstream_headers(incoming: &HeaderMap, payer: Option<Address>, prefix: &str) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    for name in [
        header::HOST.as_str(),
        header::CONTENT_LENGTH.as_str(),
        x402::header::PAYMENT_SIGNATURE,
        x402::header::X_PAYMENT,
        PAYER_HEADER,
        VERIFIED_WALLET_HEADER,
    ] {
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

/// The HTTP client used for upstreams: no redirects followed, no system proxy.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// Sends one request and waits for the response headers (not the body).
pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    let request = client.request(method, url).headers(headers).body(body);
    match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) => Err(UpstreamError::Unreachable(error_chain(&e))),
        Ok(Ok(response)) => Ok(response),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
}
