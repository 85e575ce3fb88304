//! Running one experiment: a fresh copy of the repo, the buyer's `train.py` in it, the
//! training command in its own process group, and the whole group killed at budget +
//! grace. Output goes straight to files, so every byte is kept, also on a timeout
//! (the reference decoded captured bytes as text there, crashed, and saved nothing).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// Entries never copied into an experiment's work directory: version control,
/// environments, caches and earlier results.
const SKIP: &[&str] = &[
    ".git",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    "worktrees",
    "queue",
    "results",
];

/// How long the group has between SIGTERM and SIGKILL once the time is up.
const TERM_WAIT: Duration = Duration::from_secs(5);

/// File extensions taken as checkpoints, for the result's `artifact_path`.
pub const CHECKPOINT_EXTENSIONS: &[&str] = &["gguf", "safetensors", "pt", "pth", "bin"];

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `TIME_BUDGET` for the script: the seconds of training it may spend.
    pub budget_secs: u64,
    /// Extra seconds for startup and evaluation before the group is killed.
    pub grace_secs: u64,
}

/// How the process ended.
#[derive(Debug)]
pub enum Outcome {
    /// It exited by itself.
    Exited(ExitStatus),
    /// Budget + grace ran out and the group was killed.
    TimedOut,
    /// The worker shut down and killed the group.
    Stopped,
    /// It could not be started.
    SpawnFailed(std::io::Error),
}

/// Copies `from` into the new directory `to`, skipping [`SKIP`] names and `exclude`
/// (the worker's own data directory when it lives inside the repo). Symlinks are
/// copied as links.
pub fn copy_repo(from: &Path, to: &Path, exclude: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        if SKIP.iter().any(|s| name == *s) || path == exclude {
            continue;
        }
        let target = to.join(&name);
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&path)?, &target)?;
        } else if kind.is_dir() {
            copy_repo(&path, &target, exclude)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// Runs `command` in `workdir` with `env`, stdout into `log` and stderr into
/// `stderr_log`, in a new process group that is killed whole at budget + grace, or at
/// once when `stop` turns true; any process the script left behind in its group is
/// killed when it exits, too.
pub async fn run(
    command: &[String],
    workdir: &Path,
    env: &[(&str, String)],
    limits: &Limits,
    (log, stderr_log): (&Path, &Path),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    let spawned = (|| {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| std::io::Error::other("the training command is empty"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(workdir)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(std::fs::File::create(stderr_log)?)
            .process_group(0);
        cmd.spawn()
    })();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Outcome::SpawnFailed(e),
    };
    let group = child
        .id()
        .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?));
    let limit = Duration::from_secs(limits.budget_secs.saturating_add(limits.grace_secs));
    enum Ended {
        Exited(std::io::Result<ExitStatus>),
        TimedOut,
        Stopped,
    }
    let stopped = async {
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        () = tokio::time::sleep(limit) => Ended::TimedOut,
        () = stopped => Ended::Stopped,
    };
    let outcome = match ended {
        Ended::Exited(Ok(status)) => Outcome::Exited(status),
        Ended::Exited(Err(e)) => Outcome::SpawnFailed(e),
        Ended::Stopped => Outcome::Stopped,
        Ended::TimedOut => {
            signal(group, Signal::TERM);
            let deadline = Instant::now() + TERM_WAIT;
            loop {
                // The leader stays signallable as a zombie until it is reaped.
                let reaped = matches!(child.try_wait(), Ok(Some(_)));
                if (reaped && !group.is_some_and(alive)) || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Outcome::TimedOut
        }
    };
    signal(group, Signal::KILL);
    // The leader is reaped here; after SIGKILL this returns at once.
    let _ = child.wait().await;
    outcome
}

/// Sends `sig` to the whole group; a group that is already gone is fine.
fn signal(group: Option<Pid>, sig: Signal) {
    if let Some(group) = group {
        let _ = kill_process_group(group, sig);
    }
}

/// Whether any process of the group can still be signalled.
fn alive(group: Pid) -> bool {
    rustix::process::test_kill_process_group(group).is_ok()
}

/// Appends `--- stderr ---` and the stderr bytes to the log (the reference's layout),
/// then removes the stderr file.
pub fn join_logs(log: &Path, stderr_log: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let stderr = std::fs::read(stderr_log).unwrap_or_default();
    if !stderr.is_empty() {
        let has_stdout = std::fs::metadata(log).map(|m| m.len() > 0).unwrap_or(false);
        let mut file = std::fs::OpenOptions::new().append(true).open(log)?;
        if has_stdout {
            file.write_all(b"\n")?;
        }
        file.write_all(b"--- stderr ---\n")?;
        file.write_all(&stderr)?;
    }
    match std::fs::remove_file(stderr_log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The newest checkpoint file under `root`, if any.
pub fn newest_checkpoint(root: &Path) -> Option<PathBuf> {
    fn walk(dir: &Path, best: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if entry.file_name() != ".git" {
                    walk(&path, best);
                }
            } else if kind.is_file() && is_checkpoint(&path) {
                let modified = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                if best.as_ref().is_none_or(|(t, _)| modified >= *t) {
                    *best = Some((modified, path));
                }
            }
        }
    }
    let mut best = None;
    walk(root, &mut best);
    best.map(|(_, p)| p)
}

/// Whether `path` has a checkpoint extension.
pub fn is_checkpoint(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| CHECKPOINT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Splits a command line like a POSIX shell does for words: whitespace separates,
/// single quotes are literal, double quotes allow `\"` and `\\`, a backslash outside
/// quotes escapes the next character.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed ' in {line:?}")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("unclosed \" in {line:?}")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed \" in {line:?}")),
                    }
                }
            }
            '\\' => {
                let next = chars
                    .next()
                    .ok_or_else(|| format!("trailing \\ in {line:?}"))?;
                word.get_or_insert_with(String::new).push(next);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        return Err(
            "the training command is empty: give e.g. --train-command \"python3 train.py\"".into(),
        );
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split_command;

    #[test]
    fn split_command_handles_quotes_and_escapes() {
        assert_eq!(
            split_command(r#"uv run 'train x.py' --tag "a \"b\"" c\ d"#).unwrap_or_default(),
            ["uv", "run", "train x.py", "--tag", "a \"b\"", "c d"]
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("python3 'x").is_err());
    }
}
