//! The workspace's one rule for which HTTP connections go through a proxy. A call to
//! another party on the internet (a seller, a facilitator, a registry) honours the
//! environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` as `agora pay` always
//! has; a call to this machine's own services, or to an address agora has resolved and
//! checked itself, never does, so a proxy set for the internet cannot swallow
//! `127.0.0.1` or carry a request past those checks. Both return a
//! [`reqwest::ClientBuilder`], so callers add their own timeouts and redirect policy.

/// A client builder for other parties on the internet: the environment's proxy
/// variables apply (reqwest reads them when the client is built).
///
/// ```rust
/// let client = x402::http::public()
///     .timeout(std::time::Duration::from_secs(10))
///     .build()
///     .expect("a client");
/// # drop(client);
/// ```
pub fn public() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
}

/// A client builder that never uses a proxy: for loopback services (the daemon's admin
/// API, a sidecar, a seller's upstream), a tunnel's own endpoints, and fetches whose
/// target address the caller checks itself (the indexer's private-address guard).
pub fn direct() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy()
}
