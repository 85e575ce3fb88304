//! Tunnels through the `agora` binary as a seller uses them: `agora tunnel relay` on
//! loopback standing in for a public VPS, `agora serve --tunnel bore` on a devnet
//! (embedded facilitator, ERC-8004 registry), and cloudflared replaced by a stand-in
//! executable (tools/node/cloudflared_standin.mjs) because the Cloudflare edge cannot
//! be reached here. Every URL claim is checked where buyers see it: the 402, the
//! catalog, the registration file and the on-chain agent URI.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::agora;
use alloy::primitives::U256;
use devnet::Devnet;
use erc8004::IIdentityRegistry;
use serde_json::Value;
use testkit::daemon::{self, stop};
use testkit::loopback;
use testkit::process::{self, Output};
use testkit::upstream::echo;
use tokio::process::{Child, Command};

/// The relay's secret in these tests: long enough for agora to accept it.
const RELAY_SECRET: &str = "relay-secret-0123456789abcdef";

async fn ok(home: &Path, args: &[&str]) -> Output {
    process::ok(agora(home), args).await
}

/// `agora tunnel relay` on loopback; its control address.
async fn relay(home: &Path, control: u16, ports: Option<u16>) -> (Child, String) {
    let mut command = agora(home);
    let listen = format!("127.0.0.1:{control}");
    command
        .args(["tunnel", "relay", "--json", "--listen", &listen])
        .args(["--bind-tunnels", "127.0.0.1"])
        .env("AGORA_BORE_SECRET", RELAY_SECRET);
    if let Some(port) = ports {
        let port = port.to_string();
        command.args(["--min-port", &port, "--max-port", &port]);
    }
    let (child, started) = daemon::spawn(command).await;
    assert_eq!(started["secret"], true, "{started}");
    (child, started["control"].as_str().unwrap().to_string())
}

/// `agora serve --foreground` on `chain`, registering with account 1, with `extra`.
async fn serve(home: &Path, dir: &Path, chain: &Devnet, extra: &[&str]) -> (Child, Value) {
    let key = process::account_key_file(dir, "facilitator.key", chain, 0);
    let registry_key = process::account_key_file(dir, "registry.key", chain, 1);
    let mut command = agora(home);
    command.env("AGORA_BORE_SECRET", RELAY_SECRET);
    let mut flags = vec!["--registry-key-file", registry_key.to_str().unwrap()];
    flags.extend_from_slice(extra);
    daemon::serve(command, chain.rpc_url(), &key, &flags).await
}

async fn tunnel_status(home: &Path) -> Value {
    ok(home, &["tunnel", "status", "--json"]).await.json()
}

/// Waits until `agora tunnel status` says `state` (and, when given, a URL other than
/// `not`), returning the status.
async fn until_state(home: &Path, state: &str, not: Option<&str>) -> Value {
    testkit::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let status = tunnel_status(home).await;
            if status["state"] == state && not.is_none_or(|n| status["url"] != n) {
                Ok(status)
            } else {
                Err(format!("the tunnel never became {state}: {status}"))
            }
        },
    )
    .await
}

/// The `resource` a 402 at `url` names.
async fn resource_of(url: &str) -> String {
    let answer = testkit::http().get(url).send().await.unwrap();
    assert_eq!(answer.status(), 402, "{url}");
    let required = answer.headers()["payment-required"]
        .to_str()
        .unwrap()
        .to_string();
    let required: Value = x402::header::decode(&required).unwrap();
    required["resource"]["url"]
        .as_str()
        .or_else(|| required["accepts"][0]["resource"].as_str())
        .unwrap()
        .to_string()
}

async fn token_uri(chain: &Devnet) -> String {
    let registry = IIdentityRegistry::new(
        erc8004::identity_registry(&chain.network()).unwrap(),
        chain.provider().unwrap(),
    );
    registry.tokenURI(U256::ZERO).call().await.unwrap()
}

/// Waits until the on-chain agent URI is `uri`.
async fn until_token_uri(chain: &Devnet, uri: &str) {
    testkit::until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let now = token_uri(chain).await;
            if now == uri {
                Ok(())
            } else {
                Err(format!("the agent URI stayed {now}, expected {uri}"))
            }
        },
    )
    .await;
}

