//! Which addresses a registrant's URI may reach: only globally routable ones (names
//! resolved and literals checked, redirects included), except the operator's gateway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::client::MAX_REDIRECTS;

/// The error the guarded resolver and redirect policies raise, found again in
/// reqwest's error chain to report `blocked_address`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Blocked(String);

impl Blocked {
    /// `host` is (or resolves only to) a non-public address.
    pub(super) fn address(host: impl std::fmt::Display) -> Self {
        Self(format!(
            "{host} is a loopback, private or link-local address; registration files must be on public hosts"
        ))
    }
}

/// Resolves names to public addresses only, except `trusted` (the operator's IPFS
/// gateway, which may well be a node on this machine).
pub(super) struct PublicOnly {
    pub(super) trusted: Option<String>,
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
pub(super) fn is_public(ip: IpAddr) -> bool {
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
pub(super) fn public_redirects(
    trusted: Option<(Option<String>, Option<u16>)>,
) -> reqwest::redirect::Policy {
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
pub(super) fn blocked_literal(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = literal.parse().ok()?;
    (!is_public(ip)).then(|| ip.to_string())
}
