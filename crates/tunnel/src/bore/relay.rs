//! A bore-compatible relay (`agora tunnel relay`), for a seller who has a public VPS:
//! clients connect to its control port and each gets a public port whose connections
//! are handed to the client on demand. A client's public port closes as soon as its
//! control connection ends, so a stopped tunnel stops being reachable at once.
//!
//! Unlike bore's own server the control address is configurable (bore fixes 7835),
//! which lets several relays run side by side, in tests among others.
//!
//! The relay faces the internet, so nothing a peer does may stop it or take another
//! seller's port: an `accept()` error (EMFILE, ENFILE, ECONNABORTED) is logged and
//! backed off, never the end of a loop; every connection takes a slot under caps per
//! source IP (handshakes, public connections), per client, per tunnel and in total
//! ([`Limits`]), and one over a cap is closed at once; parked and carried connections time out; and a public port stays reserved
//! for the client identity (the secret it proved, else its IP) that held it, for a
//! while after it was released, so a reconnecting seller gets its URL back and no one
//! else can answer at it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use super::wire::{ClientMessage, Framed, Secret, ServerMessage, WireError};

/// How often the relay tells a client it is still there (bore's rhythm).
const HEARTBEAT: Duration = Duration::from_millis(500);

/// The first pause after a failed `accept()`; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The longest pause after failed `accept()`s (short of the client's 5 s silence).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Caps that keep one peer, or one flood, from taking the relay's file descriptors
/// or another seller's traffic. A connection over any cap is closed at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Control connections still in their handshake (challenge, then Hello or Accept),
    /// per client IP. Past it a connection is bounded by the other caps: a Hello by
    /// [`Limits::tunnels_per_client`], an Accept by the parked connection it takes.
    /// A seller's own client opens one such connection per public connection it
    /// carries (at most 64 at once per tunnel), so this stays above that.
    pub handshakes_per_ip: usize,
    /// Tunnels one client identity may hold at once.
    pub tunnels_per_client: usize,
    /// Public connections (parked or carried) from one source IP, over all tunnels.
    pub public_per_ip: usize,
    /// Public connections (parked or carried) of one tunnel.
    pub public_per_tunnel: usize,
    /// Public connections parked (not yet taken by their client) in the whole relay.
    pub parked_total: usize,
    /// Connections of any kind in the whole relay.
    pub total: usize,
    /// How long a parked public connection waits for its client to take it.
    pub unclaimed: Duration,
    /// A carried connection with no byte either way for this long is closed.
    pub idle: Duration,
    /// How long a released public port stays reserved for the identity that held it.
    pub reserved_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshakes_per_ip: 128,
            tunnels_per_client: 8,
            public_per_ip: 128,
            public_per_tunnel: 256,
            parked_total: 1024,
            total: 4096,
            unclaimed: Duration::from_secs(10),
            // A research run may answer after many silent minutes.
            idle: Duration::from_secs(30 * 60),
            reserved_for: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What the relay listens on and whom it lets in.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The control address clients dial.
    pub control: SocketAddr,
    /// The address public ports are opened on.
    pub tunnels: IpAddr,
    /// Public ports clients may be given.
    pub ports: RangeInclusive<u16>,
    /// Clients must prove one of these secrets (none: anyone may open a port). Give
    /// each seller its own: the secret is the identity a released port is kept for.
    pub secrets: Vec<Secret>,
    /// Connection caps and timeouts.
    pub limits: Limits,
}

/// Every port a client may be given: the whole unprivileged range.
pub const ALL_PORTS: RangeInclusive<u16> = 1024..=65535;

/// Who holds a tunnel: the index of the secret it proved, or its IP on a relay
/// without secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Identity {
    Secret(usize),
    Address(IpAddr),
}

/// What a slot is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Total,
    Parked,
    ControlIp(IpAddr),
    PublicIp(IpAddr),
    Tunnel(u16),
    Tunnels(Identity),
}

/// A public port's owner, held (`until` None) or released and kept until `until`.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    owner: Identity,
    until: Option<Instant>,
}

