//! A client of any remote x402 facilitator over its standard HTTP API.
//!
//! Sellers who do not hold a gas key (or who prefer a hosted facilitator) point agora
//! at `POST /verify`, `POST /settle` and `GET /supported` of a facilitator URL. Real
//! facilitators disagree on status codes: the TypeScript one answers an invalid payment
//! with 200 and `isValid:false`, x402-rs with 400 (or 412) and the same body. Both are
//! answers, not failures, so this client reads an x402 body on 2xx and on
//! 400/402/412/422; everything else becomes a [`FacilitatorError`] that names the URL,
//! so an operator reading a 503 in the gateway log knows which facilitator to look at.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::facilitator::{BoxFuture, Facilitator, FacilitatorError};
use crate::wire::{FacilitatorRequest, SettleResponse, Supported, VerifyResponse};

/// How long a facilitator may take to answer a verify (or `/supported`, `/release`)
/// before the gateway gives up on it: these are reads, a slow one is simply refused.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a settle may take. A settle waits for the transaction's receipt (agora's
/// facilitator waits up to 30 s), and giving up earlier turns a settlement that is
/// still going through into an unknown outcome, so this is the receipt wait plus a
/// margin.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(45);

/// How long a `/supported` answer is reused: it changes only when the facilitator is
/// reconfigured, and a gateway may consult it on every request.
pub const DEFAULT_SUPPORTED_TTL: Duration = Duration::from_secs(5 * 60);

/// Statuses whose body is read as an x402 answer when it carries `isValid`/`success`
/// (besides 2xx): the ones real facilitators use for a refused payment.
const ANSWER_STATUSES: [u16; 4] = [400, 402, 412, 422];

/// How much of an unusable body is quoted in an error.
const BODY_QUOTE_CHARS: usize = 300;

/// A facilitator URL that cannot be used, caught when the client is built rather than
/// on the first payment.
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorUrlError {
    /// Not a URL at all.
    #[error(
        "facilitator URL {url:?} is not a URL ({reason}); give one like https://x402.org/facilitator"
    )]
    Invalid {
        /// What was given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Neither http nor https.
    #[error(
        "facilitator URL {url:?} uses scheme {scheme:?}; use https:// (or http:// on loopback)"
    )]
    Scheme {
        /// What was given.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// Plain http to another machine would expose payments to anyone on the path.
    #[error(
        "facilitator URL {url:?} uses plain http to {host}, which is neither loopback nor a Kubernetes Service name; use {suggested}"
    )]
    InsecureHost {
        /// What was given.
        url: String,
        /// The non-loopback host.
        host: String,
        /// The same URL with https.
        suggested: String,
    },
    /// A query or fragment cannot be combined with the `/verify`, `/settle` paths.
    #[error(
        "facilitator URL {url:?} has a query or fragment; give only the base URL (scheme, host, port, path)"
    )]
    QueryOrFragment {
        /// What was given.
        url: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build an HTTP client for facilitator {url}: {reason}")]
    Client {
        /// The facilitator URL.
        url: String,
        /// reqwest's message.
        reason: String,
    },
}

/// The remote-facilitator implementation of [`Facilitator`].
///
/// Cheap to share behind an `Arc`; requests run concurrently over one connection pool.
#[derive(Debug)]
pub struct HttpFacilitator {
    /// Base URL without a trailing slash, e.g. `https://x402.org/facilitator`.
    base: String,
    client: reqwest::Client,
    timeout: Duration,
    settle_timeout: Duration,
    supported_ttl: Duration,
    supported_cache: Mutex<Option<(Instant, Supported)>>,
    /// `Authorization: Bearer` value sent with every request, for a facilitator that
    /// requires its clients' key (`agora facilitator --api-key-file`).
    bearer: Option<BearerKey>,
}

/// A facilitator API key; never printed (its `Debug` shows no part of it).
#[derive(Clone)]
struct BearerKey(reqwest::header::HeaderValue);

impl std::fmt::Debug for BearerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerKey(..)")
    }
}

