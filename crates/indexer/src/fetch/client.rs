//! The two HTTP clients (documents and the IPFS gateway) and downloading with a size
//! and time limit and a few retries with backoff.

use std::sync::Arc;

use erc8004::Registration;
use reqwest::Url;
use x402::error_chain::causes;

use super::addresses::{Blocked, PublicOnly, public_redirects};
use super::{Failure, Fetcher};
use crate::config::FetchConfig;

/// Redirects followed per document.
pub(super) const MAX_REDIRECTS: usize = 5;

impl Fetcher {
    /// Builds the two HTTP clients: documents only from public addresses unless private
    /// ones are allowed; the gateway anywhere the operator put it, but a redirect away
    /// from it only to public addresses. Neither reads proxies from the environment.
    pub(crate) fn new(config: FetchConfig, ipfs_gateway: Url) -> Result<Self, reqwest::Error> {
        let user_agent = concat!("agora-indexer/", env!("CARGO_PKG_VERSION"));
        let builder = || {
            x402::http::direct()
                .user_agent(user_agent)
                .connect_timeout(config.timeout)
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

    pub(super) async fn with_retries(
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
}

/// A failed request: refused by the address checks (found in reqwest's error chain),
/// timed out, or unreachable.
fn request_failure(url: &Url, e: &reqwest::Error) -> Failure {
    if let Some(blocked) = causes(e).find_map(|err| err.downcast_ref::<Blocked>()) {
        return Failure::new("blocked_address", blocked.to_string());
    }
    if e.is_timeout() {
        Failure::transient("timeout", format!("{url} timed out"))
    } else {
        Failure::transient("unreachable", format!("{url} could not be reached: {e}"))
    }
}
