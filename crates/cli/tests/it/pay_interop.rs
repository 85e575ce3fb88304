//! `agora pay` pays x402 servers that no one here wrote, on the devnet: the official
//! TypeScript v2 middleware (`@x402/express` 2.27), the legacy v1 middleware
//! (`x402-express` 1.2) and the official Python SDK's Flask middleware (`x402`
//! 2.25), each settling through `agora facilitator` with its own HTTP facilitator
//! client. For each: exit 0, the body printed, the payee's USDC up by exactly the
//! price (read from the chain), and the ledger row settled with the tx. The servers
//! are small scripts in `tools/` over packages that `scripts/setup` installs; a
//! missing tool skips locally and fails in CI (`CI` set).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::U256;
use devnet::Devnet;
use tokio::process::{Child, Command};

/// The price every server asks, in USDC's atomic units (0.001 USDC).
const PRICE: u64 = 1000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn agora(home: &Path) -> Command {
    testkit::process::agora(env!("CARGO_BIN_EXE_agora"), home)
}

/// Which official server to run.
#[derive(Clone, Copy, Debug)]
enum Server {
    /// `tools/node/server_v2.mjs`: `@x402/express` 2.27.
    TypeScriptV2,
    /// `tools/node/server_v1.mjs`: `x402-express` 1.2.
    TypeScriptV1,
    /// `tools/python/server.py`: `x402` 2.25's Flask middleware.
    PythonFlask,
}

impl Server {
    /// What its one paid route answers as `server`.
    fn name(self) -> &'static str {
        match self {
            Server::TypeScriptV2 => "@x402/express",
            Server::TypeScriptV1 => "x402-express",
            Server::PythonFlask => "x402 flask",
        }
    }
}

/// The server's command line, or why it cannot run here.
fn server_command(server: Server) -> Result<Command, String> {
    let root = root();
    let (program, script, network) = match server {
        Server::TypeScriptV2 => (
            which("node").ok_or("node is not on PATH")?,
            root.join("tools/node/server_v2.mjs"),
            "eip155:84532",
        ),
        Server::TypeScriptV1 => (
            which("node").ok_or("node is not on PATH")?,
            root.join("tools/node/server_v1.mjs"),
            "base-sepolia",
        ),
        Server::PythonFlask => (
            root.join("tools/.venv/bin/python"),
            root.join("tools/python/server.py"),
            "eip155:84532",
        ),
    };
    if !program.is_file() {
        return Err(format!("{} is missing", program.display()));
    }
    let package = match server {
        Server::TypeScriptV2 => root.join("tools/node_modules/@x402/express/package.json"),
        Server::TypeScriptV1 => root.join("tools/node_modules/x402-express/package.json"),
        Server::PythonFlask => {
            let lib = root.join("tools/.venv/lib");
            let site = std::fs::read_dir(&lib)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(Result::ok)
                .map(|e| e.path().join("site-packages/flask/__init__.py"));
            site.unwrap_or(lib)
        }
    };
    if !package.is_file() {
        return Err(format!("{} is missing", package.display()));
    }
    let mut command = Command::new(program);
    command
        .arg(script)
        .args(["--network", network])
        .current_dir(root.join("tools"))
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A running `agora facilitator` and what it printed at startup.
struct Facilitator {
    _child: Child,
    url: String,
}

async fn start_facilitator(chain: &Devnet, dir: &Path) -> Facilitator {
    let key = testkit::process::account_key_file(dir, "facilitator.key", chain, 0);
    let mut command = agora(&dir.join("facilitator"));
    command
        .args(["facilitator", "--json", "--listen", "127.0.0.1:0"])
        .args([
            "--rpc",
            chain.rpc_url(),
            "--key-file",
            key.to_str().unwrap(),
        ])
        .stderr(Stdio::piped());
    let (child, started, _rest) = testkit::process::spawn(command, Duration::from_secs(60)).await;
    Facilitator {
        _child: child,
        url: started["url"].as_str().unwrap().to_string(),
    }
}

async fn run(home: &Path, args: &[&str]) -> testkit::process::Output {
    testkit::process::run(agora(home), args, None).await
}

/// Runs one official server on a fresh devnet and pays it once with `agora pay`.
async fn pays(server: Server) {
    let command = match server_command(server) {
        Ok(command) => command,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{server:?} cannot run in CI: {why} (scripts/setup installs it)")
        }
        Err(why) => {
            eprintln!("skipping {server:?}: {why} (run scripts/setup)");
            return;
        }
    };
    let chain = testkit::chain::devnet(3).await;
    let (buyer, payee) = (&chain.accounts()[1], chain.accounts()[2].address());
    let dir = tempfile::tempdir().unwrap();
    let facilitator = start_facilitator(&chain, dir.path()).await;

    let mut command = command;
    command.args([
        "--port",
        "0",
        "--facilitator",
        &facilitator.url,
        "--pay-to",
        &payee.to_checksum(None),
        "--price",
        &PRICE.to_string(),
    ]);
    let (_server, ready, _rest) = testkit::process::spawn(command, Duration::from_secs(60)).await;
    let url = format!(
        "{}{}",
        ready["url"].as_str().unwrap(),
        ready["route"].as_str().unwrap()
    );

    let home = dir.path().join("buyer");
    let key = testkit::process::key_file(dir.path(), "buyer.key", buyer.private_key(), 0o600);
    testkit::process::default_wallet(agora(&home), &key).await;

    let before = chain.usdc_balance(payee).await.unwrap();
    let paid = run(&home, &["pay", &url, "--max", "0.01", "--json"]).await;
    assert_eq!(
        paid.code,
        Some(0),
        "{server:?}: agora pay failed:\n{}\n{}",
        paid.stdout,
        paid.stderr
    );
    let json = paid.json();
    assert_eq!(json["status"], 200, "{json}");
    assert_eq!(
        json["body"],
        serde_json::json!({"paid": true, "server": server.name()}),
        "{server:?}: the body is printed: {json}"
    );
    let tx = json["receipt"]["tx"].as_str().unwrap().to_string();
    assert!(tx.starts_with("0x") && tx.len() == 66, "{json}");
    assert_eq!(json["receipt"]["amountAtomic"], PRICE.to_string(), "{json}");
    assert_eq!(json["receipt"]["network"], "base-sepolia", "{json}");
    assert_eq!(
        json["receipt"]["payer"],
        buyer.address().to_checksum(None),
        "{json}"
    );

    let after = chain.usdc_balance(payee).await.unwrap();
    assert_eq!(
        after - before,
        U256::from(PRICE),
        "{server:?}: the payee got exactly the price"
    );

    let spent = run(&home, &["wallet", "spent", "--json"]).await;
    assert_eq!(spent.code, Some(0), "{}", spent.stderr);
    let rows = spent.json()["entries"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "settled", "{rows:?}");
    assert_eq!(rows[0]["tx"], tx.as_str(), "{rows:?}");
    eprintln!(
        "{server:?} paid: body {} tx {tx}, payee +{} atomic USDC",
        json["body"],
        after - before
    );
}

#[tokio::test]
async fn pays_the_official_typescript_v2_server() {
    pays(Server::TypeScriptV2).await;
}

#[tokio::test]
async fn pays_the_legacy_typescript_v1_server() {
    pays(Server::TypeScriptV1).await;
}

#[tokio::test]
async fn pays_the_official_python_flask_server() {
    pays(Server::PythonFlask).await;
}
