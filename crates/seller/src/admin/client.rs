//! The client side of the daemon's admin API: hyper's HTTP/1.1 client over the Unix
//! socket, one request per connection (the API is small and local, so there is no pool
//! to keep), with one typed method per endpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use offers::ServiceOffer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::UnixStream;

use super::{
    ApiError, Deleted, Info, OfferView, PathInUse, Reconciled, Registration, Settings, Stored,
    TunnelStatus, TunnelView,
};

/// How long the daemon has to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one exchange may take (a reconcile pass may register on chain).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing listens on the socket (no daemon, or another home).
    #[error("no agora daemon is listening on {}", .socket.display())]
    NotListening {
        /// The socket tried.
        socket: PathBuf,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The daemon did not accept in time.
    #[error("the agora daemon did not accept the connection in time")]
    ConnectTimeout(#[source] tokio::time::error::Elapsed),
    /// The daemon did not answer in time.
    #[error("the agora daemon did not answer in time")]
    AnswerTimeout(#[source] tokio::time::error::Elapsed),
    /// The request could not be written (a name that is no URL path).
    #[error("{method} {path} is not a valid admin API request")]
    Request {
        /// The method.
        method: &'static str,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: hyper::http::Error,
    },
    /// Something answers on the socket, but not HTTP, or it hung up.
    #[error("{what}")]
    Transport {
        /// What went wrong, in words.
        what: &'static str,
        /// The HTTP error.
        #[source]
        source: hyper::Error,
    },
    /// The body is not JSON, or not the JSON this client expects.
    #[error("the agora daemon sent {what}")]
    Body {
        /// What was wrong with it.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The offer's path is another offer's (a `PUT /v1/offers/{name}` refusal).
    #[error("{0}")]
    Invalid(offers::ValidationError),
    /// The daemon refused, saying why.
    #[error("{message}")]
    Refused {
        /// HTTP status (400 invalid, 404 no such offer, 409 no tunnel, 500 store).
        status: u16,
        /// The daemon's reason.
        message: String,
    },
    /// A failure status without the API's error body.
    #[error("the agora daemon answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The body as sent.
        body: Value,
    },
}

impl AdminError {
    /// The HTTP status when the daemon answered with a failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } | Self::Status { status, .. } => Some(*status),
            Self::Invalid(_) => Some(400),
            _ => None,
        }
    }
}

/// Talks to the daemon listening on `socket`.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client for `socket` (see [`crate::socket_path`]).
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether a daemon answers on the socket.
    pub async fn is_up(&self) -> bool {
        self.status().await.is_ok()
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Info, AdminError> {
        self.call("GET", "/v1/status", None::<&()>).await
    }

    /// `GET /v1/offers`: every offer with its status.
    pub async fn offers(&self) -> Result<Vec<ServiceOffer>, AdminError> {
        self.call("GET", "/v1/offers", None::<&()>).await
    }

    /// `GET /v1/offers/{name}`: one offer and its recent events; 404 when none.
    pub async fn offer(&self, name: &str) -> Result<OfferView, AdminError> {
        self.call("GET", &format!("/v1/offers/{name}"), None::<&()>)
            .await
    }

    /// `PUT /v1/offers/{name}`: creates or replaces an offer (the reconciler is woken).
    pub async fn put_offer(&self, offer: &ServiceOffer) -> Result<Stored, AdminError> {
        let path = format!("/v1/offers/{}", offer.metadata.name);
        self.call("PUT", &path, Some(offer)).await
    }

    /// `DELETE /v1/offers/{name}`: removes an offer and its route; 404 when none.
    pub async fn delete_offer(&self, name: &str) -> Result<Deleted, AdminError> {
        self.call("DELETE", &format!("/v1/offers/{name}"), None::<&()>)
            .await
    }

    /// `POST /v1/reconcile`: one reconciler pass now.
    pub async fn reconcile(&self) -> Result<Reconciled, AdminError> {
        self.call("POST", "/v1/reconcile", None::<&()>).await
    }

    /// `GET /v1/registration`, after a pass.
    pub async fn registration(&self) -> Result<Registration, AdminError> {
        self.call("GET", "/v1/registration", None::<&()>).await
    }

    /// `GET /v1/settings`.
    pub async fn settings(&self) -> Result<Settings, AdminError> {
        self.call("GET", "/v1/settings", None::<&()>).await
    }

    /// `PUT /v1/settings`: sets the fields given; answers all of them.
    pub async fn put_settings(&self, settings: &Settings) -> Result<Settings, AdminError> {
        self.call("PUT", "/v1/settings", Some(settings)).await
    }

    /// `GET /v1/tunnel`.
    pub async fn tunnel(&self) -> Result<TunnelView, AdminError> {
        self.call("GET", "/v1/tunnel", None::<&()>).await
    }

    /// `POST /v1/tunnel/start|stop`: holds the tunnel up or down until the daemon
    /// restarts; 409 when the daemon keeps no tunnel.
    pub async fn hold_tunnel(&self, up: bool) -> Result<TunnelStatus, AdminError> {
        let action = if up { "start" } else { "stop" };
        self.call("POST", &format!("/v1/tunnel/{action}"), None::<&()>)
            .await
    }

    /// One request, its answer read as `T`, a refusal as [`AdminError::Refused`].
    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, AdminError> {
        let payload = match body {
            Some(body) => serde_json::to_vec(body).map_err(|source| AdminError::Body {
                what: "a request this client cannot write",
                source,
            })?,
            None => Vec::new(),
        };
        let (status, body) = self.request(method, path, payload).await?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_value::<ApiError>(body.clone()) {
                Ok(ApiError {
                    path_in_use: Some(PathInUse { path, other }),
                    ..
                }) => AdminError::Invalid(offers::ValidationError::PathInUse { path, other }),
                Ok(refusal) => AdminError::Refused {
                    status,
                    message: refusal.error,
                },
                Err(_) => AdminError::Status { status, body },
            });
        }
        serde_json::from_value(body).map_err(|source| AdminError::Body {
            what: "an answer this agora does not understand",
            source,
        })
    }

    /// Sends one request and reads the whole answer as JSON (`null` when empty).
    async fn request(
        &self,
        method: &'static str,
        path: &str,
        payload: Vec<u8>,
    ) -> Result<(u16, Value), AdminError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.socket))
            .await
            .map_err(AdminError::ConnectTimeout)?
            .map_err(|source| AdminError::NotListening {
                socket: self.socket.clone(),
                source,
            })?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "agora")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|source| AdminError::Request {
                method,
                path: path.to_string(),
                source,
            })?;
        tokio::time::timeout(ANSWER_TIMEOUT, exchange(stream, request))
            .await
            .map_err(AdminError::AnswerTimeout)?
    }
}

/// One request and its whole answer on a fresh connection.
async fn exchange(
    stream: UnixStream,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Value), AdminError> {
    let transport = |what| move |source| AdminError::Transport { what, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(transport(
            "the agora daemon did not speak HTTP on its admin socket",
        ))?;
    // The connection runs beside the exchange and ends with it, even on a timeout.
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let response = sender.send_request(request).await.map_err(transport(
        "the agora daemon closed the connection without answering",
    ))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(transport("the agora daemon's answer broke off"))?
        .to_bytes();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|source| AdminError::Body {
            what: "a non-JSON body",
            source,
        })?
    };
    Ok((status, body))
}

/// Stops the connection's task when the exchange ends or is abandoned.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