/// A facilitator API key that cannot be sent as an HTTP header.
#[derive(Debug, thiserror::Error)]
#[error(
    "the facilitator API key holds characters an HTTP header cannot carry (control characters or non-ASCII); write the key on one line of printable ASCII"
)]
pub struct BadBearerKey;

impl HttpFacilitator {
    /// A client for the facilitator at `base_url` (the part before `/verify`).
    ///
    /// Only `https://` is accepted, except `http://` to a loopback host (a facilitator
    /// on the same machine) or to a Kubernetes Service name (`<svc>.<ns>.svc[.<domain>]`,
    /// traffic inside the cluster that the facilitator's NetworkPolicy fences), because
    /// payment authorizations are bearer instruments until settled. Trailing slashes
    /// are ignored.
    pub fn new(base_url: &str) -> Result<Self, FacilitatorUrlError> {
        let url = Url::parse(base_url.trim()).map_err(|e| FacilitatorUrlError::Invalid {
            url: base_url.to_string(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) || is_cluster_service(&url) => {}
            "http" => {
                let mut suggested = url.clone();
                // Switching http -> https on a parsed http URL cannot fail.
                let _ = suggested.set_scheme("https");
                return Err(FacilitatorUrlError::InsecureHost {
                    url: base_url.to_string(),
                    host: url.host_str().unwrap_or_default().to_string(),
                    suggested: suggested.as_str().trim_end_matches('/').to_string(),
                });
            }
            other => {
                return Err(FacilitatorUrlError::Scheme {
                    url: base_url.to_string(),
                    scheme: other.to_string(),
                });
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(FacilitatorUrlError::QueryOrFragment {
                url: base_url.to_string(),
            });
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let client = crate::http::public()
            .user_agent(concat!("agora-x402/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FacilitatorUrlError::Client {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base,
            client,
            timeout: DEFAULT_TIMEOUT,
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            supported_ttl: DEFAULT_SUPPORTED_TTL,
            supported_cache: Mutex::new(None),
            bearer: None,
        })
    }

    /// Sends `Authorization: Bearer <key>` with every request (surrounding whitespace,
    /// such as a key file's newline, is dropped): the facilitator then knows the
    /// request comes from one of its own resource servers.
    pub fn with_bearer_key(mut self, key: &str) -> Result<Self, BadBearerKey> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| BadBearerKey)?;
        value.set_sensitive(true);
        self.bearer = Some(BearerKey(value));
        Ok(self)
    }

    /// Sets how long a verify, `/supported` or `/release` may take in total (connect,
    /// send, read the body).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long a settle may take; keep it above the facilitator's own receipt
    /// wait, or settlements that are merely slow come back as unknown outcomes.
    pub fn with_settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        self
    }

    /// The settle limit, so a gateway can give the whole call at least this long.
    pub fn settle_timeout(&self) -> Duration {
        self.settle_timeout
    }

    /// Sets how long a `/supported` answer is reused; zero asks every time.
    pub fn with_supported_ttl(mut self, ttl: Duration) -> Self {
        self.supported_ttl = ttl;
        self
    }

