//! Running one experiment: a fresh copy of the repo, the buyer's `train.py` in it, the
//! training command in its sandbox (`sandbox.rs`) and its own process group, and every
//! process of the run killed at budget + grace. Output goes straight to files, so every byte is kept, also on a timeout
//! (the reference decoded captured bytes as text there, crashed, and saved nothing).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use super::sandbox::Wrapped;

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
    /// The work directory grew past `--disk` (bytes used) and the run was killed.
    OverDisk(u64),
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

/// How often the work directory's size is checked against `--disk`.
const DISK_EVERY: Duration = Duration::from_secs(2);

/// Runs `wrapped` (the training command in its sandbox, see [`super::sandbox`]) in
/// `workdir`, stdout appended to `log` (after the sandbox's header) and stderr into
/// `stderr_log`, in a new process group. At budget + grace, at once when `stop` turns
/// true, or when the work directory grows past `disk` bytes, every process of the run
/// is killed: in the sandbox by killing its PID namespace's init (which takes
/// `setsid` and double-forked children with it), without one by signalling the group.
pub async fn run(
    wrapped: Wrapped,
    confined: bool,
    (workdir, disk): (&Path, u64),
    limits: &Limits,
    (log, stderr_log): (&Path, &Path),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    let spawned = (|| {
        if wrapped.program.is_empty() {
            return Err(std::io::Error::other("the training command is empty"));
        }
        let mut cmd = tokio::process::Command::new(&wrapped.program);
        cmd.args(&wrapped.args)
            .current_dir(workdir)
            .env_clear()
            .envs(wrapped.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(open_append(log)?)
            .stderr(create_fresh(stderr_log)?)
            .process_group(0);
        cmd.spawn()
    })();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Outcome::SpawnFailed(e),
    };
    let leader = child.id();
    let group = leader.and_then(|id| Pid::from_raw(i32::try_from(id).ok()?));
    // The engine's child is the PID namespace's init. It is found now, while it is
    // still the engine's child: the engine may exit before it (it reports the
    // command's status as soon as the command ends), and the init is then reparented.
    let mut init = None;
    if confined && let Some(leader) = leader {
        let deadline = Instant::now() + FIND_INIT;
        while init.is_none() && Instant::now() < deadline {
            init = children_of(leader).into_iter().find_map(Process::of);
            if init.is_none() {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let limit = Duration::from_secs(limits.budget_secs.saturating_add(limits.grace_secs));
    enum Ended {
        Exited(std::io::Result<ExitStatus>),
        TimedOut,
        Stopped,
        OverDisk(u64),
    }
    let stopped = async {
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let over_disk = async {
        loop {
            tokio::time::sleep(DISK_EVERY).await;
            let dir = workdir.to_path_buf();
            let used = tokio::task::spawn_blocking(move || dir_size(&dir))
                .await
                .unwrap_or(0);
            if used > disk {
                return used;
            }
        }
    };
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        () = tokio::time::sleep(limit) => Ended::TimedOut,
        () = stopped => Ended::Stopped,
        used = over_disk => Ended::OverDisk(used),
    };
    let outcome = match ended {
        Ended::Exited(Ok(status)) => Outcome::Exited(status),
        Ended::Exited(Err(e)) => Outcome::SpawnFailed(e),
        Ended::Stopped => Outcome::Stopped,
        Ended::OverDisk(used) => Outcome::OverDisk(used),
        Ended::TimedOut => Outcome::TimedOut,
    };
    if let Some(init) = &init {
        // Whether the command ended or is to be stopped: killing the namespace's init
        // makes the kernel kill every process left in it (`setsid` and double-forked
        // ones too), and the init is released only once they all are, so waiting
        // for it to go waits for all of them.
        init.kill();
        let deadline = Instant::now() + TERM_WAIT;
        while init.alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if !confined && matches!(outcome, Outcome::TimedOut | Outcome::OverDisk(_)) {
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
    }
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

/// How long the engine may take to start the namespace's init.
const FIND_INIT: Duration = Duration::from_secs(5);

/// One process, told from a later one with its pid by its start time.
struct Process {
    pid: Pid,
    started: u64,
}

impl Process {
    fn of(pid: i32) -> Option<Self> {
        Some(Self {
            pid: Pid::from_raw(pid)?,
            started: start_time(pid)?,
        })
    }

    /// Whether it still runs (a zombie, whose namespace is already empty, does not).
    fn alive(&self) -> bool {
        let raw = self.pid.as_raw_nonzero().get();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{raw}/stat")) else {
            return false;
        };
        let fields: Vec<&str> = match stat.rsplit_once(')') {
            Some((_, rest)) => rest.split_whitespace().collect(),
            None => return false,
        };
        let state = fields.first().copied().unwrap_or("X");
        let started = fields.get(19).and_then(|t| t.parse::<u64>().ok());
        state != "Z" && state != "X" && started == Some(self.started)
    }

    fn kill(&self) {
        if self.alive() {
            let _ = rustix::process::kill_process(self.pid, Signal::KILL);
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time, in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The pids whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The bytes of the regular files under `dir` (symlinks not followed).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Creates `path` anew, never through a symlink: an entry already there (a link
/// a buyer planted) is removed, and `create_new` fails rather than follow one
/// planted in between.
pub fn create_fresh(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Opens `path` to append, refusing a symlink (`O_NOFOLLOW`).
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Opens `path` to read, refusing a symlink (`O_NOFOLLOW`).
pub fn open_read_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Sets `uid`/`gid` as the owner of `dir` and everything under it (links not
/// followed), so the run's unprivileged user can write its work directory.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            chown_tree(&entry.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Appends `--- stderr ---` and the stderr bytes to the log (the reference's layout),
/// then removes the stderr file.
pub fn join_logs(log: &Path, stderr_log: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let stderr = std::fs::read(stderr_log).unwrap_or_default();
    if !stderr.is_empty() {
        let has_stdout = std::fs::metadata(log).map(|m| m.len() > 0).unwrap_or(false);
        let mut file = open_append(log)?;
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
        return Err("the training command is empty: give e.g. \"python3 train.py\"".into());
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