struct Shared {
    config: RelayConfig,
    waiting: Mutex<HashMap<Uuid, Parked>>,
    counts: Mutex<HashMap<Key, usize>>,
    reserved: Mutex<HashMap<u16, Reservation>>,
}

/// A public connection waiting for its client, with the slots it holds.
struct Parked {
    stream: TcpStream,
    slots: Vec<Slot>,
    _parked: Slot,
}

/// One counted place under a cap, given back when dropped.
struct Slot {
    shared: std::sync::Weak<Shared>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut counts = lock(&shared.counts);
            if let Some(n) = counts.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&self.key);
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
                counts: Mutex::new(HashMap::new()),
                reserved: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The control address actually bound (port 0 resolved).
    pub fn control_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until dropped: a failed `accept()` (out of file descriptors, a
    /// connection aborted) is logged and retried after a pause, never the end. Every
    /// connection's task belongs to this future: dropping it (the relay stops) closes
    /// every tunnel and public port.
    pub async fn run(self) -> std::io::Result<()> {
        let mut connections = tokio::task::JoinSet::new();
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            backoff.failed("the control port", &e).await;
                            continue;
                        }
                    };
                    backoff.reset();
                    let (Some(total), Some(handshake)) = (
                        self.shared.take(&[Key::Total]),
                        self.shared.take(&[Key::ControlIp(peer.ip())]),
                    ) else {
                        tracing::debug!("relay: control connection from {peer} over a cap; closed");
                        continue;
                    };
                    let shared = self.shared.clone();
                    connections.spawn(async move {
                        if let Err(e) = shared.handle(stream, peer.ip(), handshake).await {
                            tracing::info!("relay client {peer}: {e}");
                        }
                        drop(total);
                    });
                }
                Some(_) = connections.join_next() => {}
            }
        }
    }
}

/// Pauses after failed `accept()`s, doubling up to [`ACCEPT_BACKOFF_MAX`], so a relay
/// out of file descriptors does not spin while the kernel keeps the port readable.
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
}

impl Backoff {
    async fn failed(&mut self, what: &str, error: &std::io::Error) {
        let pause = self
            .pause
            .map_or(ACCEPT_BACKOFF, |p| (p * 2).min(ACCEPT_BACKOFF_MAX));
        self.pause = Some(pause);
        tracing::warn!("relay: accepting on {what} failed ({error}); retrying in {pause:?}");
        tokio::time::sleep(pause).await;
    }

    fn reset(&mut self) {
        self.pause = None;
    }
}

fn frame(message: &ServerMessage) -> Result<Vec<u8>, WireError> {
    let mut bytes = serde_json::to_vec(message).map_err(|e| WireError::Protocol(e.to_string()))?;
    bytes.push(0);
    Ok(bytes)
}

impl Shared {
    /// One slot under each of `keys`, all or none.
    fn take(self: &Arc<Self>, keys: &[Key]) -> Option<Vec<Slot>> {
        let limits = &self.config.limits;
        let mut counts = lock(&self.counts);
        for key in keys {
            let max = match key {
                Key::Total => limits.total,
                Key::Parked => limits.parked_total,
                Key::ControlIp(_) => limits.handshakes_per_ip,
                Key::PublicIp(_) => limits.public_per_ip,
                Key::Tunnel(_) => limits.public_per_tunnel,
                Key::Tunnels(_) => limits.tunnels_per_client,
            };
            if counts.get(key).copied().unwrap_or(0) >= max {
                return None;
            }
        }
        Some(
            keys.iter()
                .map(|key| {
                    *counts.entry(*key).or_insert(0) += 1;
                    Slot {
                        shared: Arc::downgrade(self),
                        key: *key,
                    }
                })
                .collect(),
        )
    }

