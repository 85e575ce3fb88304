//! The client side of the daemon's admin API: HTTP/1.1 over the Unix socket, one
//! request per connection (the API is small and local, so no HTTP stack is needed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        let mut stream =
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
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: agora\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&payload).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut raw))
            .await
            .context("the agora daemon did not answer in time")??;
        parse_response(&raw)
    }
}

/// Parses an HTTP/1.1 response with a Content-Length or chunked body.
fn parse_response(raw: &[u8]) -> anyhow::Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the agora daemon sent a malformed answer")?;
    let head =
        std::str::from_utf8(&raw[..split]).context("the agora daemon sent non-UTF-8 headers")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the agora daemon sent no status code")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).context("the agora daemon sent a non-JSON body")?
    };
    Ok(Answer { status, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunked body")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"a\":true} ";
        let a = parse_response(plain).unwrap();
        assert_eq!((a.status, a.body["a"].as_bool()), (200, Some(true)));
        let chunked = b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"err\r\n9\r\nor\":\"no\"}\r\n0\r\n\r\n";
        let b = parse_response(chunked).unwrap();
        assert_eq!(b.status, 400);
        assert_eq!(b.body["error"], "no");
        assert_eq!(b.ok().unwrap_err().to_string(), "no");
        assert!(parse_response(b"garbage").is_err());
    }
}
