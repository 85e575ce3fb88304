//! The bore client: asks a relay for a public port and carries every connection made
//! to it back to a local address. The control connection is the tunnel's life: when
//! it ends (relay gone, heartbeats stop), [`Connected::serve`] returns and the
//! supervisor reconnects.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;

use super::wire::{
    ClientMessage, DEFAULT_CONTROL_PORT, Framed, HANDSHAKE_TIMEOUT, Secret, ServerMessage,
    WireError,
};

/// A relay gone quiet this long counts as gone (bore's relay beats every 500 ms).
const SILENCE: Duration = Duration::from_secs(5);

/// The most public connections carried at once: each costs a relay connection and a
/// local one, so a hostile relay announcing connections without end could otherwise
/// take this machine's file descriptors. One announced past it is left untaken (the
/// relay drops it), and said so in the log.
pub const MAX_CARRIED: usize = 64;

/// Where a relay listens: `host[:port]`, the port defaulting to bore's 7835.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoreServer {
    /// Host name or address; also the host of the public URL.
    pub host: String,
    /// Control port.
    pub port: u16,
}

impl FromStr for BoreServer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "write HOST[:PORT], e.g. relay.example.org or 203.0.113.7:7835";
        let s = s.trim();
        if s.is_empty() || s.contains('/') {
            return Err(format!("{s:?} is not a relay address; {hint}"));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{port:?} is not a port; {hint}"))?;
                (host, port)
            }
            _ => (s, DEFAULT_CONTROL_PORT),
        };
        if host.is_empty() {
            return Err(format!("{s:?} has no host; {hint}"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for BoreServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why the tunnel is not (or no longer) up.
#[derive(Debug, thiserror::Error)]
pub enum BoreError {
    /// The relay could not be reached.
    #[error("cannot reach the bore relay {server}: {reason}")]
    Unreachable {
        /// The relay.
        server: String,
        /// What the socket said.
        reason: String,
    },
    /// This client has a secret and the relay asked for none.
    #[error("the bore relay {0} asked for no secret")]
    SecretNotAsked(String),
    /// The relay refused this client's secret.
    #[error("the bore relay {server} refused the secret ({reason})")]
    SecretRefused {
        /// The relay.
        server: String,
        /// What it said.
        reason: String,
    },
    /// The relay asks for a secret this client does not have.
    #[error("the bore relay {0} needs a secret")]
    SecretNeeded(String),
    /// The relay answered with an error.
    #[error("the bore relay refused: {0}")]
    Refused(String),
    /// The control connection ended.
    #[error("the bore relay closed the tunnel")]
    Closed,
    /// No heartbeat for a while.
    #[error("the bore relay went silent for {0:?}")]
    Silent(Duration),
    /// Bad bytes or a socket error.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// What the client needs to open a tunnel.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The relay.
    pub server: BoreServer,
    /// The relay's shared secret, if it has one.
    pub secret: Option<Secret>,
    /// The local address public connections are carried to.
    pub local: SocketAddr,
    /// The public port to ask for first (0: any); a reconnect asks for the port it had,
    /// so the URL survives a relay restart when the port is still free.
    pub port: u16,
}

/// An open tunnel: the relay gave a public port.
pub struct Connected {
    control: Framed,
    remote_port: u16,
    config: Arc<ClientConfig>,
    carrying: Arc<tokio::sync::Semaphore>,
}

async fn dial(server: &BoreServer) -> Result<TcpStream, BoreError> {
    let unreachable = |reason: String| BoreError::Unreachable {
        server: server.to_string(),
        reason,
    };
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TcpStream::connect((
            server.host.trim_start_matches('[').trim_end_matches(']'),
            server.port,
        )),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("timed out".into())),
    }
}

/// Dials the relay and answers its challenge when this client has a secret.
async fn open(config: &ClientConfig) -> Result<Framed, BoreError> {
    let mut control = Framed::new(dial(&config.server).await?);
    if let Some(secret) = &config.secret {
        match control.recv_handshake::<ServerMessage>().await {
            Ok(Some(ServerMessage::Challenge(challenge))) => {
                control
                    .send(&ClientMessage::Authenticate(secret.answer(&challenge)))
                    .await?;
            }
            Ok(Some(ServerMessage::Error(e))) => return Err(BoreError::Refused(e)),
            Ok(_) | Err(WireError::Timeout) => {
                return Err(BoreError::SecretNotAsked(config.server.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(control)
}

/// Opens a tunnel from the relay in `config` to `config.local`.
pub async fn connect(config: ClientConfig) -> Result<Connected, BoreError> {
    let mut control = open(&config).await?;
    control.send(&ClientMessage::Hello(config.port)).await?;
    let remote_port = match control.recv_handshake::<ServerMessage>().await? {
        Some(ServerMessage::Hello(port)) => port,
        Some(ServerMessage::Error(e)) if e.contains("secret") => {
            return Err(BoreError::SecretRefused {
                server: config.server.to_string(),
                reason: e,
            });
        }
        Some(ServerMessage::Error(e)) => return Err(BoreError::Refused(e)),
        Some(ServerMessage::Challenge(_)) => {
            return Err(BoreError::SecretNeeded(config.server.to_string()));
        }
        Some(other) => {
            return Err(WireError::Protocol(format!("expected Hello, got {other:?}")).into());
        }
        None => return Err(BoreError::Closed),
    };
    Ok(Connected {
        control,
        remote_port,
        config: Arc::new(config),
        carrying: Arc::new(tokio::sync::Semaphore::new(MAX_CARRIED)),
    })
}

impl Connected {
    /// The public port the relay gave.
    pub fn remote_port(&self) -> u16 {
        self.remote_port
    }

    /// The URL buyers use: plain HTTP on the relay's host and the given port (bore has
    /// no TLS; put a TLS proxy in front of the relay for https).
    pub fn public_url(&self) -> String {
        let host = &self.config.server.host;
        if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:{}", self.remote_port)
        } else {
            format!("http://{host}:{}", self.remote_port)
        }
    }

    /// Carries public connections until the control connection ends; returns why.
    pub async fn serve(mut self) -> BoreError {
        loop {
            let message = match tokio::time::timeout(SILENCE, self.control.recv()).await {
                Err(_) => return BoreError::Silent(SILENCE),
                Ok(Err(e)) => return e.into(),
                Ok(Ok(None)) => return BoreError::Closed,
                Ok(Ok(Some(message))) => message,
            };
            match message {
                ServerMessage::Connection(id) => {
                    let Ok(permit) = self.carrying.clone().try_acquire_owned() else {
                        tracing::warn!(
                            "tunnel connection {id} left untaken: {MAX_CARRIED} connections are carried already"
                        );
                        continue;
                    };
                    let config = self.config.clone();
                    tokio::spawn(async move {
                        if let Err(e) = carry(&config, id).await {
                            tracing::warn!("tunnel connection {id}: {e}");
                        }
                        drop(permit);
                    });
                }
                ServerMessage::Error(e) => return BoreError::Refused(e),
                ServerMessage::Heartbeat
                | ServerMessage::Hello(_)
                | ServerMessage::Challenge(_) => {}
            }
        }
    }
}

/// Takes over public connection `id` on a fresh relay connection and joins it to the
/// local address.
async fn carry(config: &ClientConfig, id: Uuid) -> Result<(), BoreError> {
    let mut relay = open(config).await?;
    relay.send(&ClientMessage::Accept(id)).await?;
    let mut local = TcpStream::connect(config.local)
        .await
        .map_err(|e| BoreError::Unreachable {
            server: config.local.to_string(),
            reason: e.to_string(),
        })?;
    let (mut relay, early) = relay.into_parts();
    local.write_all(&early).await.map_err(WireError::from)?;
    tokio::io::copy_bidirectional(&mut relay, &mut local)
        .await
        .map_err(WireError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn relay_addresses_parse_with_bore_s_default_port() {
        let plain: BoreServer = "relay.example.org".parse().unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port),
            ("relay.example.org", 7835)
        );
        let with_port: BoreServer = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            (with_port.host.as_str(), with_port.port),
            ("127.0.0.1", 9000)
        );
        let v6: BoreServer = "[::1]:9000".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 9000));
        for bad in ["", "http://relay", "relay:0", "relay:x", ":7835"] {
            let err = bad.parse::<BoreServer>().unwrap_err();
            assert!(err.contains("write HOST[:PORT]"), "{bad}: {err}");
        }
    }
}
