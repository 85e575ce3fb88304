//! Gateway replicas in a cluster: every authorization has one home replica, and the
//! others hand its requests there.
//!
//! The replay guard's ledger (`guard.rs`) is what lets a buyer charged for an answer
//! it did not get (`Paid`), or whose settlement's outcome is unknown (`Settling`),
//! come back with the same header and be served once, for the request it paid for.
//! A ledger is one SQLite file, which cannot be shared safely by several processes
//! on several nodes. So instead of sharing the file, the replicas share the routing:
//! the home of an authorization is chosen by rendezvous hashing of its key
//! (chain, asset, payer, nonce) over the replica indexes, the same on every replica,
//! and a paid request that reaches another replica is forwarded there whole
//! (method, path, query, headers, body; the answer streamed back). Each replica's
//! ledger lives on its own volume (a StatefulSet's PersistentVolumeClaim), which
//! follows the replica when its pod moves. The load balancer in front may send a
//! retry anywhere: the answer comes from the one replica that knows the payment.
//!
//! A forwarded request carries [`HOP_HEADER`], and a replica never forwards a request
//! that has it, so there is at most one hop. A buyer can set that header to be served
//! by the replica it reached; that replica then holds the payment, and any other
//! replica meets the facilitator's guard ("already settled") for it. So the header
//! can only cost its sender, never let one payment buy two answers.

use std::time::Duration;

use alloy::primitives::keccak256;
use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use reqwest::Url;
use x402::eip3009::AuthorizationKey;

use crate::route::Route;
use crate::{Gatekeeper, proxy, respond};

/// Set on a request one replica forwards to another: the sender's index.
pub const HOP_HEADER: &str = "agora-replica-hop";

/// The replica set: every replica's base URL, by index, and which one this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    peers: Vec<Url>,
    me: usize,
}

/// A replica set that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicasError {
    /// This replica's index is not in the set.
    #[error("replica index {me} is outside the {count} replicas")]
    IndexOutside {
        /// The index given.
        me: usize,
        /// How many replicas there are.
        count: usize,
    },
    /// A peer URL that does not parse.
    #[error("replica URL {0:?} is not an http(s) URL")]
    BadUrl(String),
}

impl Replicas {
    /// The set `peers` (index order matters and must be the same on every replica),
    /// this replica being `peers[me]`.
    pub fn new(peers: Vec<Url>, me: usize) -> Result<Self, ReplicasError> {
        if me >= peers.len() {
            return Err(ReplicasError::IndexOutside {
                me,
                count: peers.len(),
            });
        }
        Ok(Self { peers, me })
    }

    /// `count` replicas whose URLs are `template` with `{}` replaced by the index
    /// (a StatefulSet's pods behind its headless Service).
    pub fn from_template(template: &str, count: usize, me: usize) -> Result<Self, ReplicasError> {
        let peers = (0..count)
            .map(|i| {
                let text = template.replace("{}", &i.to_string());
                match Url::parse(&text) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
                    _ => Err(ReplicasError::BadUrl(text)),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(peers, me)
    }

    /// The index of the replica that keeps `key`'s ledger entry: the highest
    /// keccak256(key, index). Adding a replica moves only the keys the new one wins.
    pub fn home(&self, key: &AuthorizationKey) -> usize {
        let mut seed = Vec::with_capacity(8 + 20 + 20 + 32 + 8);
        seed.extend_from_slice(&key.chain_id.to_be_bytes());
        seed.extend_from_slice(key.asset.as_slice());
        seed.extend_from_slice(key.payer.as_slice());
        seed.extend_from_slice(key.nonce.as_slice());
        let base = seed.len();
        (0..self.peers.len())
            .max_by_key(|i| {
                seed.truncate(base);
                seed.extend_from_slice(&u64::try_from(*i).unwrap_or(u64::MAX).to_be_bytes());
                keccak256(&seed)
            })
            .unwrap_or(self.me)
    }

    /// This replica's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Where a request for `key` must go instead of being served here: `None` when
    /// this replica is its home, or when another replica already forwarded it.
    pub(crate) fn elsewhere(&self, key: &AuthorizationKey, headers: &HeaderMap) -> Option<&Url> {
        if headers.contains_key(HOP_HEADER) {
            return None;
        }
        let home = self.home(key);
        (home != self.me).then(|| &self.peers[home])
    }
}

/// Sends the paid request to its home replica and relays the answer as it streams.
/// The deadline covers the home's verify, upstream call and settle.
pub(crate) async fn forward(
    inner: &Gatekeeper,
    route: &Route,
    me: usize,
    home: &Url,
    parts: Parts,
    body: Bytes,
) -> Response {
    let mut url = home.clone();
    url.set_path(parts.uri.path());
    url.set_query(parts.uri.query());
    let mut headers = parts.headers;
    proxy::strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(HOP_HEADER, HeaderValue::from(me));
    let deadline = route
        .upstream_timeout
        .saturating_add(inner.config.verify_timeout)
        .saturating_add(inner.config.settle_timeout)
        .saturating_add(Duration::from_secs(30));
    match proxy::send(&inner.http, parts.method, url, headers, body, deadline).await {
        Ok(answer) => proxy::relay(answer, HeaderMap::new(), ()),
        Err(e) => {
            tracing::warn!(%home, "cannot reach the payment's home replica: {e}");
            respond::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "replica_unavailable",
                "settlement_pending",
                "the gateway replica that holds this payment cannot be reached right now; retry with the same payment header shortly (it is charged at most once), do not sign a new one",
                2,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256};

    use super::*;

    fn key(n: u8) -> AuthorizationKey {
        AuthorizationKey {
            chain_id: 84532,
            asset: Address::repeat_byte(2),
            payer: Address::repeat_byte(1),
            nonce: B256::repeat_byte(n),
        }
    }

    fn set(count: usize, me: usize) -> Replicas {
        Replicas::from_template("http://gw-{}.peers:8402", count, me).unwrap()
    }

    #[test]
    fn every_replica_agrees_on_the_home_and_homes_spread() {
        let a = set(3, 0);
        let b = set(3, 2);
        let homes: Vec<usize> = (0..=255).map(|n| a.home(&key(n))).collect();
        assert_eq!(
            homes,
            (0..=255).map(|n| b.home(&key(n))).collect::<Vec<_>>()
        );
        for replica in 0..3 {
            let share = homes.iter().filter(|h| **h == replica).count();
            assert!(share > 50, "replica {replica} is home of {share} of 256");
        }
        // Growing to 4 moves a key only to the new replica.
        let grown = set(4, 0);
        for n in 0..=255 {
            let after = grown.home(&key(n));
            assert!(after == homes[usize::from(n)] || after == 3);
        }
    }

    #[test]
    fn a_forwarded_request_is_never_forwarded_again() {
        let replicas = set(2, 0);
        let away = (0..=255).map(key).find(|k| replicas.home(k) == 1).unwrap();
        assert_eq!(
            replicas
                .elsewhere(&away, &HeaderMap::new())
                .map(Url::as_str),
            Some("http://gw-1.peers:8402/")
        );
        let mut hopped = HeaderMap::new();
        hopped.insert(HOP_HEADER, HeaderValue::from(1));
        assert_eq!(replicas.elsewhere(&away, &hopped), None);
        assert!(Replicas::from_template("gw-{}", 2, 0).is_err());
        assert!(Replicas::from_template("http://gw-{}", 2, 2).is_err());
    }
}