    /// Serves one control connection; `handshake` (its place under
    /// [`Limits::handshakes_per_ip`]) is given back once the handshake is over.
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: IpAddr,
        handshake: Vec<Slot>,
    ) -> Result<(), WireError> {
        let mut control = Framed::new(stream);
        let identity = if self.config.secrets.is_empty() {
            Identity::Address(peer)
        } else {
            let challenge = Uuid::new_v4();
            control.send(&ServerMessage::Challenge(challenge)).await?;
            let proven = match control.recv_handshake::<ClientMessage>().await? {
                Some(ClientMessage::Authenticate(answer)) => self
                    .config
                    .secrets
                    .iter()
                    .position(|secret| secret.accepts(&challenge, &answer)),
                _ => None,
            };
            let Some(index) = proven else {
                control
                    .send(&ServerMessage::Error("invalid secret".into()))
                    .await?;
                return Ok(());
            };
            Identity::Secret(index)
        };
        let first = control.recv_handshake::<ClientMessage>().await?;
        drop(handshake);
        match first {
            Some(ClientMessage::Hello(port)) => self.tunnel(control, port, identity).await,
            Some(ClientMessage::Accept(id)) => self.hand_over(control, id).await,
            Some(ClientMessage::Authenticate(_)) | None => Ok(()),
        }
    }

    /// Opens a public port for one client and tells it of each connection, until the
    /// client goes away; the port then stays reserved for `who` a while.
    async fn tunnel(
        self: &Arc<Self>,
        mut control: Framed,
        port: u16,
        who: Identity,
    ) -> Result<(), WireError> {
        let Some(_tunnel_slot) = self.take(&[Key::Tunnels(who)]) else {
            let most = self.config.limits.tunnels_per_client;
            control
                .send(&ServerMessage::Error(format!(
                    "this client already holds {most} tunnels, the most this relay allows; close one first"
                )))
                .await?;
            return Ok(());
        };
        let public = match self.open_port(port, who).await {
            Ok(listener) => listener,
            Err(e) => {
                control.send(&ServerMessage::Error(e)).await?;
                return Ok(());
            }
        };
        let given = public.local_addr()?.port();
        let _held = Held {
            shared: self.clone(),
            port: given,
        };
        control.send(&ServerMessage::Hello(given)).await?;
        tracing::info!("relay: public port {given} open");
        let (stream, _) = control.into_parts();
        let (mut read, mut write) = stream.into_split();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut sink = [0u8; 64];
        let mut backoff = Backoff::default();
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
                    let (incoming, from) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            backoff.failed(&format!("public port {given}"), &e).await;
                            continue;
                        }
                    };
                    backoff.reset();
                    let keys = [Key::Total, Key::PublicIp(from.ip()), Key::Tunnel(given)];
                    let parked = self.take(&[Key::Parked]).and_then(|mut one| one.pop());
                    let (Some(slots), Some(parked)) = (self.take(&keys), parked) else {
                        tracing::debug!("relay: public connection from {from} to port {given} over a cap; closed");
                        continue;
                    };
                    let id = Uuid::new_v4();
                    lock(&self.waiting).insert(id, Parked {
                        stream: incoming,
                        slots,
                        _parked: parked,
                    });
                    write.write_all(&frame(&ServerMessage::Connection(id))?).await?;
                    let relay = Arc::downgrade(self);
                    let unclaimed = self.config.limits.unclaimed;
                    tokio::spawn(async move {
                        tokio::time::sleep(unclaimed).await;
                        if let Some(relay) = relay.upgrade()
                            && lock(&relay.waiting).remove(&id).is_some()
                        {
                            tracing::info!("relay: connection {id} was never taken; dropped");
                        }
                    });
                }
            }
        }
    }

    /// Joins public connection `id` to this client connection, until both ends close
    /// or neither sends a byte for [`Limits::idle`].
    async fn hand_over(&self, control: Framed, id: Uuid) -> Result<(), WireError> {
        let Some(parked) = lock(&self.waiting).remove(&id) else {
            return Ok(());
        };
        let Parked {
            stream: public,
            slots: _slots,
            _parked,
        } = parked;
        drop(_parked);
        let (client, early) = control.into_parts();
        let last = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut public = Watched::new(public, last.clone(), started);
        let mut client = Watched::new(client, last.clone(), started);
        public.write_all(&early).await?;
        let idle = self.config.limits.idle;
        let watchdog = async {
            loop {
                let quiet = started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return;
                }
                tokio::time::sleep(idle - quiet).await;
            }
        };
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut public) => { copied?; }
            () = watchdog => tracing::info!("relay: connection {id} idle for {idle:?}; closed"),
        }
        Ok(())
    }

    /// A listener on the asked port, or on any free port of the range for 0; never a
    /// port reserved for another identity. The port is then reserved for `who`.
    async fn open_port(&self, port: u16, who: Identity) -> Result<TcpListener, String> {
        let ip = self.config.tunnels;
        let range = &self.config.ports;
        if port > 0 {
            if !range.contains(&port) {
                return Err("client port number not in allowed range".into());
            }
            if !self.reserve(port, who) {
                return Err(format!(
                    "port {port} is reserved for the client that held it; ask for any port (0)"
                ));
            }
            return TcpListener::bind((ip, port)).await.map_err(|e| {
                self.unreserve(port, who);
                format!("cannot open port {port}: {e}")
            });
        }
        for _ in 0..150 {
            let listener = if *range == ALL_PORTS {
                TcpListener::bind((ip, 0))
                    .await
                    .map_err(|e| format!("cannot open a port: {e}"))?
            } else {
                let span = u32::from(range.end() - range.start()) + 1;
                let offset = (Uuid::new_v4().as_u128() % u128::from(span)) as u32;
                let Ok(candidate) = u16::try_from(u32::from(*range.start()) + offset) else {
                    continue;
                };
                match TcpListener::bind((ip, candidate)).await {
                    Ok(listener) => listener,
                    Err(_) => continue,
                }
            };
            let Ok(given) = listener.local_addr().map(|a| a.port()) else {
                continue;
            };
            if self.reserve(given, who) {
                return Ok(listener);
            }
        }
        Err("failed to find an available port".into())
    }

    /// Takes `port` for `who` unless another identity holds it or keeps it reserved;
    /// expired reservations are forgotten on the way.
    fn reserve(&self, port: u16, who: Identity) -> bool {
        let now = Instant::now();
        let mut reserved = lock(&self.reserved);
        reserved.retain(|_, r| r.until.is_none_or(|until| until > now));
        match reserved.get(&port) {
            Some(r) if r.owner != who => false,
            Some(r) if r.until.is_none() => false,
            _ => {
                reserved.insert(
                    port,
                    Reservation {
                        owner: who,
                        until: None,
                    },
                );
                true
            }
        }
    }

    /// Gives `port` up at once (it was never opened).
    fn unreserve(&self, port: u16, who: Identity) {
        let mut reserved = lock(&self.reserved);
        if reserved.get(&port).is_some_and(|r| r.owner == who) {
            reserved.remove(&port);
        }
    }
}

/// A tunnel's public port: when the tunnel ends, the port stays reserved for its
/// owner for [`Limits::reserved_for`].
struct Held {
    shared: Arc<Shared>,
    port: u16,
}

impl Drop for Held {
    fn drop(&mut self) {
        let now = Instant::now();
        let until = now
            .checked_add(self.shared.config.limits.reserved_for)
            .or_else(|| now.checked_add(Limits::default().reserved_for));
        let mut reserved = lock(&self.shared.reserved);
        match until {
            Some(until) => {
                if let Some(r) = reserved.get_mut(&self.port) {
                    r.until = Some(until);
                }
            }
            None => {
                reserved.remove(&self.port);
            }
        }
    }
}

/// A stream that notes, in milliseconds since `started`, when a byte last moved.
struct Watched {
    inner: TcpStream,
    last: Arc<AtomicU64>,
    started: Instant,
}

impl Watched {
    fn new(inner: TcpStream, last: Arc<AtomicU64>, started: Instant) -> Self {
        Self {
            inner,
            last,
            started,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
