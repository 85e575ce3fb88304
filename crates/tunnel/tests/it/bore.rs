//! The bore client and relay over real loopback sockets: HTTP through a public port,
//! secrets, the public port closing with its client, and the supervisor reconnecting
//! after the relay is killed. Then the relay and client under attack, as a hostile
//! peer would do it from other loopback addresses (127.0.0.2, 127.0.0.3): floods past
//! the caps are shed while a seller's tunnel keeps serving, a released port is not
//! handed to another client, and a relay announcing connections without end does not
//! get more than the client's cap.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use testkit::loopback;
use testkit::upstream::echo;
use tunnel::bore::wire::{ClientMessage, Framed, ServerMessage};
use tunnel::bore::{
    self, ALL_PORTS, BoreServer, ClientConfig, Limits, MAX_CARRIED, Relay, RelayConfig, Secret,
};
use tunnel::{Files, Provider, State, Supervisor, TunnelLog};

async fn relay(
    secret: Option<&str>,
    control: SocketAddr,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let secrets: Vec<&str> = secret.into_iter().collect();
    relay_with(&secrets, control, Limits::default()).await
}

/// A relay on loopback accepting any of `secrets`, with `limits`.
async fn relay_with(
    secrets: &[&str],
    control: SocketAddr,
    limits: Limits,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let relay = Relay::bind(RelayConfig {
        control,
        tunnels: "127.0.0.1".parse().unwrap(),
        ports: ALL_PORTS,
        secrets: secrets.iter().map(|s| Secret::new(s)).collect(),
        limits,
    })
    .await
    .unwrap();
    let addr = relay.control_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = relay.run().await;
    });
    (addr, task)
}

fn client(control: SocketAddr, secret: Option<&str>, local: SocketAddr) -> ClientConfig {
    ClientConfig {
        server: BoreServer {
            host: "127.0.0.1".into(),
            port: control.port(),
        },
        secret: secret.map(Secret::new),
        local,
        port: 0,
    }
}

async fn refused(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
}