async fn sell_worker(home: &Path, upstream: &str, seller: &str) {
    let created = ok(
        home,
        &[
            "sell",
            "http",
            "worker",
            "--upstream",
            upstream,
            "--per-request",
            "0.001",
            "--pay-to",
            seller,
            "--wait",
            "30",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(created["ready"], true, "{created}");
}

async fn port_closed(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn bore_tunnel_end_to_end_through_a_loopback_relay() {
    let chain = testkit::chain::devnet(3).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let relay_home = dir.path().join("relay");
    let seller = chain.accounts()[1].address();
    let upstream = loopback::serve(echo()).await;
    let (relay, control) = relay(&relay_home, 0, None).await;
    let (daemon, started) = serve(
        &home,
        dir.path(),
        &chain,
        &["--tunnel", "bore", "--bore-server", &control],
    )
    .await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    assert_eq!(
        started["publicUrl"],
        gateway.as_str(),
        "no tunnel before an offer"
    );
    let idle = tunnel_status(&home).await;
    assert_eq!(idle["state"], "off", "{idle}");
    assert_eq!(idle["provider"], "bore");

    // 1. The first Ready offer brings the tunnel up, on the relay.
    sell_worker(&home, &upstream.url(), &seller.to_string()).await;
    let up = until_state(&home, "up", None).await;
    let public = up["url"].as_str().unwrap().to_string();
    assert!(public.starts_with("http://127.0.0.1:"), "{public}");
    assert_ne!(port_of(&public), port_of(&gateway));
    let mode = std::fs::metadata(home.join("tunnel.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // 2. The relay's URL is the public one everywhere, and the probe goes through it.
    let document = format!("{public}/.well-known/agent-registration.json");
    until_token_uri(&chain, &document).await;
    // `sell status` runs a whole pass first (one at a time), so the pass that sent
    // setAgentURI has also installed its documents by the time it answers.
    let status = ok(&home, &["sell", "status", "worker", "--json"])
        .await
        .json();
    assert_eq!(status["url"], format!("{public}/services/worker"));
    assert_eq!(status["tunnel"]["state"], "up", "{status}");
    assert_eq!(
        resource_of(&format!("{public}/services/worker/run")).await,
        format!("{public}/services/worker/run")
    );
    assert_eq!(
        resource_of(&format!("{gateway}/services/worker/run")).await,
        format!("{public}/services/worker/run"),
        "the gateway publishes the public URL even when reached directly"
    );
    let catalog: Value = testkit::get_json(&format!("{public}/api/services.json")).await;
    assert!(catalog.to_string().contains(&public), "{catalog}");
    let registration: Value = testkit::get_json(&document).await;
    assert!(
        registration
            .to_string()
            .contains(&format!("{public}/services/worker"))
    );
    let register = ok(&home, &["sell", "register", "--json"]).await.json();
    assert_eq!(register["agentUri"], document.as_str());
    let text = ok(&home, &["sell", "status", "worker"]).await.stdout;
    assert!(
        text.contains(&format!("Tunnel:       up at {public} (bore)")),
        "{text}"
    );
    let probe = ok(&home, &["sell", "probe", "worker", "--json"])
        .await
        .json();
    assert_eq!(probe["probe"]["passed"], true, "{probe}");
    assert_eq!(
        probe["probe"]["url"],
        format!("{public}/services/worker"),
        "{probe}"
    );

    // 3. A paid call through the relay settles on chain.
    let before = chain.usdc_balance(seller).await.unwrap();
    let buyer = process::account_key_file(dir.path(), "buyer.key", &chain, 2);
    let paid = ok(
        &home,
        &[
            "sell",
            "probe",
            "worker",
            "--paid",
            "--key-file",
            buyer.to_str().unwrap(),
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(paid["paid"]["status"], 200, "{paid}");
    assert_eq!(paid["paid"]["receipt"]["success"], true, "{paid}");
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - before,
        U256::from(1000)
    );

    // 4. The last offer deleted: the tunnel stops, the relay port closes, and the
    // registration URI follows the gateway's own URL.
    ok(&home, &["sell", "delete", "worker", "--yes"]).await;
    until_state(&home, "off", None).await;
    testkit::eventually(
        "the relay's public port to close",
        Duration::from_secs(10),
        || port_closed(port_of(&public)),
    )
    .await;
    until_token_uri(
        &chain,
        &format!("{gateway}/.well-known/agent-registration.json"),
    )
    .await;
    let register = ok(&home, &["sell", "register", "--json"]).await.json();
    assert_eq!(
        register["agentUri"],
        format!("{gateway}/.well-known/agent-registration.json")
    );

    stop(daemon).await;
    let saved: Value =
        serde_json::from_slice(&std::fs::read(home.join("tunnel.json")).unwrap()).unwrap();
    assert_eq!(saved["state"], "off", "{saved}");
    let after = ok(&home, &["tunnel", "status", "--json"]).await.json();
    assert_eq!(after["daemon"], false, "read from tunnel.json: {after}");
    let logs = ok(&home, &["tunnel", "logs", "-n", "20"]).await.stdout;
    assert!(
        logs.contains("bore up at") && logs.contains("bore stopped"),
        "{logs}"
    );
    stop(relay).await;
}

#[tokio::test]
async fn relay_crash_moves_the_url_into_402s_and_registration_with_a_new_set_agent_uri_tx() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let relay_home = dir.path().join("relay");
    let seller = chain.accounts()[1].address().to_string();
    let upstream = loopback::serve(echo()).await;
    let control = loopback::free_port();
    let first_port = loopback::free_port();
    let (first_relay, address) = relay(&relay_home, control, Some(first_port)).await;
    let (daemon, _) = serve(
        &home,
        dir.path(),
        &chain,
        &["--tunnel", "bore", "--bore-server", &address],
    )
    .await;
    sell_worker(&home, &upstream.url(), &seller).await;
    let up = until_state(&home, "up", None).await;
    let first = up["url"].as_str().unwrap().to_string();
    assert_eq!(port_of(&first), first_port);
    until_token_uri(
        &chain,
        &format!("{first}/.well-known/agent-registration.json"),
    )
    .await;
    let registered = ok(&home, &["sell", "register", "--json"]).await.json();
    let first_tx = registered["registrationTx"].clone();

    // 1. The relay is killed: the tunnel is down.
    let mut first_relay = first_relay;
    first_relay.kill().await.unwrap();
    let down = until_state(&home, "down", None).await;
    assert!(down["lastError"].is_string(), "{down}");

    // 2. The relay comes back handing out another port: the tunnel reconnects there.
    let second_port = loopback::free_port();
    let (second_relay, _) = relay(&relay_home, control, Some(second_port)).await;
    let back = until_state(&home, "up", Some(&first)).await;
    let second = back["url"].as_str().unwrap().to_string();
    assert_eq!(port_of(&second), second_port, "{back}");
    assert!(back["restarts"].as_u64().unwrap() >= 1, "{back}");

    // 3. The new URL reaches the 402s and the registration, with a new setAgentURI tx.
    let document = format!("{second}/.well-known/agent-registration.json");
    until_token_uri(&chain, &document).await;
    assert_eq!(
        resource_of(&format!("{second}/services/worker/x")).await,
        format!("{second}/services/worker/x")
    );
    let registered = ok(&home, &["sell", "register", "--json"]).await.json();
    assert_eq!(registered["agentUri"], document.as_str());
    assert!(registered["registrationTx"].is_string(), "{registered}");
    assert_ne!(
        registered["registrationTx"], first_tx,
        "a new setAgentURI tx"
    );
    let status = ok(&home, &["sell", "status", "worker", "--json"])
        .await
        .json();
    let updates = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("Registered True (URIUpdated)")
        })
        .count();
    assert_eq!(
        updates, 2,
        "to the first tunnel URL, then to the second: {status}"
    );

    // A stopped (paused) last offer takes the tunnel down too.
    ok(&home, &["sell", "stop", "worker", "--now"]).await;
    until_state(&home, "off", None).await;
    testkit::eventually(
        "the relay's public port to close",
        Duration::from_secs(10),
        || port_closed(second_port),
    )
    .await;
    stop(daemon).await;
    stop(second_relay).await;
}

fn standin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/node/cloudflared_standin.mjs")
}

#[tokio::test]
async fn cloudflared_standin_held_up_by_tunnel_start_restarts_after_a_crash_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut command = agora(&home);
    command.env("AGORA_CLOUDFLARED", standin()).args([
        "serve",
        "--foreground",
        "--json",
        "--tunnel",
        "cloudflared",
    ]);
    let (daemon, started) = daemon::spawn(command).await;
    assert!(started["gatewayUrl"].is_string(), "{started}");
    assert_eq!(tunnel_status(&home).await["state"], "off");

    // Held up by hand, with no offer at all.
    let held = ok(&home, &["tunnel", "start", "--json"]).await.json();
    assert_eq!(held["control"], "held up (agora tunnel start)", "{held}");
    assert_eq!(held["state"], "up", "start waits for the tunnel: {held}");
    let up = until_state(&home, "up", None).await;
    let url = up["url"].as_str().unwrap().to_string();
    assert!(url.ends_with("-standin.trycloudflare.com"), "{url}");
    let pid = up["pid"].as_u64().unwrap();

    // A crash: restarted with a new quick-tunnel name, published at once.
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let back = until_state(&home, "up", Some(&url)).await;
    assert_eq!(back["restarts"], 1, "{back}");
    assert_ne!(back["pid"].as_u64().unwrap(), pid);

    // Stopped by hand: the process ends and the gateway's own URL is public again.
    let second = back["pid"].as_u64().unwrap();
    let stopped = ok(&home, &["tunnel", "stop"]).await.stdout;
    assert!(stopped.contains("State:    off"), "{stopped}");
    assert!(
        stopped.contains("held down (agora tunnel stop)"),
        "{stopped}"
    );
    testkit::eventually("the stand-in to exit", Duration::from_secs(5), || async {
        !std::process::Command::new("kill")
            .args(["-0", &second.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    })
    .await;
    let logs = ok(&home, &["tunnel", "logs"]).await.stdout;
    assert!(
        logs.contains("Your quick Tunnel has been created"),
        "{logs}"
    );
    stop(daemon).await;
}

#[tokio::test]
async fn tunnel_flags_that_cannot_work_say_what_to_type() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let run = |args: &'static [&'static str], env: Option<(&'static str, PathBuf)>| {
        let mut command = agora(&home);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        process::run(command, args, None)
    };
    let bore = run(&["serve", "--foreground", "--tunnel", "bore"], None).await;
    bore.fails_saying(&["--bore-server HOST[:PORT]"]);
    let missing = run(
        &["serve", "--foreground", "--tunnel", "cloudflared"],
        Some(("AGORA_CLOUDFLARED", dir.path().join("nowhere"))),
    )
    .await;
    missing.fails_saying(&["AGORA_CLOUDFLARED"]);
    let named = run(
        &[
            "serve",
            "--foreground",
            "--tunnel",
            "cloudflared",
            "--tunnel-hostname",
            "api.example.com",
        ],
        Some(("AGORA_CLOUDFLARED", standin())),
    )
    .await;
    named.fails_saying(&["TUNNEL_TOKEN"]);
    let relay = run(
        &[
            "tunnel",
            "relay",
            "--min-port",
            "3000",
            "--max-port",
            "2000",
        ],
        None,
    )
    .await;
    relay.fails_saying(&["--min-port 20000"]);
    let nothing = run(&["tunnel", "status"], None).await;
    nothing.fails_saying(&["agora serve --tunnel"]);
}

#[tokio::test]
async fn tunnel_auto_picks_bore_with_a_relay_and_serves_without_a_tunnel_when_nothing_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare");
    let mut command = agora(&bare);
    command
        .env_remove("AGORA_CLOUDFLARED")
        .env("PATH", dir.path())
        .args(["serve", "--foreground", "--json", "--tunnel", "auto"]);
    let (daemon, _) = daemon::spawn(command).await;
    let none = tunnel_status(&bare).await;
    assert_eq!(none["configured"], false, "{none}");
    let text = ok(&bare, &["tunnel", "status"]).await.stdout;
    assert!(text.contains("--tunnel none"), "{text}");
    stop(daemon).await;

    let with_relay = dir.path().join("relay");
    let mut command = agora(&with_relay);
    command
        .env("AGORA_CLOUDFLARED", standin())
        .args(["serve", "--foreground", "--json", "--tunnel", "auto"])
        .args(["--bore-server", "127.0.0.1:9"]);
    let (daemon, _) = daemon::spawn(command).await;
    let picked = tunnel_status(&with_relay).await;
    assert_eq!(picked["provider"], "bore", "{picked}");
    assert_eq!(picked["state"], "off", "nothing is sold yet: {picked}");
    stop(daemon).await;

    let public = dir.path().join("public");
    let mut command = agora(&public);
    command
        .args(["serve", "--foreground", "--json", "--tunnel", "bore"])
        .args([
            "--bore-server",
            "127.0.0.1:9",
            "--public-url",
            "https://shop.example",
        ]);
    let (daemon, started) = daemon::spawn(command).await;
    assert_eq!(started["publicUrl"], "https://shop.example");
    assert_eq!(
        tunnel_status(&public).await["configured"],
        false,
        "--public-url wins"
    );
    stop(daemon).await;
}

