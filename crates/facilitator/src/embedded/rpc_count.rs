//! Counts the facilitator's JSON-RPC calls by method. RPC providers rate-limit and
//! bill per call, and the node is the bottleneck of settlement, so calls per paid
//! request is the number to watch; it is exposed as a metric and read by the benches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use alloy::transports::{TransportError, TransportFut};
use alloy_json_rpc::{RequestPacket, ResponsePacket};
use tower::{Layer, Service};

/// Calls made so far, by JSON-RPC method; shared by every chain's client.
#[derive(Debug, Clone, Default)]
pub struct RpcCounts(Arc<Mutex<BTreeMap<String, u64>>>);

impl RpcCounts {
    /// Calls per method so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn add(&self, packet: &RequestPacket) {
        if let Ok(mut counts) = self.0.lock() {
            for method in packet.method_names() {
                *counts.entry(method.to_string()).or_default() += 1;
            }
        }
    }
}

/// The transport layer that counts into [`RpcCounts`].
#[derive(Debug, Clone)]
pub(crate) struct CountingLayer(pub(crate) RpcCounts);

impl<S> Layer<S> for CountingLayer {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counting {
            inner,
            counts: self.0.clone(),
        }
    }
}

/// A transport that counts each request before passing it on.
#[derive(Debug, Clone)]
pub(crate) struct Counting<S> {
    inner: S,
    counts: RpcCounts,
}

impl<S> Service<RequestPacket> for Counting<S>
where
    S: Service<RequestPacket, Response = ResponsePacket, Error = TransportError>
        + Send
        + Clone
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        self.counts.add(&request);
        let future = self.inner.call(request);
        Box::pin(future)
    }
}