    /// The normalized base URL (no trailing slash), for logs and error messages.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Sends one request and returns the status and the whole body, mapping transport
    /// failures to errors that name `endpoint`.
    async fn exchange(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&FacilitatorRequest>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), FacilitatorError> {
        let mut request = self
            .client
            .request(method, endpoint)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(BearerKey(value)) = &self.bearer {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        if let Some(body) = body {
            let json = serde_json::to_vec(body).map_err(|e| {
                FacilitatorError::Internal(format!(
                    "cannot serialize the request for {endpoint}: {e}"
                ))
            })?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(endpoint, timeout, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(endpoint, timeout, &e))?;
        Ok((status, bytes.to_vec()))
    }

    /// POSTs `request` and reads the answer, which must carry `key` (`isValid` or
    /// `success`) to count as one.
    async fn post_answer<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        request: &FacilitatorRequest,
        timeout: Duration,
    ) -> Result<T, FacilitatorError> {
        let endpoint = self.endpoint(path);
        let (status, body) = self
            .exchange(Method::POST, &endpoint, Some(request), timeout)
            .await?;
        let bad = |why: Option<String>| bad_response(&endpoint, status, &body, why);
        if !(status.is_success() || ANSWER_STATUSES.contains(&status.as_u16())) {
            return Err(bad(None));
        }
        let mut value: Value = serde_json::from_slice(&body).map_err(|_| bad(None))?;
        let Some(object) = value.as_object_mut() else {
            return Err(bad(None));
        };
        if !object.contains_key(key) {
            return Err(bad(None));
        }
        // x402-rs writes `payer: ""` on refusals; that means "unknown", not an address.
        if object.get("payer").and_then(Value::as_str) == Some("") {
            object.remove("payer");
        }
        serde_json::from_value(value).map_err(|e| bad(Some(e.to_string())))
    }
}

impl Facilitator for HttpFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(self.post_answer("verify", "isValid", request, self.timeout))
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(self.post_answer("settle", "success", request, self.settle_timeout))
    }

    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>> {
        Box::pin(async move {
            if let Some(hit) = self.cached_supported() {
                return Ok(hit);
            }
            let endpoint = self.endpoint("supported");
            let (status, body) = self
                .exchange(Method::GET, &endpoint, None, self.timeout)
                .await?;
            if !status.is_success() {
                return Err(bad_response(&endpoint, status, &body, None));
            }
            let supported: Supported = serde_json::from_slice(&body)
                .map_err(|e| bad_response(&endpoint, status, &body, Some(e.to_string())))?;
            if let Ok(mut cache) = self.supported_cache.lock() {
                *cache = Some((Instant::now(), supported.clone()));
            }
            Ok(supported)
        })
    }

    /// `POST /release`, agora's extension: frees the facilitator's reservation so the
    /// buyer can retry at once. Facilitators without it (404, 405) hold nothing that
    /// needs freeing, so their refusal is not an error.
    fn release<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            let endpoint = self.endpoint("release");
            let (status, body) = self
                .exchange(Method::POST, &endpoint, Some(request), self.timeout)
                .await?;
            if status.is_success() || matches!(status.as_u16(), 404 | 405) {
                Ok(())
            } else {
                Err(bad_response(&endpoint, status, &body, None))
            }
        })
    }
}

impl HttpFacilitator {
    fn cached_supported(&self) -> Option<Supported> {
        let cache = self.supported_cache.lock().ok()?;
        let (at, supported) = cache.as_ref()?;
        (at.elapsed() < self.supported_ttl).then(|| supported.clone())
    }
}

/// Whether the URL's host is this machine, where plain http exposes nothing.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether `url` names a Service inside a Kubernetes cluster (`<svc>.<ns>.svc`, then
/// optionally the cluster domain): the manifests reach the facilitator that way, and
/// only pods its NetworkPolicy admits can connect.
fn is_cluster_service(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 3 && labels[2] == "svc" && labels[..2].iter().all(|l| !l.is_empty())
}

/// A [`FacilitatorError::BadResponse`] quoting the start of the body.
fn bad_response(
    endpoint: &str,
    status: StatusCode,
    body: &[u8],
    why: Option<String>,
) -> FacilitatorError {
    let text = String::from_utf8_lossy(body);
    let mut quote: String = text.chars().take(BODY_QUOTE_CHARS).collect();
    if text.chars().count() > BODY_QUOTE_CHARS {
        quote.push('…');
    }
    if quote.trim().is_empty() {
        quote = "(empty body)".to_string();
    }
    if let Some(why) = why {
        quote = format!("{quote} ({why})");
    }
    FacilitatorError::BadResponse {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        body: quote,
    }
}