#[tokio::test]
async fn http_reaches_the_local_server_through_the_relay_and_stops_with_the_client() {
    let upstream = loopback::serve(echo()).await;
    let local: SocketAddr = format!("127.0.0.1:{}", upstream.port()).parse().unwrap();
    let (control, _relay) = relay(Some("s3cret"), "127.0.0.1:0".parse().unwrap()).await;
    let connected = bore::connect(client(control, Some("s3cret"), local))
        .await
        .unwrap();
    let url = connected.public_url();
    let port = connected.remote_port();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let serving = tokio::spawn(connected.serve());
    for round in 0..3 {
        let answer = testkit::http()
            .post(format!("{url}/echo"))
            .body(format!("round {round}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().contains("served"));
    }
    serving.abort();
    testkit::eventually("the public port to close", Duration::from_secs(5), || {
        refused(port)
    })
    .await;
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_naming_which() {
    let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (control, _relay) = relay(Some("right"), "127.0.0.1:0".parse().unwrap()).await;
    let wrong = bore::connect(client(control, Some("wrong"), local)).await;
    let err = wrong.err().unwrap();
    assert!(
        matches!(err, bore::BoreError::SecretRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("refused the secret"), "{err}");
    let missing = bore::connect(client(control, None, local)).await;
    let err = missing.err().unwrap();
    assert!(matches!(err, bore::BoreError::SecretNeeded(_)), "{err}");
    assert!(err.to_string().contains("needs a secret"), "{err}");

    let (open, _relay) = relay(None, "127.0.0.1:0".parse().unwrap()).await;
    let unexpected = bore::connect(client(open, Some("extra"), local)).await;
    let err = unexpected.err().unwrap();
    assert!(matches!(err, bore::BoreError::SecretNotAsked(_)), "{err}");
    assert!(err.to_string().contains("asked for no secret"), "{err}");
}

#[tokio::test]
async fn the_supervisor_reconnects_after_the_relay_dies_and_stops_when_unwanted() {
    let upstream = loopback::serve(echo()).await;
    let local: SocketAddr = format!("127.0.0.1:{}", upstream.port()).parse().unwrap();
    let (control, first) = relay(None, "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let supervisor = Supervisor::spawn(
        Provider::Bore {
            server: BoreServer {
                host: "127.0.0.1".into(),
                port: control.port(),
            },
            secret: None,
        },
        local,
        Files {
            state: dir.path().join("tunnel.json"),
            log: TunnelLog::new(dir.path().join("tunnel.log")),
        },
    );
    let mut status = supervisor.status();
    assert_eq!(status.borrow().state, State::Off);
    supervisor.set_wanted(true);
    let up = testkit::watched(&mut status, "up", Duration::from_secs(10), |s| {
        s.state == State::Up
    })
    .await;
    let url = up.url.clone().unwrap();
    assert_eq!(testkit::status_of(&format!("{url}/echo")).await, 200);

    first.abort();
    let _ = first.await;
    testkit::watched(&mut status, "down", Duration::from_secs(10), |s| {
        s.state == State::Down
    })
    .await;
    let saved = tunnel::state::load(&dir.path().join("tunnel.json"))
        .unwrap()
        .unwrap();
    assert_ne!(saved.state, State::Up);

    // Back on the same control port: the client asks for its old public port again.
    let (_, _second) = relay(None, control).await;
    let back = testkit::watched(&mut status, "up", Duration::from_secs(30), |s| {
        s.state == State::Up
    })
    .await;
    assert!(back.restarts >= 1, "{back:?}");
    assert_eq!(
        back.url.as_deref(),
        Some(url.as_str()),
        "the old port was free"
    );
    assert_eq!(testkit::status_of(&format!("{url}/echo")).await, 200);

    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    supervisor.set_wanted(false);
    testkit::watched(&mut status, "off", Duration::from_secs(10), |s| {
        s.state == State::Off
    })
    .await;
    testkit::eventually("the public port to close", Duration::from_secs(5), || {
        refused(port)
    })
    .await;
    let log = std::fs::read_to_string(dir.path().join("tunnel.log")).unwrap();
    assert!(log.contains("bore up at"), "{log}");
    assert!(log.contains("bore down"), "{log}");
    assert!(log.contains("bore stopped"), "{log}");
    supervisor.shutdown().await;
}

/// A TCP connection to `to` from the loopback address `source` (another "host").
async fn from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the relay closed `stream` (end of stream or reset) rather than keeping
/// it: a kept one shows bytes (the challenge) or nothing until the bound.
async fn closed_by_relay(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A raw control connection from `source` that asks for `port` after proving
/// `secret`; the relay's answer to the Hello.
async fn hello_from(
    source: &str,
    control: SocketAddr,
    secret: Option<&str>,
    port: u16,
) -> (Framed, ServerMessage) {
    let mut framed = Framed::new(from(source, control).await);
    if let Some(secret) = secret {
        let Some(ServerMessage::Challenge(challenge)) = framed.recv().await.unwrap() else {
            panic!("no challenge");
        };
        framed
            .send(&ClientMessage::Authenticate(
                Secret::new(secret).answer(&challenge),
            ))
            .await
            .unwrap();
    }
    framed.send(&ClientMessage::Hello(port)).await.unwrap();
    let answer = framed.recv().await.unwrap().unwrap();
    (framed, answer)
}

const SELLER_A: &str = "seller-a-0123456789abcdef";
const SELLER_B: &str = "seller-b-0123456789abcdef";

#[tokio::test]
async fn a_flood_past_the_caps_is_shed_while_the_sellers_tunnel_keeps_serving() {
    let upstream = loopback::serve(echo()).await;
    let local: SocketAddr = format!("127.0.0.1:{}", upstream.port()).parse().unwrap();
    let limits = Limits {
        // Above the seller's own carried connections (the 4 of the public flood and
        // the buyer's), so only the flood is over it.
        handshakes_per_ip: 8,
        public_per_ip: 4,
        ..Limits::default()
    };
    let (control, _relay) = relay_with(&[SELLER_A], "127.0.0.1:0".parse().unwrap(), limits).await;
    let connected = bore::connect(client(control, Some(SELLER_A), local))
        .await
        .unwrap();
    let url = connected.public_url();
    let public: SocketAddr = format!("127.0.0.1:{}", connected.remote_port())
        .parse()
        .unwrap();
    let _serving = tokio::spawn(connected.serve());

    // The control port: 8 handshakes from one address are kept (each is challenged),
    // the ninth is closed at once.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut kept = from("127.0.0.2", control).await;
        assert!(
            !closed_by_relay(&mut kept).await,
            "a connection under the cap is kept"
        );
        held.push(kept);
    }
    let mut over = from("127.0.0.2", control).await;
    assert!(
        closed_by_relay(&mut over).await,
        "the ninth control connection is shed"
    );

    // The public port: 4 silent connections from one address are carried, the fifth
    // is closed at once.
    for _ in 0..4 {
        held.push(from("127.0.0.3", public).await);
    }
    let mut over = from("127.0.0.3", public).await;
    assert!(
        closed_by_relay(&mut over).await,
        "the fifth public connection is shed"
    );

    // Meanwhile the seller's tunnel serves everyone else.
    for round in 0..3 {
        let answer = testkit::http()
            .post(format!("{url}/echo"))
            .body(format!("round {round}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    drop(held);
}

/// A relay with `limits` and a client on it that opens a port and never takes a
/// connection, so every public one parks; the public address.
async fn lazy_tunnel(limits: Limits) -> (SocketAddr, Framed, tokio::task::JoinHandle<()>) {
    let (control, relay) = relay_with(&[], "127.0.0.1:0".parse().unwrap(), limits).await;
    let (lazy, answer) = hello_from("127.0.0.1", control, None, 0).await;
    let ServerMessage::Hello(port) = answer else {
        panic!("{answer:?}");
    };
    (format!("127.0.0.1:{port}").parse().unwrap(), lazy, relay)
}

#[tokio::test]
async fn parked_connections_are_capped_and_time_out_giving_their_places_back() {
    // Capped: three park (each announced to the client), the fourth is shed at once.
    let (public, mut lazy, _relay) = lazy_tunnel(Limits {
        parked_total: 3,
        ..Limits::default()
    })
    .await;
    let mut parked = Vec::new();
    for _ in 0..3 {
        parked.push(from("127.0.0.2", public).await);
        loop {
            match lazy.recv::<ServerMessage>().await.unwrap().unwrap() {
                ServerMessage::Connection(_) => break,
                ServerMessage::Heartbeat => {}
                other => panic!("{other:?}"),
            }
        }
    }
    let mut over = from("127.0.0.2", public).await;
    assert!(
        closed_by_relay(&mut over).await,
        "a fourth parked connection is shed"
    );
    let mut byte = [0u8; 1];
    for stream in &mut parked {
        assert!(
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte))
                .await
                .is_err(),
            "parked ones wait for their client"
        );
    }

    // Timed out: an untaken connection is closed, and its place is free again.
    let (public, _lazy, _relay) = lazy_tunnel(Limits {
        parked_total: 1,
        unclaimed: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut first = from("127.0.0.2", public).await;
    assert!(
        closed_by_relay(&mut first).await,
        "an untaken connection times out"
    );
    let mut again = from("127.0.0.2", public).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), again.read(&mut byte))
            .await
            .is_err(),
        "parked again, not shed"
    );
}

#[tokio::test]
async fn a_released_port_is_kept_for_its_secret_and_refused_to_another_sellers() {
    let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (control, _relay) = relay_with(
        &[SELLER_A, SELLER_B],
        "127.0.0.1:0".parse().unwrap(),
        Limits::default(),
    )
    .await;
    let a = bore::connect(client(control, Some(SELLER_A), local))
        .await
        .unwrap();
    let port = a.remote_port();
    drop(a);
    testkit::eventually("A's public port to close", Duration::from_secs(5), || {
        refused(port)
    })
    .await;

    // Seller B, with its own valid secret, asks for A's old port: refused.
    let mut b = client(control, Some(SELLER_B), local);
    b.port = port;
    let err = bore::connect(b.clone()).await.err().unwrap().to_string();
    assert!(err.contains(&format!("port {port} is reserved")), "{err}");
    // B gets another port; A gets its own back.
    b.port = 0;
    let other = bore::connect(b).await.unwrap();
    assert_ne!(other.remote_port(), port);
    let mut back = client(control, Some(SELLER_A), local);
    back.port = port;
    assert_eq!(bore::connect(back).await.unwrap().remote_port(), port);
}

#[tokio::test]
async fn on_a_relay_without_secrets_a_released_port_is_kept_for_its_address() {
    let (control, _relay) =
        relay_with(&[], "127.0.0.1:0".parse().unwrap(), Limits::default()).await;
    let (a, answer) = hello_from("127.0.0.1", control, None, 0).await;
    let ServerMessage::Hello(port) = answer else {
        panic!("{answer:?}");
    };
    drop(a);
    testkit::eventually("A's public port to close", Duration::from_secs(5), || {
        refused(port)
    })
    .await;
    let (_b, answer) = hello_from("127.0.0.2", control, None, port).await;
    assert!(
        matches!(&answer, ServerMessage::Error(e) if e.contains("reserved")),
        "{answer:?}"
    );
    let (_a, answer) = hello_from("127.0.0.1", control, None, port).await;
    assert_eq!(answer, ServerMessage::Hello(port));
}

#[tokio::test]
async fn a_hostile_relay_gets_no_more_than_the_clients_cap_of_carried_connections() {
    let upstream = loopback::serve(echo()).await;
    let local: SocketAddr = format!("127.0.0.1:{}", upstream.port()).parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = listener.local_addr().unwrap();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepts.clone();
    let announced = MAX_CARRIED + 16;
    tokio::spawn(async move {
        let (first, _) = listener.accept().await.unwrap();
        let mut first = Framed::new(first);
        let _hello: Option<ClientMessage> = first.recv().await.unwrap();
        first.send(&ServerMessage::Hello(40000)).await.unwrap();
        for _ in 0..announced {
            first
                .send(&ServerMessage::Connection(uuid::Uuid::new_v4()))
                .await
                .unwrap();
        }
        first
            .send(&ServerMessage::Error("that is all".into()))
            .await
            .unwrap();
        // Every Accept connection is held open, so each carried one stays carried.
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let connected = bore::connect(client(control, None, local)).await.unwrap();
    // serve returns once it has read the last message, every announcement decided.
    let ended = connected.serve().await;
    assert!(ended.to_string().contains("that is all"), "{ended}");
    testkit::eventually("the carried connections", Duration::from_secs(10), || {
        let n = accepts.load(std::sync::atomic::Ordering::SeqCst);
        async move { n >= MAX_CARRIED }
    })
    .await;
    // Give any extra carrier the time to show up (there should be none).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        accepts.load(std::sync::atomic::Ordering::SeqCst),
        MAX_CARRIED,
        "{announced} announced"
    );
}
