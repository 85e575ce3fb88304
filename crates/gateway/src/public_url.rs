//! The URL a buyer pays for (the 402's `resource`), and whom to believe about it.
//!
//! A configured public base URL (`--public-url`, or the tunnel's URL, which changes
//! while serving) always wins. Without one the request says where it was sent: `Host`,
//! and `X-Forwarded-Host`/`X-Forwarded-Proto` only from a loopback peer, i.e. a
//! reverse proxy or tunnel client on this machine. A remote client could otherwise
//! make the gateway publish any host under an https scheme; values are also checked
//! to be a plain host and `http`/`https`, so nothing else lands in the 402 or the page.

use std::net::SocketAddr;
use std::sync::RwLock;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

/// The public base URL, replaceable while serving (a tunnel's URL comes and goes).
#[derive(Debug, Default)]
pub(crate) struct PublicBase(RwLock<Option<String>>);

impl PublicBase {
    pub(crate) fn new(base: Option<String>) -> Self {
        Self(RwLock::new(base.map(trimmed)))
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, base: Option<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = base.map(trimmed);
    }
}

fn trimmed(base: String) -> String {
    base.trim_end_matches('/').to_string()
}

/// Whether `host` is a host name or address with an optional port, nothing else.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The resource URL of the request in `parts`, given the public base if any.
pub(crate) fn resource_url(base: Option<&str>, parts: &Parts) -> String {
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    if let Some(base) = base {
        return format!("{base}{path}");
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            // A proxy chain appends: the first value is the client-facing one.
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
    };
    let from_this_machine = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
    let forwarded = |name: &str| header(name).filter(|_| from_this_machine);
    let scheme = forwarded("x-forwarded-proto")
        .filter(|s| s == "http" || s == "https")
        .unwrap_or_else(|| "http".into());
    let host = forwarded("x-forwarded-host")
        .filter(|h| plain_host(h))
        .or_else(|| header("host").filter(|h| plain_host(h)))
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::Request;

    use super::*;

    fn parts(peer: Option<&str>, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/services/x/run?q=1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        if let Some(peer) = peer {
            parts
                .extensions
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        parts
    }

    const FORWARDED: [(&str, &str); 3] = [
        ("host", "127.0.0.1:8402"),
        ("x-forwarded-host", "seller.example"),
        ("x-forwarded-proto", "https"),
    ];

    #[test]
    fn a_public_base_wins_over_every_header() {
        let p = parts(Some("127.0.0.1:5000"), &FORWARDED);
        assert_eq!(
            resource_url(Some("https://tunnel.example"), &p),
            "https://tunnel.example/services/x/run?q=1"
        );
    }

    #[test]
    fn forwarded_headers_count_from_a_loopback_proxy_only() {
        let local = parts(Some("127.0.0.1:5000"), &FORWARDED);
        assert_eq!(
            resource_url(None, &local),
            "https://seller.example/services/x/run?q=1"
        );
        let mapped = parts(Some("[::ffff:127.0.0.1]:5000"), &FORWARDED);
        assert_eq!(
            resource_url(None, &mapped),
            "https://seller.example/services/x/run?q=1"
        );
        let remote = parts(Some("203.0.113.9:5000"), &FORWARDED);
        assert_eq!(
            resource_url(None, &remote),
            "http://127.0.0.1:8402/services/x/run?q=1"
        );
        let unknown = parts(None, &FORWARDED);
        assert_eq!(
            resource_url(None, &unknown),
            "http://127.0.0.1:8402/services/x/run?q=1"
        );
    }

    #[test]
    fn odd_forwarded_values_are_ignored() {
        let p = parts(
            Some("127.0.0.1:5000"),
            &[
                ("host", "shop.example"),
                ("x-forwarded-host", "evil.example/<script>"),
                ("x-forwarded-proto", "javascript"),
            ],
        );
        assert_eq!(
            resource_url(None, &p),
            "http://shop.example/services/x/run?q=1"
        );
        let chained = parts(
            Some("127.0.0.1:5000"),
            &[("x-forwarded-host", "first.example, second.example")],
        );
        assert_eq!(
            resource_url(None, &chained),
            "http://first.example/services/x/run?q=1"
        );
    }

    #[test]
    fn the_base_can_change_while_serving() {
        let base = PublicBase::new(None);
        assert_eq!(base.get(), None);
        base.set(Some("http://relay.example:4000/".into()));
        assert_eq!(base.get().as_deref(), Some("http://relay.example:4000"));
        base.set(None);
        assert_eq!(base.get(), None);
    }
}