/// A transport failure named after `endpoint`; a timeout says the limit it hit.
fn transport_error(endpoint: &str, timeout: Duration, e: &reqwest::Error) -> FacilitatorError {
    if e.is_timeout() {
        FacilitatorError::Timeout {
            endpoint: endpoint.to_string(),
            // Round up so a sub-second limit never reads as "within 0s".
            seconds: timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0),
        }
    } else {
        FacilitatorError::Unreachable {
            endpoint: endpoint.to_string(),
            message: crate::error_chain::flatten(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_and_loopback_http_and_strips_trailing_slashes() {
        let ok = [
            (
                "https://x402.org/facilitator/",
                "https://x402.org/facilitator",
            ),
            ("https://x402.org", "https://x402.org"),
            ("http://127.0.0.1:4020//", "http://127.0.0.1:4020"),
            ("http://localhost:4020/f", "http://localhost:4020/f"),
            ("http://[::1]:4020/", "http://[::1]:4020"),
            ("http://127.8.9.10/", "http://127.8.9.10"),
            (
                "http://agora-facilitator.agora.svc.cluster.local:4020",
                "http://agora-facilitator.agora.svc.cluster.local:4020",
            ),
            (
                "http://facilitator.agora.svc:4020/",
                "http://facilitator.agora.svc:4020",
            ),
        ];
        for (given, base) in ok {
            let f = HttpFacilitator::new(given).unwrap();
            assert_eq!(f.base_url(), base, "{given}");
            assert_eq!(f.endpoint("verify"), format!("{base}/verify"));
        }
    }

    #[test]
    fn the_bearer_key_is_never_printed_and_must_fit_a_header() {
        let f = HttpFacilitator::new("http://127.0.0.1:4020")
            .unwrap()
            .with_bearer_key("s3cret-key-0123456789\n")
            .unwrap();
        assert!(!format!("{f:?}").contains("s3cret"), "{f:?}");
        let bad = HttpFacilitator::new("http://127.0.0.1:4020")
            .unwrap()
            .with_bearer_key("two\nlines");
        assert!(bad.unwrap_err().to_string().contains("one line"));
    }

    #[test]
    fn refuses_unusable_urls_with_what_to_type() {
        let err = HttpFacilitator::new("http://facilitator.example.com/x402/").unwrap_err();
        assert!(matches!(err, FacilitatorUrlError::InsecureHost { .. }));
        assert!(
            err.to_string()
                .contains("use https://facilitator.example.com/x402"),
            "{err}"
        );
        let err = HttpFacilitator::new("http://10.0.0.1:4020").unwrap_err();
        assert!(err.to_string().contains("neither loopback"), "{err}");
        for outside in ["http://svc.example.com", "http://a.svc.example.com"] {
            let err = HttpFacilitator::new(outside).unwrap_err();
            assert!(
                matches!(err, FacilitatorUrlError::InsecureHost { .. }),
                "{outside}"
            );
        }
        let err = HttpFacilitator::new("ftp://x402.org").unwrap_err();
        assert!(matches!(err, FacilitatorUrlError::Scheme { .. }), "{err}");
        let err = HttpFacilitator::new("x402.org/facilitator").unwrap_err();
        assert!(matches!(err, FacilitatorUrlError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("https://"), "{err}");
        let err = HttpFacilitator::new("https://x402.org/f?key=1").unwrap_err();
        assert!(
            matches!(err, FacilitatorUrlError::QueryOrFragment { .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_response_quotes_a_bounded_body() {
        let long = "x".repeat(1000);
        let FacilitatorError::BadResponse { body, status, .. } = bad_response(
            "http://127.0.0.1/verify",
            StatusCode::BAD_GATEWAY,
            long.as_bytes(),
            None,
        ) else {
            panic!("wrong variant");
        };
        assert_eq!(status, 502);
        assert_eq!(body.chars().count(), BODY_QUOTE_CHARS + 1);
        let FacilitatorError::BadResponse { body, .. } =
            bad_response("e", StatusCode::BAD_GATEWAY, b"", None)
        else {
            panic!("wrong variant");
        };
        assert_eq!(body, "(empty body)");
    }
}
