//! A bore-compatible relay (`agora tunnel relay`), for a seller who has a public VPS:
//! clients connect to its control port and each gets a public port whose connections
//! are handed to the client on demand. A client's public port closes as soon as its
//! control connection ends, so a stopped tunnel stops being reachable at once.
//!
//! Unlike bore's own server the control address is configurable (bore fixes 7835),
//! which lets several relays run side by side, in tests among others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use super::wire::{ClientMessage, Framed, Secret, ServerMessage, WireError};

/// How often the relay tells a client it is still there (bore's rhythm).
const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a public connection waits for its client to take it.
const UNCLAIMED: Duration = Duration::from_secs(10);

/// What the relay listens on and whom it lets in.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The control address clients dial.
    pub control: SocketAddr,
    /// The address public ports are opened on.
    pub tunnels: IpAddr,
    /// Public ports clients may be given.
    pub ports: RangeInclusive<u16>,
    /// Clients must prove this secret.
    pub secret: Option<Secret>,
}

/// Every port a client may be given: the whole unprivileged range.
pub const ALL_PORTS: RangeInclusive<u16> = 1024..=65535;

struct Shared {
    config: RelayConfig,
    waiting: Mutex<HashMap<Uuid, TcpStream>>,
}

/// A bound relay; [`Relay::run`] serves it.
pub struct Relay {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Relay {
    /// Binds the control address.
    pub async fn bind(config: RelayConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.control).await?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                waiting: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The control address actually bound (port 0 resolved).
    pub fn control_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until the listener fails. Every connection's task belongs to
    /// this future: dropping it (the relay stops) closes every tunnel and public port.
    pub async fn run(self) -> std::io::Result<()> {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = accepted?;
                    let shared = self.shared.clone();
                    connections.spawn(async move {
                        if let Err(e) = shared.handle(stream).await {
                            tracing::info!("relay client {peer}: {e}");
                        }
                    });
                }
                Some(_) = connections.join_next() => {}
            }
        }
    }
}

fn frame(message: &ServerMessage) -> Result<Vec<u8>, WireError> {
    let mut bytes = serde_json::to_vec(message).map_err(|e| WireError::Protocol(e.to_string()))?;
    bytes.push(0);
    Ok(bytes)
}

impl Shared {
    async fn handle(self: Arc<Self>, stream: TcpStream) -> Result<(), WireError> {
        let mut control = Framed::new(stream);
        if let Some(secret) = &self.config.secret {
            let challenge = Uuid::new_v4();
            control.send(&ServerMessage::Challenge(challenge)).await?;
            let proven = match control.recv_handshake::<ClientMessage>().await? {
                Some(ClientMessage::Authenticate(answer)) => secret.accepts(&challenge, &answer),
                _ => false,
            };
            if !proven {
                control
                    .send(&ServerMessage::Error("invalid secret".into()))
                    .await?;
                return Ok(());
            }
        }
        match control.recv_handshake::<ClientMessage>().await? {
            Some(ClientMessage::Hello(port)) => self.tunnel(control, port).await,
            Some(ClientMessage::Accept(id)) => self.hand_over(control, id).await,
            Some(ClientMessage::Authenticate(_)) | None => Ok(()),
        }
    }

    /// Opens a public port for one client and tells it of each connection, until the
    /// client goes away.
    async fn tunnel(self: &Arc<Self>, mut control: Framed, port: u16) -> Result<(), WireError> {
        let public = match self.open_port(port).await {
            Ok(listener) => listener,
            Err(e) => {
                control.send(&ServerMessage::Error(e)).await?;
                return Ok(());
            }
        };
        let given = public.local_addr()?.port();
        control.send(&ServerMessage::Hello(given)).await?;
        tracing::info!("relay: public port {given} open");
        let (stream, _) = control.into_parts();
        let (mut read, mut write) = stream.into_split();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut sink = [0u8; 64];
        loop {
            tokio::select! {
                _ = beat.tick() => write.write_all(&frame(&ServerMessage::Heartbeat)?).await?,
                read = read.read(&mut sink) => {
                    // The client sends nothing after Hello: EOF or an error ends it.
                    if matches!(read, Ok(0) | Err(_)) {
                        tracing::info!("relay: public port {given} closed");
                        return Ok(());
                    }
                }
                accepted = public.accept() => {
                    let (incoming, _) = accepted?;
                    let id = Uuid::new_v4();
                    self.lock().insert(id, incoming);
                    write.write_all(&frame(&ServerMessage::Connection(id))?).await?;
                    let relay = Arc::downgrade(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(UNCLAIMED).await;
                        if let Some(relay) = relay.upgrade()
                            && relay.lock().remove(&id).is_some()
                        {
                            tracing::info!("relay: connection {id} was never taken; dropped");
                        }
                    });
                }
            }
        }
    }

    /// Joins public connection `id` to this client connection.
    async fn hand_over(&self, control: Framed, id: Uuid) -> Result<(), WireError> {
        let Some(mut public) = self.lock().remove(&id) else {
            return Ok(());
        };
        let (mut client, early) = control.into_parts();
        public.write_all(&early).await?;
        tokio::io::copy_bidirectional(&mut client, &mut public).await?;
        Ok(())
    }

    /// A listener on the asked port, or on any free port of the range for 0.
    async fn open_port(&self, port: u16) -> Result<TcpListener, String> {
        let ip = self.config.tunnels;
        let range = &self.config.ports;
        if port > 0 {
            if !range.contains(&port) {
                return Err("client port number not in allowed range".into());
            }
            return TcpListener::bind((ip, port))
                .await
                .map_err(|e| format!("cannot open port {port}: {e}"));
        }
        if *range == ALL_PORTS {
            return TcpListener::bind((ip, 0))
                .await
                .map_err(|e| format!("cannot open a port: {e}"));
        }
        let span = u32::from(range.end() - range.start()) + 1;
        let start = (Uuid::new_v4().as_u128() % u128::from(span)) as u32;
        for step in 0..span.min(150) {
            let offset = (start + step) % span;
            let Ok(candidate) = u16::try_from(u32::from(*range.start()) + offset) else {
                continue;
            };
            if let Ok(listener) = TcpListener::bind((ip, candidate)).await {
                return Ok(listener);
            }
        }
        Err("failed to find an available port".into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, TcpStream>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}
