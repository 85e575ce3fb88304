//! The bore client and relay over real loopback sockets: HTTP through a public port,
//! secrets, the public port closing with its client, and the supervisor reconnecting
//! after the relay is killed.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use testkit::loopback;
use testkit::upstream::echo;
use tunnel::bore::{self, ALL_PORTS, BoreServer, ClientConfig, Relay, RelayConfig, Secret};
use tunnel::{Files, Provider, State, Supervisor, TunnelLog};

async fn relay(
    secret: Option<&str>,
    control: SocketAddr,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let relay = Relay::bind(RelayConfig {
        control,
        tunnels: "127.0.0.1".parse().unwrap(),
        ports: ALL_PORTS,
        secret: secret.map(Secret::new),
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
async fn a_wrong_or_missing_secret_is_refused_with_the_flag_to_fix_it() {
    let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (control, _relay) = relay(Some("right"), "127.0.0.1:0".parse().unwrap()).await;
    let wrong = bore::connect(client(control, Some("wrong"), local)).await;
    let err = wrong.err().unwrap().to_string();
    assert!(err.contains("--bore-secret"), "{err}");
    let missing = bore::connect(client(control, None, local)).await;
    let err = missing.err().unwrap().to_string();
    assert!(err.contains("needs a secret"), "{err}");

    let (open, _relay) = relay(None, "127.0.0.1:0".parse().unwrap()).await;
    let unexpected = bore::connect(client(open, Some("extra"), local)).await;
    let err = unexpected.err().unwrap().to_string();
    assert!(err.contains("drop --bore-secret"), "{err}");
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
