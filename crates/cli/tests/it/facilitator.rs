//! `agora facilitator` as an operator runs it, against a real devnet: agora's HTTP
//! facilitator client and the official Python x402 package verify and settle through
//! it, bad requests and unsafe key files are refused with what to type, and it stops
//! cleanly on SIGINT.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use devnet::Devnet;
use facilitator::store::SettlementStatus;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use x402::{Facilitator, FacilitatorRequest, HttpFacilitator, Network, PaymentRequirements};

const PRICE: u64 = 1000;

fn agora() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    command
        .kill_on_drop(true)
        .env_remove("AGORA_FACILITATOR_KEY");
    command
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn start_chain() -> Devnet {
    testkit::chain::devnet(3).await
}

/// A running `agora facilitator --json` and its startup line.
struct Running {
    child: Child,
    started: Value,
    stdout_rest: testkit::process::Rest,
}

impl Running {
    fn url(&self) -> &str {
        self.started["url"].as_str().unwrap()
    }

    /// Sends SIGINT and returns the exit status and everything printed after startup.
    async fn interrupt(mut self) -> (std::process::ExitStatus, String, String) {
        let pid = self.child.id().unwrap().to_string();
        let killed = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the facilitator exits after SIGINT")
            .unwrap();
        let mut rest = String::new();
        while let Some(line) = self.stdout_rest.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (status, rest, stderr)
    }
}

