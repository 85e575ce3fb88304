//! The long-running `agora` children the CLI tests start: `agora serve` on a devnet
//! (the seller's daemon), `agora index`, and stopping one as a service manager does,
//! so every test starts and stops them the same way.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::process;

/// How long a daemon may take to print its startup line.
const STARTUP: Duration = Duration::from_secs(30);

/// Spawns `command` (stderr discarded) and returns it with its JSON startup line;
/// for long-running commands whose later output no test reads.
pub async fn spawn(mut command: Command) -> (Child, Value) {
    command.stderr(Stdio::null());
    let (child, started, _) = process::spawn(command, STARTUP).await;
    (child, started)
}

/// `agora serve --foreground --json` on the chain at `rpc`, settling with the key in
/// `key_file`, plus `extra` flags: a seller's daemon with its embedded facilitator.
/// `command` is a [`process::agora`] command (a test may have set more environment on
/// it); `AGORA_FACILITATOR_URL` is removed so the daemon uses its own facilitator.
/// Returns the child and its startup line (`gatewayUrl`, …).
pub async fn serve(
    mut command: Command,
    rpc: &str,
    key_file: &Path,
    extra: &[&str],
) -> (Child, Value) {
    command
        .env_remove("AGORA_FACILITATOR_URL")
        .args([
            "serve",
            "--foreground",
            "--json",
            "--rpc",
            rpc,
            "--key-file",
        ])
        .arg(key_file)
        .args(extra);
    spawn(command).await
}

/// `agora index` on loopback reading the chain at `rpc`; returns the child and the
/// URL of its public API.
pub async fn index(mut command: Command, rpc: &str) -> (Child, String) {
    command.args(["index", "--json", "--listen", "127.0.0.1:0", "--rpc", rpc]);
    let (child, started) = spawn(command).await;
    let url = started["url"].as_str().unwrap().to_string();
    (child, url)
}

/// Sends SIGTERM, as a service manager does, and waits for the child to exit, so a
/// test sees what a clean stop leaves behind.
pub async fn stop(mut child: Child) {
    let pid = child.id().expect("the daemon is still running");
    let sent = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill {pid} failed");
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the daemon stops on SIGTERM")
        .unwrap();
}
