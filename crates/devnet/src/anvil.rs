//! Finding, starting and stopping the anvil process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{CHAIN_ID, DevAccount, DevnetConfig, DevnetError};

/// How long anvil may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `scripts/setup` installs the anvil binary, relative to the project root.
const PROJECT_ANVIL_DIRS: &[&str] = &[
    "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
    "tools/node_modules/@foundry-rs/anvil-linux-arm64/bin/anvil",
    "tools/node_modules/@foundry-rs/anvil-darwin-arm64/bin/anvil",
    "tools/node_modules/@foundry-rs/anvil-darwin-amd64/bin/anvil",
    "tools/node_modules/.bin/anvil",
];

/// Finds anvil: `$AGORA_ANVIL`, then `PATH`, then the project's `tools/` install
/// (searched upwards from the working directory, the executable and this crate).
pub fn find_anvil() -> Result<PathBuf, DevnetError> {
    if let Some(path) = std::env::var_os("AGORA_ANVIL") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(DevnetError::Start(format!(
                "AGORA_ANVIL points to {}, which is not a file",
                path.display()
            )))
        };
    }
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&paths)
            .map(|dir| dir.join("anvil"))
            .find(|candidate| candidate.is_file())
    {
        return Ok(found);
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    starts
        .iter()
        .flatten()
        .flat_map(|start| start.ancestors())
        .flat_map(|dir| PROJECT_ANVIL_DIRS.iter().map(move |rel| dir.join(rel)))
        .find(|candidate| candidate.is_file())
        .ok_or(DevnetError::AnvilNotFound)
}

/// A running anvil, killed when dropped and (on Linux) when its parent dies.
pub(crate) struct AnvilProcess {
    child: Child,
    port: u16,
    accounts: Vec<DevAccount>,
    _state: tempfile::TempDir,
}

impl AnvilProcess {
    pub(crate) async fn spawn(binary: &Path, config: &DevnetConfig) -> Result<Self, DevnetError> {
        let state = tempfile::tempdir()
            .map_err(|e| DevnetError::Start(format!("cannot create a temp dir: {e}")))?;
        let config_out = state.path().join("anvil.json");
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port"])
            .arg(config.port.to_string())
            .args(["--chain-id", &CHAIN_ID.to_string()])
            .args(["--accounts", &config.accounts.to_string()])
            .args(["--balance", &config.eth_per_account.to_string()])
            .arg("--config-out")
            .arg(&config_out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| DevnetError::Start(format!("cannot run {}: {e}", binary.display())))?;
        let port = match tokio::time::timeout(START_TIMEOUT, listening_port(&mut child)).await {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(DevnetError::Start(format!(
                    "no listening address within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
        };
        let accounts = read_accounts(&config_out)?;
        Ok(Self {
            child,
            port,
            accounts,
            _state: state,
        })
    }

    pub(crate) fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    pub(crate) async fn stop(mut self) {
        if self.child.start_kill().is_ok() {
            let _ = self.child.wait().await;
        }
    }

    pub(crate) async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!("anvil exited ({status})"),
            Err(e) => format!("lost track of anvil: {e}"),
        }
    }
}

/// Reads anvil's output until it says where it listens; keeps draining it afterwards
/// so a full pipe never blocks the chain.
async fn listening_port(child: &mut Child) -> Result<u16, DevnetError> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| DevnetError::Start("no stdout".into()))?;
    let stderr = child.stderr.take();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| DevnetError::Start(e.to_string()))?
    {
        if let Some(port) = line
            .strip_prefix("Listening on 127.0.0.1:")
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            if let Some(stderr) = stderr {
                tokio::spawn(async move {
                    let mut err_lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = err_lines.next_line().await {
                        tracing::debug!(target: "anvil", "{line}");
                    }
                });
            }
            return Ok(port);
        }
        seen.push(line);
    }
    let mut message = String::from("anvil exited before listening");
    if let Some(mut stderr) = stderr {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        seen.extend(text.lines().map(str::to_string));
    }
    if let Some(last) = seen.iter().rev().find(|l| !l.trim().is_empty()) {
        message.push_str(": ");
        message.push_str(last);
    }
    Err(DevnetError::Start(message))
}

fn read_accounts(config_out: &Path) -> Result<Vec<DevAccount>, DevnetError> {
    #[derive(serde::Deserialize)]
    struct AnvilConfig {
        private_keys: Vec<String>,
    }
    let text = std::fs::read_to_string(config_out)
        .map_err(|e| DevnetError::Start(format!("anvil wrote no account file: {e}")))?;
    let parsed: AnvilConfig = serde_json::from_str(&text)
        .map_err(|e| DevnetError::Start(format!("unreadable anvil account file: {e}")))?;
    parsed
        .private_keys
        .iter()
        .map(|key| {
            key.parse::<PrivateKeySigner>()
                .map(DevAccount::new)
                .map_err(|e| DevnetError::Start(format!("anvil gave a bad key: {e}")))
        })
        .collect()
}

/// Asks Linux to SIGTERM anvil when the thread that started it dies, so a killed test
/// or CLI never leaves a chain behind.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
    // the parent; it is the only call made between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
