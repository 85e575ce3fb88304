//! The upstream's answer to a paid call: read whole before anyone is charged, and
//! delivered with its receipt while the gateway watches whether it arrived.
//!
//! A non-streaming answer (anything but event streams and NDJSON, up to
//! [`WHOLE_BODY_LIMIT`]) is read completely before settlement, so an upstream that
//! dies mid-body costs the buyer nothing. Longer answers and streams are settled once
//! their status and headers are in, and their body follows: a stream cut by the
//! upstream after settlement was paid for, but it is not counted as delivered.
//!
//! A whole answer is delivered when its last byte has been handed to the connection.
//! One dropped before that (the buyer hung up mid-transfer) leaves the authorization
//! `Paid`, so the same request sent again with the same header gets the answer again
//! with the original receipt, without a second charge (a few times at most, see
//! `guard`).
//!
//! A stream (and an answer too long to read whole) is delivered once the upstream has
//! finished sending it, whether or not the buyer stayed to read it: when the buyer
//! hangs up, the gateway reads the rest of the upstream's body itself and marks the
//! authorization served at its end. Otherwise hanging up before the last event would
//! keep a streamed answer redeemable, and each redemption is a whole new answer. Only
//! a stream the upstream itself broke off, or one the buyer left before any of it was
//! sent (it hung up during the settlement), stays `Paid`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::Response;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};

use crate::guard::Hold;
use crate::proxy;

/// Longest answer read whole before settling.
pub const WHOLE_BODY_LIMIT: usize = 4 * 1024 * 1024;

type Chunks = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// An upstream answer whose status was below 400, ready to be charged for.
pub struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Chunks,
    /// For a body not read whole: the longest pause between two chunks while the
    /// gateway reads the rest of it after the buyer hung up.
    finish_within: Option<Duration>,
}

/// The upstream broke off its answer before the end.
#[derive(Debug, thiserror::Error)]
#[error("the service broke off its answer ({0})")]
pub struct Cut(String);

impl Answer {
    /// Reads `upstream`'s body whole when it is not a stream and fits the limit,
    /// within `timeout`; otherwise keeps what was read and the rest as a stream.
    pub async fn read(upstream: reqwest::Response, timeout: Duration) -> Result<Self, Cut> {
        let status = upstream.status();
        let mut headers = upstream.headers().clone();
        proxy::strip_hop_by_hop(&mut headers);
        if is_stream(&headers) {
            return Ok(Self {
                status,
                headers,
                body: upstream_chunks(upstream),
                finish_within: Some(timeout),
            });
        }
        let mut upstream = upstream;
        let mut whole = Vec::new();
        let read = async {
            loop {
                match upstream.chunk().await {
                    Ok(Some(chunk)) => {
                        whole.extend_from_slice(&chunk);
                        if whole.len() > WHOLE_BODY_LIMIT {
                            return Ok(false);
                        }
                    }
                    Ok(None) => return Ok(true),
                    Err(e) => return Err(Cut(e.to_string())),
                }
            }
        };
        let complete = match tokio::time::timeout(timeout, read).await {
            Ok(outcome) => outcome?,
            Err(_) => return Err(Cut(format!("no end within {timeout:?}"))),
        };
        let prefix = Bytes::from(whole);
        let body: Chunks = if complete {
            headers.insert(header::CONTENT_LENGTH, prefix.len().into());
            stream::once(async move { Ok(prefix) }).boxed()
        } else {
            stream::once(async move { Ok(prefix) })
                .chain(upstream_chunks(upstream))
                .boxed()
        };
        Ok(Self {
            status,
            headers,
            body,
            finish_within: (!complete).then_some(timeout),
        })
    }

    /// The answer as a response carrying `extra` headers (the receipt); `hold` is
    /// marked served once the last byte went out. `keep` lives as long as the body
    /// (the route's in-flight permit).
    pub fn deliver<K: Send + 'static>(self, extra: HeaderMap, hold: Hold, keep: K) -> Response {
        let mut headers = self.headers;
        headers.extend(extra);
        let remaining = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let watched = Delivery {
            body: Some(self.body),
            hold: Some(hold),
            remaining,
            finish_within: self.finish_within,
            started: false,
            keep: Some(keep),
        };
        let mut response = Response::new(Body::from_stream(watched));
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
}

fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase())
        .is_some_and(|v| v.starts_with("text/event-stream") || v.contains("ndjson"))
}

fn upstream_chunks(upstream: reqwest::Response) -> Chunks {
    upstream
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed()
}

/// A body that marks its hold served when its last byte is handed over (hyper stops
/// polling a body once its Content-Length is written, so the count decides when there
/// is one). Dropped early, a whole answer leaves its hold paid; a stream finishes
/// reading the upstream on its own and is served at the upstream's end.
struct Delivery<K: Send + 'static> {
    body: Option<Chunks>,
    hold: Option<Hold>,
    remaining: Option<u64>,
    finish_within: Option<Duration>,
    /// Whether hyper asked for the body at all: one dropped before that (the buyer
    /// left while the payment settled) sent the buyer nothing and stays paid.
    started: bool,
    keep: Option<K>,
}

impl<K: Send + 'static> Delivery<K> {
    fn served(&mut self) {
        if let Some(hold) = self.hold.take() {
            hold.served();
        }
    }
}

impl<K: Send + 'static> Unpin for Delivery<K> {}

impl<K: Send + 'static> Drop for Delivery<K> {
    fn drop(&mut self) {
        let (Some(hold), Some(body), Some(pause), true) = (
            self.hold.take(),
            self.body.take(),
            self.finish_within,
            self.started,
        ) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to read the rest on: the hold stays paid (bound to its
            // request, with its redemptions capped).
            return;
        };
        // The in-flight permit stays taken while the upstream is still working.
        let keep = self.keep.take();
        runtime.spawn(async move {
            finish_reading(body, hold, pause).await;
            drop(keep);
        });
    }
}

/// Reads what is left of an upstream body nobody is listening to, and marks `hold`
/// served at its end; a body that breaks or stalls past `pause` leaves it paid.
async fn finish_reading(mut body: Chunks, hold: Hold, pause: Duration) {
    loop {
        match tokio::time::timeout(pause, body.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(None) => {
                hold.served();
                return;
            }
            Ok(Some(Err(_))) | Err(_) => return,
        }
    }
}

impl<K: Send + 'static> Stream for Delivery<K> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.started = true;
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let next = body.poll_next_unpin(cx);
        match &next {
            Poll::Ready(None) => self.served(),
            Poll::Ready(Some(Err(_))) => {
                // A broken body is not a delivered one: the hold stays paid.
                self.hold.take();
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
                if let Some(left) = self.remaining.as_mut() {
                    *left = left.saturating_sub(len);
                    if *left == 0 {
                        self.served();
                    }
                }
            }
            Poll::Pending => {}
        }
        next
    }
}
