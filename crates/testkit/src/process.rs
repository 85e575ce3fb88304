//! Child processes that announce themselves with one JSON line on stdout (`agora
//! serve`, `agora devnet`, `agora facilitator`), commands run to completion as a user
//! types them (`agora sell …`, `agora pay …`), and the 0600 key files they read.

use std::fmt::Display;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use devnet::Devnet;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// What a child prints after its startup line.
pub type Rest = Lines<BufReader<ChildStdout>>;

/// Reads `child`'s first stdout line (its stdout must be piped) within `within` and
/// parses it as JSON; the error says what came instead.
pub async fn startup_line(child: &mut Child, within: Duration) -> Result<(Value, Rest), String> {
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(within, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => return Err("it exited before its startup line".into()),
        Ok(Err(e)) => return Err(format!("reading its stdout failed: {e}")),
        Err(_) => return Err(format!("no startup line within {within:?}")),
    };
    let value = serde_json::from_str(&line).map_err(|e| format!("startup line {line:?}: {e}"))?;
    Ok((value, lines))
}

/// Spawns `command` with stdout piped and waits up to `within` for its JSON startup
/// line; panics with the child's stderr (when piped) if none comes.
pub async fn spawn(mut command: Command, within: Duration) -> (Child, Value, Rest) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    match startup_line(&mut child, within).await {
        Ok((value, rest)) => (child, value, rest),
        Err(e) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            panic!("the command did not start: {e}\n{stderr}");
        }
    }
}

/// Writes `key` and a newline to `dir/name` with permissions `mode`.
pub fn key_file(dir: &Path, name: &str, key: impl Display, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Writes devnet account `i`'s key to `dir/name`, mode 0600 as agora requires.
pub fn account_key_file(dir: &Path, name: &str, chain: &Devnet, i: usize) -> PathBuf {
    key_file(dir, name, chain.accounts()[i].private_key(), 0o600)
}

/// The `agora` binary at `bin` (a test's `env!("CARGO_BIN_EXE_agora")`) with
/// `AGORA_HOME=home`, a loopback listener, and nothing from the environment that could
/// point it at a real facilitator, wallet (`X402_WALLET`, `AGORA_WALLET`) or metrics listener. Killed when dropped.
pub fn agora(bin: &str, home: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .env("AGORA_HOME", home)
        .env("AGORA_LISTEN", "127.0.0.1:0")
        .env("AGORA_FACILITATOR_URL", "http://127.0.0.1:9")
        .env_remove("AGORA_FACILITATOR_KEY")
        .env_remove("AGORA_METRICS_LISTEN")
        .env_remove("X402_WALLET")
        .env_remove("AGORA_WALLET")
        .env_remove("AGORA_TUNNEL")
        .env_remove("AGORA_BORE_SERVER")
        .env_remove("AGORA_BORE_SECRET")
        .env_remove("AGORA_CLOUDFLARED")
        .env_remove("TUNNEL_TOKEN")
        .kill_on_drop(true);
    command
}

/// What one finished command left: its exit code and its output as text.
pub struct Output {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Fails the test unless the command failed (a nonzero exit) and its stderr says
    /// each of `says`: a refusal must name what was wrong and the fix. The panic shows
    /// both streams.
    pub fn fails_saying(&self, says: &[&str]) {
        assert!(
            !self.success(),
            "it should have failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self.says(says);
    }

    /// Fails the test unless the command exited `code` (agora's exit codes tell a
    /// refusal before signing from a failure after it) and its stderr says each of
    /// `says`. The panic shows both streams.
    pub fn exits_saying(&self, code: i32, says: &[&str]) {
        assert_eq!(
            self.code,
            Some(code),
            "exit code:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self.says(says);
    }

    fn says(&self, says: &[&str]) {
        for text in says {
            assert!(
                self.stderr.contains(text),
                "stderr does not say {text:?}:\n{}",
                self.stderr
            );
        }
    }

    /// The last stdout line as JSON (`--json` commands print their object last); the
    /// panic shows both streams.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `command` with `args` to completion; `stdin` is written to it and closed, or
/// stdin is empty when `None`.
pub async fn run(mut command: Command, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        pipe.write_all(text.as_bytes())
            .await
            .expect("the command reads its stdin");
    }
    let out = child
        .wait_with_output()
        .await
        .expect("the command finishes");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run`] that fails the test, showing both streams, unless the command exits 0.
pub async fn ok(command: Command, args: &[&str]) -> Output {
    let out = run(command, args, None).await;
    assert!(
        out.success(),
        "{args:?} failed ({:?}):\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    out
}

/// Imports the key in `key_file` as the default wallet of `command`'s home (`agora
/// wallet import --name default`), the buyer's setup before it pays; fails the test
/// unless the import succeeds.
pub async fn default_wallet(command: Command, key_file: &Path) -> Output {
    let key = key_file.to_str().expect("a UTF-8 key path");
    let import = ["wallet", "import", "--name", "default", "--key-file", key];
    ok(command, &import).await
}