/// Starts `agora facilitator --json --listen 127.0.0.1:0` with `args` and reads its line.
async fn spawn_facilitator(mut command: Command, args: &[&str]) -> Running {
    command
        .args(["facilitator", "--json", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped());
    let (child, started, stdout_rest) =
        testkit::process::spawn(command, Duration::from_secs(60)).await;
    Running {
        child,
        started,
        stdout_rest,
    }
}

fn requirement(chain: &Devnet, pay_to: Address) -> PaymentRequirements {
    testkit::pay::requirement(chain, pay_to, 60)
}

/// A v2 facilitator request for a payment signed by agora's EIP-3009 code.
fn signed_request(buyer: &devnet::DevAccount, req: &PaymentRequirements) -> FacilitatorRequest {
    testkit::pay::request(&buyer.signer(), req)
}

#[tokio::test]
async fn serves_verify_and_settle_to_the_http_client_and_stops_on_sigint() {
    let chain = start_chain().await;
    let (gas, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::process::key_file(dir.path(), "facilitator.key", gas.private_key(), 0o600);
    let db = dir.path().join("state/journal.db");
    let running = spawn_facilitator(
        agora(),
        &[
            "--rpc",
            chain.rpc_url(),
            "--key-file",
            key.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    )
    .await;

    let started = &running.started.clone();
    let listen = started["listen"].as_str().unwrap().to_string();
    assert!(listen.starts_with("127.0.0.1:"), "{started}");
    assert_ne!(listen, "127.0.0.1:0", "the real bound port is printed");
    assert_eq!(running.url(), format!("http://{listen}"));
    assert_eq!(
        started["signer"].as_str().unwrap(),
        gas.address().to_checksum(None),
        "the signer address, checksummed"
    );
    assert_eq!(started["networks"], serde_json::json!(["eip155:84532"]));
    assert_eq!(started["db"].as_str().unwrap(), db.to_str().unwrap());
    let key_hex = gas.private_key().to_string();
    assert!(!started.to_string().contains(&key_hex[2..]), "key leaked");
    assert!(db.is_file(), "the journal is created at --db");

    let client = HttpFacilitator::new(running.url()).unwrap();
    let supported = client.supported().await.unwrap();
    assert!(
        supported.supports("exact", &Network::BASE_SEPOLIA),
        "{supported:?}"
    );

    let req = requirement(&chain, seller.address());
    let request = signed_request(buyer, &req);
    let buyer_before = chain.usdc_balance(buyer.address()).await.unwrap();
    let seller_before = chain.usdc_balance(seller.address()).await.unwrap();

    let verified = client.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    assert_eq!(verified.payer, Some(buyer.address()));
    let settled = client.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert!(settled.transaction.is_some(), "{settled:?}");
    assert_eq!(settled.payer, Some(buyer.address()));
    assert_eq!(settled.network, Network::BASE_SEPOLIA);
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    assert_eq!(
        buyer_before - chain.usdc_balance(buyer.address()).await.unwrap(),
        U256::from(PRICE)
    );

    // The same authorization again answers the original receipt and moves nothing.
    let replay = client.settle(&request).await.unwrap();
    assert!(replay.success, "{replay:?}");
    assert_eq!(replay.transaction, settled.transaction);
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap() - seller_before,
        U256::from(PRICE)
    );

    // Malformed requests: 400 with a JSON error body.
    let http = reqwest::Client::new();
    for (path, body) in [
        ("verify", "{not json"),
        ("settle", "{not json"),
        ("verify", r#"{"x402Version":2}"#),
    ] {
        let response = http
            .post(format!("{}/{path}", running.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "/{path} {body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
    let health = http
        .get(format!("{}/health", running.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let (status, rest, stderr) = running.interrupt().await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(rest.is_empty(), "--json prints one line only: {rest}");
    assert!(!stderr.contains(&key_hex[2..]), "key leaked on stderr");
    assert!(
        reqwest::get(format!("http://{listen}/health"))
            .await
            .is_err(),
        "still listening after SIGINT"
    );
    chain.stop().await;
}

#[tokio::test]
async fn a_key_file_others_can_read_is_refused_with_the_chmod_to_type() {
    let dir = tempfile::tempdir().unwrap();
    let secret = B256::repeat_byte(0x42);
    let key = testkit::process::key_file(dir.path(), "open.key", secret, 0o644);
    let out = agora()
        .args(["facilitator", "--rpc", "http://127.0.0.1:9"])
        .arg("--key-file")
        .arg(&key)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0644"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("4242424242"), "key leaked: {stderr}");
    assert!(out.stdout.is_empty());

    // A group-readable file is refused too; a key that is not hex is not echoed.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = agora()
        .args(["facilitator", "--rpc", "http://127.0.0.1:9"])
        .arg("--key-file")
        .arg(&key)
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "hunter2-not-a-key").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = agora()
        .args(["facilitator", "--rpc", "http://127.0.0.1:9"])
        .arg("--key-file")
        .arg(&garbage)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("64 hex digits"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // No key at all names both ways to give one.
    let out = agora()
        .args(["facilitator", "--rpc", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--key-file") && stderr.contains("AGORA_FACILITATOR_KEY"),
        "{stderr}"
    );
}

#[tokio::test]
async fn networks_are_checked_against_the_rpcs_and_state_defaults_to_agora_home() {
    let chain = start_chain().await;
    let gas = &chain.accounts()[0];
    let home = tempfile::tempdir().unwrap();
    let agora_home = home.path().join("nested/agora-home");

    // A network no --rpc serves: the error says which --rpc to add.
    let out = agora()
        .env("AGORA_FACILITATOR_KEY", gas.private_key().to_string())
        .args(["facilitator", "--rpc", chain.rpc_url(), "--network", "base"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--network base (eip155:8453)"), "{stderr}");
    assert!(stderr.contains("Add --rpc URL"), "{stderr}");
    assert!(stderr.contains("Base node"), "{stderr}");
    assert!(
        stderr.contains("eip155:84532"),
        "lists what is served: {stderr}"
    );

    // A dead RPC names itself.
    let out = agora()
        .env("AGORA_FACILITATOR_KEY", gas.private_key().to_string())
        .args(["facilitator", "--rpc", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--rpc http://127.0.0.1:9"), "{stderr}");

    // The key from the environment, the journal under $AGORA_HOME.
    let mut command = agora();
    command
        .env("AGORA_FACILITATOR_KEY", gas.private_key().to_string())
        .env("AGORA_HOME", &agora_home);
    let running = spawn_facilitator(
        command,
        &["--rpc", chain.rpc_url(), "--network", "base-sepolia"],
    )
    .await;
    let db = agora_home.join("facilitator.db");
    assert_eq!(
        running.started["db"].as_str().unwrap(),
        db.to_str().unwrap()
    );
    assert!(db.is_file());
    assert_eq!(
        std::fs::metadata(&agora_home).unwrap().permissions().mode() & 0o777,
        0o700,
        "AGORA_HOME is created private"
    );
    assert_eq!(
        running.started["networks"],
        serde_json::json!(["eip155:84532"])
    );
    assert_eq!(
        running.started["signer"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        gas.address()
    );

    // One process per journal: a second facilitator on the same home is refused.
    let out = agora()
        .env("AGORA_FACILITATOR_KEY", gas.private_key().to_string())
        .env("AGORA_HOME", &agora_home)
        .args([
            "facilitator",
            "--rpc",
            chain.rpc_url(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another process is using the facilitator database")
            && stderr.contains("AGORA_HOME"),
        "the refusal says what holds the journal and what to change: {stderr}"
    );

    let (status, _, stderr) = running.interrupt().await;
    assert!(status.success(), "{status}: {stderr}");
    chain.stop().await;
}

#[tokio::test]
async fn official_python_x402_facilitator_client_verifies_and_settles_through_agora() {
    let root = project_root();
    let python = root.join("tools/.venv/bin/python");
    assert!(
        python.is_file(),
        "the official Python x402 package is not installed ({} is missing): run scripts/setup",
        python.display()
    );
    let chain = start_chain().await;
    let (gas, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut command = agora();
    command.env("AGORA_FACILITATOR_KEY", gas.private_key().to_string());
    let running = spawn_facilitator(
        command,
        &[
            "--rpc",
            chain.rpc_url(),
            "--db",
            dir.path().join("f.db").to_str().unwrap(),
        ],
    )
    .await;
    let req = requirement(&chain, seller.address());
    let seller_before = chain.usdc_balance(seller.address()).await.unwrap();
    let buyer_before = chain.usdc_balance(buyer.address()).await.unwrap();

    let out = Command::new(&python)
        .arg(root.join("tools/python/facilitator_interop.py"))
        .args(["--facilitator", running.url(), "--requirements"])
        .arg(serde_json::to_string(&req).unwrap())
        .env("X402_PRIVATE_KEY", buyer.private_key().to_string())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "interop script failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();

    let kinds = result["supported"]["kinds"].as_array().unwrap();
    assert!(
        kinds
            .iter()
            .any(|k| k["network"] == "eip155:84532" && k["scheme"] == "exact"),
        "{result}"
    );
    assert_eq!(
        result["payment"]["accepted"],
        serde_json::to_value(&req).unwrap()
    );
    assert_eq!(result["verify"]["isValid"], true, "{result}");
    assert_eq!(
        result["verify"]["payer"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        buyer.address()
    );
    let settle = &result["settle"];
    assert_eq!(settle["success"], true, "{result}");
    assert_eq!(settle["network"], "eip155:84532");
    assert_eq!(settle["amount"], PRICE.to_string());
    let tx: B256 = settle["transaction"].as_str().unwrap().parse().unwrap();
    testkit::chain::assert_succeeded(&chain, tx).await;
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    assert_eq!(
        buyer_before - chain.usdc_balance(buyer.address()).await.unwrap(),
        U256::from(PRICE)
    );

    let (status, _, stderr) = running.interrupt().await;
    assert!(status.success(), "{status}: {stderr}");
    chain.stop().await;
}

#[tokio::test]
async fn a_facilitator_killed_between_broadcast_and_receipt_resolves_it_on_restart() {
    let chain = start_chain().await;
    let dir = tempfile::tempdir().unwrap();
    let key =
        testkit::process::key_file(dir.path(), "key", chain.accounts()[0].private_key(), 0o600);
    let db = dir.path().join("facilitator.db");
    let args = [
        "--rpc",
        chain.rpc_url(),
        "--key-file",
        key.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ];
    let seller = chain.accounts()[1].address();
    let req = requirement(&chain, seller);
    let request = signed_request(&chain.accounts()[2], &req);
    let seller_before = chain.usdc_balance(seller).await.unwrap();

    let mut first = spawn_facilitator(agora(), &args).await;
    chain.set_automine(false).await.unwrap();
    let client = HttpFacilitator::new(first.url()).unwrap();
    let in_flight = {
        let request = request.clone();
        tokio::spawn(async move { client.settle(&request).await })
    };
    let journal = facilitator::store::Store::inspect(&db).unwrap();
    let mut sent = None;
    for _ in 0..300 {
        let rows = journal.journal().unwrap();
        if let Some(row) = rows.iter().find(|r| r.status == SettlementStatus::Sent) {
            sent = row.tx_hash;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hash = sent.expect("the settlement is journaled as sent while its block is not mined");
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the killed facilitator gave no answer"
    );

    chain.mine().await.unwrap();
    chain.set_automine(true).await.unwrap();
    let second = spawn_facilitator(agora(), &args).await;
    let rows = journal.journal().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status, rows[0].tx_hash),
        (SettlementStatus::Confirmed, Some(hash))
    );
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE)
    );

    let again = HttpFacilitator::new(second.url())
        .unwrap()
        .settle(&request)
        .await
        .unwrap();
    assert!(again.success, "settling again answers the original receipt");
    assert_eq!(again.transaction, Some(hash));
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    let (status, _, _) = second.interrupt().await;
    assert!(status.success());
    chain.stop().await;
}

/// An API key file as an operator makes one (`openssl rand -hex 32`), mode 0600.
const API_KEY: &str = "5f0c1d9b7a3e4f20a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f801";

/// Issue 21, M6: a hostile client that can reach `agora facilitator --api-key-file`
/// cannot make it verify, settle or release without the bearer key (401), `/supported`
/// stays open, and a client with the key is served; a zero-value authorization, which
/// would only burn the facilitator's gas, is refused even with the key.
#[tokio::test]
async fn verify_settle_and_release_require_the_bearer_key() {
    let chain = start_chain().await;
    let (gas, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::process::key_file(dir.path(), "facilitator.key", gas.private_key(), 0o600);
    let api = testkit::process::key_file(dir.path(), "api.key", API_KEY, 0o600);
    let db = dir.path().join("journal.db");
    let running = spawn_facilitator(
        agora(),
        &[
            "--rpc",
            chain.rpc_url(),
            "--key-file",
            key.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--api-key-file",
            api.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(running.started["apiKey"], true, "{}", running.started);
    let base = running.url().to_string();
    let req = requirement(&chain, seller.address());
    let request = signed_request(buyer, &req);
    let http = testkit::http();

    for path in ["verify", "settle", "release"] {
        for bearer in [None, Some("Bearer not-the-key-at-all-0000"), Some(API_KEY)] {
            let mut call = http.post(format!("{base}/{path}")).json(&request);
            if let Some(value) = bearer {
                call = call.header("authorization", value);
            }
            let response = call.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with {bearer:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["reason"], "unauthorized", "{body}");
            assert!(
                body["hint"]
                    .as_str()
                    .unwrap()
                    .contains("--facilitator-api-key-file"),
                "{body}"
            );
        }
    }
    let supported = http.get(format!("{base}/supported")).send().await.unwrap();
    assert_eq!(supported.status(), 200, "/supported stays open");
    let without = HttpFacilitator::new(&base).unwrap();
    assert!(
        matches!(
            without.settle(&request).await,
            Err(x402::FacilitatorError::BadResponse { status: 401, .. })
        ),
        "agora's client without the key is refused too"
    );
    let before = chain.usdc_balance(seller.address()).await.unwrap();

    let with = HttpFacilitator::new(&base)
        .unwrap()
        .with_bearer_key(&format!("{API_KEY}\n"))
        .unwrap();
    let verified = with.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let settled = with.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap(),
        before + U256::from(PRICE)
    );

    // Zero value: signed by the attacker for nothing, refused at verify and settle.
    let mut free = req.clone();
    free.amount = U256::ZERO;
    let zero = signed_request(buyer, &free);
    let verified = with.verify(&zero).await.unwrap();
    assert!(!verified.is_valid);
    assert!(
        verified
            .invalid_message
            .as_deref()
            .unwrap_or_default()
            .contains("zero-value"),
        "{verified:?}"
    );
    let settled = with.settle(&zero).await.unwrap();
    assert!(!settled.success, "{settled:?}");
    let journal = facilitator::store::Store::inspect(&db)
        .unwrap()
        .journal()
        .unwrap();
    assert_eq!(
        journal.len(),
        1,
        "only the real payment was sent: {journal:?}"
    );
    running.interrupt().await;
}

/// Issue 21, M6: the API key file is checked like a settlement key, and a facilitator
/// reachable from other machines without one refuses to start, naming the flag.
#[tokio::test]
async fn an_exposed_facilitator_needs_an_api_key_file_that_only_its_owner_reads() {
    let chain = start_chain().await;
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::process::account_key_file(dir.path(), "facilitator.key", &chain, 0);
    let readable = testkit::process::key_file(dir.path(), "api.key", API_KEY, 0o644);
    let short = testkit::process::key_file(dir.path(), "short.key", "hunter2", 0o600);
    let start = |extra: Vec<String>| {
        let mut command = agora();
        command
            .args(["facilitator", "--rpc", chain.rpc_url()])
            .args(extra)
            .stdin(Stdio::null());
        async move { command.output().await.unwrap() }
    };
    let with_key = |more: &[String]| {
        let mut args = vec!["--key-file".to_string(), key.display().to_string()];
        args.extend(more.iter().cloned());
        args
    };
    let out = start(with_key(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--api-key-file".into(),
        readable.display().to_string(),
    ]))
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("chmod 600 {}", readable.display())),
        "{err}"
    );
    let out = start(with_key(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--api-key-file".into(),
        short.display().to_string(),
    ]))
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("openssl rand -hex 32"), "{err}");
    assert!(!err.contains("hunter2"), "the key is never printed: {err}");
    // Refused first of all. No --key-file here, so even a facilitator without this
    // check stops at the missing key and never opens an address beyond loopback.
    let out = start(vec!["--listen".into(), "0.0.0.0:0".into()]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--api-key-file") && err.contains("--no-auth"),
        "{err}"
    );
}

/// Issue 21, M6, end to end: a seller's `agora serve --facilitator URL
/// --facilitator-api-key-file F` pays through a facilitator that requires the key;
/// the same daemon without the key file charges nobody and serves nothing.
#[tokio::test]
async fn a_gateway_with_the_api_key_file_is_paid_through_an_authenticated_facilitator() {
    let chain = start_chain().await;
    let (gas, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let dir = tempfile::tempdir().unwrap();
    let key = testkit::process::key_file(dir.path(), "facilitator.key", gas.private_key(), 0o600);
    let api = testkit::process::key_file(dir.path(), "api.key", API_KEY, 0o600);
    let running = spawn_facilitator(
        agora(),
        &[
            "--rpc",
            chain.rpc_url(),
            "--key-file",
            key.to_str().unwrap(),
            "--db",
            dir.path().join("journal.db").to_str().unwrap(),
            "--api-key-file",
            api.to_str().unwrap(),
        ],
    )
    .await;
    let upstream = testkit::loopback::serve(testkit::upstream::echo()).await;
    let seller_address = seller.address().to_string();
    let http = testkit::http();

    for with_key in [false, true] {
        let home = dir.path().join(format!("home-{with_key}"));
        let mut command = testkit::process::agora(env!("CARGO_BIN_EXE_agora"), &home);
        command.args([
            "serve",
            "--foreground",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--facilitator",
            running.url(),
        ]);
        if with_key {
            command.arg("--facilitator-api-key-file").arg(&api);
        }
        let (daemon, started) = testkit::daemon::spawn(command).await;
        let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
        let mut sell = testkit::process::agora(env!("CARGO_BIN_EXE_agora"), &home);
        sell.args([
            "sell",
            "http",
            "echo",
            "--upstream",
            &upstream.url(),
            "--per-request",
            "0.001",
            "--pay-to",
            &seller_address,
            "--network",
            "base-sepolia",
            "--wait",
            "30",
        ]);
        testkit::process::ok(sell, &[]).await;

        let url = format!("{gateway}/services/echo/hello");
        let challenge = http.get(&url).send().await.unwrap();
        assert_eq!(challenge.status(), 402);
        let required: x402::wire::PaymentRequired =
            x402::header::decode(challenge.headers()["payment-required"].to_str().unwrap())
                .unwrap();
        let header = testkit::pay::header(&buyer.signer(), &required.accepts[0]);
        let before = chain.usdc_balance(seller.address()).await.unwrap();
        let paid = http
            .get(&url)
            .header("payment-signature", header)
            .send()
            .await
            .unwrap();
        let after = chain.usdc_balance(seller.address()).await.unwrap();
        if with_key {
            assert_eq!(paid.status(), 200);
            assert_eq!(after, before + U256::from(PRICE));
        } else {
            assert_ne!(paid.status(), 200, "served without settling");
            assert_eq!(after, before, "nobody was charged");
        }
        testkit::daemon::stop(daemon).await;
    }
    running.interrupt().await;
}
