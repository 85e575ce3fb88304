//! The upstream's answer to a paid call: read whole before anyone is charged, and
//! delivered with its receipt while the gateway watches whether it arrived.
//!
//! A non-streaming answer (anything but event streams and NDJSON, up to
//! [`WHOLE_BODY_LIMIT`]) is read completely before settlement, so an upstream that
//! dies mid-body costs the buyer nothing. Longer answers and streams are settled once
//! their status and headers are in, and their body follows: a stream cut by the
//! upstream after settlement was paid for, but it is not counted as delivered.
//!
//! Delivery is known when the body's last byte has been handed to the connection. A
//! body dropped before that (the buyer hung up, the stream broke) leaves the
//! authorization `Paid`, so the same payment header sent again gets the answer again
//! with the original receipt, without a second charge.

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
            body: self.body,
            hold: Some(hold),
            remaining,
            _keep: keep,
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
/// is one), and leaves it paid when dropped early.
struct Delivery<K> {
    body: Chunks,
    hold: Option<Hold>,
    remaining: Option<u64>,
    _keep: K,
}

impl<K> Delivery<K> {
    fn served(&mut self) {
        if let Some(hold) = self.hold.take() {
            hold.served();
        }
    }
}

impl<K> Unpin for Delivery<K> {}

impl<K> Stream for Delivery<K> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.body.poll_next_unpin(cx);
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