#[tokio::test]
async fn a_relay_off_loopback_without_a_secret_or_with_a_weak_one_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("relay");
    // Refused before anything is bound, so nothing listens off loopback.
    let open = process::run(
        agora(&home),
        &["tunnel", "relay", "--listen", "0.0.0.0:0"],
        None,
    )
    .await;
    open.fails_saying(&["AGORA_BORE_SECRET", "openssl rand -hex 16"]);
    let mut weak = agora(&home);
    weak.env("AGORA_BORE_SECRET", "hunter2");
    let weak = process::run(weak, &["tunnel", "relay", "--listen", "127.0.0.1:0"], None).await;
    weak.fails_saying(&["AGORA_BORE_SECRET", "at least 16"]);
    // The seller's side refuses a weak secret the same way.
    let mut seller = agora(&dir.path().join("seller"));
    seller.env("AGORA_BORE_SECRET", "hunter2");
    let seller = process::run(
        seller,
        &[
            "serve",
            "--foreground",
            "--tunnel",
            "bore",
            "--bore-server",
            "127.0.0.1:9",
        ],
        None,
    )
    .await;
    seller.fails_saying(&["at least 16"]);
}

#[tokio::test]
async fn a_relay_out_of_file_descriptors_keeps_running_and_serves_a_tunnel_afterwards() {
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().unwrap();
    // The relay under a small descriptor limit (its own, set by the shell it runs
    // from), so a flood of a few dozen connections runs it out.
    let template = agora(&dir.path().join("relay"));
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"ulimit -n 40 && exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_agora"))
        .args(["tunnel", "relay", "--json", "--listen", "127.0.0.1:0"])
        .args(["--bind-tunnels", "127.0.0.1"])
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in template.as_std().get_envs() {
        match value {
            Some(v) => command.env(key, v),
            None => command.env_remove(key),
        };
    }
    command.env("AGORA_BORE_SECRET", RELAY_SECRET);
    let (mut relay, started, _rest) = process::spawn(command, Duration::from_secs(30)).await;
    let control: std::net::SocketAddr = started["control"].as_str().unwrap().parse().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(relay.stderr.take().unwrap()).lines();
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });

    // The flood, from another loopback address: more connections than descriptors.
    let mut flood = Vec::new();
    for _ in 0..60 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(control).await.unwrap());
    }
    testkit::eventually(
        "the relay to run out of descriptors",
        Duration::from_secs(20),
        || {
            let said = log.lock().unwrap().contains("Too many open files");
            async move { said }
        },
    )
    .await;
    assert!(
        relay.try_wait().unwrap().is_none(),
        "the relay exited:\n{}",
        log.lock().unwrap()
    );
    drop(flood);

    // A seller's tunnel through it afterwards serves a buyer.
    let upstream = loopback::serve(echo()).await;
    let local: std::net::SocketAddr = format!("127.0.0.1:{}", upstream.port()).parse().unwrap();
    let connected = testkit::until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            tunnel::bore::connect(tunnel::bore::ClientConfig {
                server: tunnel::bore::BoreServer {
                    host: "127.0.0.1".into(),
                    port: control.port(),
                },
                secret: Some(tunnel::bore::Secret::new(RELAY_SECRET)),
                local,
                port: 0,
            })
            .await
            .map_err(|e| e.to_string())
        },
    )
    .await;
    let url = connected.public_url();
    let _serving = tokio::spawn(connected.serve());
    assert_eq!(testkit::status_of(&format!("{url}/echo")).await, 200);
    assert!(relay.try_wait().unwrap().is_none(), "the relay still runs");
}
