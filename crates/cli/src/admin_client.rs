//! The client side of the daemon's admin API: hyper's HTTP/1.1 client over the Unix
//! socket, one request per connection (the API is small and local, so there is no pool
//! to keep).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// Talks to the daemon listening on `socket`.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

/// An answer of the admin API.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`null` when empty).
    pub body: Value,
}

impl Answer {
    /// The body, or an error carrying the API's own message.
    pub fn ok(self) -> anyhow::Result<Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        match self.body.get("error").and_then(Value::as_str) {
            Some(message) => bail!("{message}"),
            None => bail!(
                "the agora daemon answered HTTP {}: {}",
                self.status,
                self.body
            ),
        }
    }
}

impl AdminClient {
    /// A client for `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// Whether a daemon answers on the socket.
    pub async fn is_up(&self) -> bool {
        self.request("GET", "/v1/status", None).await.is_ok()
    }

    /// Creates or replaces an offer; the answer has the stored `offer` and the `change`.
    pub async fn put_offer(&self, offer: &offers::ServiceOffer) -> anyhow::Result<Value> {
        let path = format!("/v1/offers/{}", offer.metadata.name);
        self.request("PUT", &path, Some(&serde_json::to_value(offer)?))
            .await?
            .ok()
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let stream =
            tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(&self.socket))
                .await
                .context("the agora daemon did not accept the connection in time")?
                .with_context(|| {
                    format!("no agora daemon is listening on {}", self.socket.display())
                })?;
        let payload = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "agora")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .with_context(|| format!("{method} {path} is not a valid admin API request"))?;
        tokio::time::timeout(Duration::from_secs(120), exchange(stream, request))
            .await
            .context("the agora daemon did not answer in time")?
    }
}

/// One request and its whole answer on a fresh connection.
async fn exchange(
    stream: UnixStream,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<Answer> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("the agora daemon did not speak HTTP on its admin socket")?;
    // The connection runs beside the exchange and ends with it, even on a timeout.
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let response = sender
        .send_request(request)
        .await
        .context("the agora daemon closed the connection without answering")?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("the agora daemon's answer broke off")?
        .to_bytes();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).context("the agora daemon sent a non-JSON body")?
    };
    Ok(Answer { status, body })
}

/// Stops the connection's task when the exchange ends or is abandoned.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
