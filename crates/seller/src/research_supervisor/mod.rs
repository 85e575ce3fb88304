//! The daemon's side of research offers: one worker process per research offer,
//! started, restarted and stopped as the offers change, with the pid file that lets a
//! restarted daemon stop a worker its killed predecessor left behind, and the worker's
//! leaderboard copied into the offer's registration metadata.
//!
//! What a worker needs (repository, budget, grace, command, address, sandbox) rides in
//! the offer's annotations ([`annotations`], read by [`WorkerSpec::of`]), so the offer
//! alone says what to run. Which program runs it is the embedder's choice
//! ([`WorkerLauncher`]): agora's CLI runs itself as `agora research worker`.

mod metadata;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offers::{ServiceOffer, Store};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use metadata::{leaderboard, with_metadata};

/// The offer annotations that describe a research worker.
pub mod annotations {
    /// The repository the worker runs experiments from.
    pub const REPO: &str = "research.agora/repo";
    /// The training budget per run, seconds.
    pub const BUDGET: &str = "research.agora/budget";
    /// The grace after the budget, seconds.
    pub const GRACE: &str = "research.agora/grace";
    /// The training command.
    pub const TRAIN_COMMAND: &str = "research.agora/train-command";
    /// Where the worker listens.
    pub const LISTEN: &str = "research.agora/listen";
    /// The hourly price the per-run price was derived from.
    pub const PER_HOUR: &str = "research.agora/per-hour";
    /// The worker's sandbox settings, as JSON the launcher reads.
    pub const SANDBOX: &str = "research.agora/sandbox";
}

use annotations::{BUDGET, GRACE, LISTEN, REPO, SANDBOX, TRAIN_COMMAND};

/// How often the supervisor looks at the offers and the workers.
const TICK: Duration = Duration::from_secs(2);
/// A worker that exited is not started again sooner than this.
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// Leaderboard metadata is written into the offer at most this often.
const METADATA_EVERY: Duration = Duration::from_secs(60);
/// How long a worker gets to exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the daemon runs for one research offer, as its annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The repository holding the experiment.
    pub repo: String,
    /// Seconds of training per run.
    pub budget: String,
    /// Seconds after the budget before a run is killed.
    pub grace: String,
    /// Where the worker listens (the offer's upstream).
    pub listen: String,
    /// The training command, when not the default.
    pub train_command: Option<String>,
    /// The sandbox settings; an offer from before them gets the full default sandbox.
    pub sandbox: Option<String>,
}

impl WorkerSpec {
    /// The worker of `offer`, when it is a research offer.
    pub fn of(offer: &ServiceOffer) -> Option<Self> {
        let notes = &offer.metadata.annotations;
        Some(Self {
            repo: notes.get(REPO)?.clone(),
            budget: notes.get(BUDGET)?.clone(),
            grace: notes.get(GRACE)?.clone(),
            listen: notes.get(LISTEN)?.clone(),
            train_command: notes.get(TRAIN_COMMAND).cloned(),
            sandbox: notes.get(SANDBOX).cloned(),
        })
    }
}

/// Why a worker's command could not be built; the supervisor logs it and retries.
pub type LaunchError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the process that runs one research worker. The daemon holds secrets in its
/// environment, so an implementation clears it and passes only what the worker needs.
pub trait WorkerLauncher: Send + Sync {
    /// The command for `spec`, keeping its state in `data_dir` (the supervisor sets
    /// its stdio and starts it).
    fn command(&self, spec: &WorkerSpec, data_dir: &Path) -> Result<Command, LaunchError>;
}

/// A worker the supervisor started.
struct Running {
    spec: WorkerSpec,
    child: Child,
}

/// Runs the worker of every research offer as a child of the daemon until `stop`,
/// and keeps each offer's leaderboard metadata current (see the module docs).
pub(crate) async fn supervise(
    launcher: Arc<dyn WorkerLauncher>,
    store: Arc<Store>,
    wake: Arc<Notify>,
    home: PathBuf,
    stop: Arc<Notify>,
) {
    let stopped = stop.notified();
    tokio::pin!(stopped);
    let http = match x402::http::direct().timeout(Duration::from_secs(2)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "research workers are not supervised: cannot build an HTTP client: {e}"
            );
            return;
        }
    };
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut started: HashMap<String, Instant> = HashMap::new();
    let mut written: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = &mut stopped => break,
            () = tokio::time::sleep(TICK) => {}
        }
        let offers = match store.list() {
            Ok(offers) => offers,
            Err(e) => {
                tracing::warn!("cannot read the offers to supervise research workers: {e}");
                continue;
            }
        };
        let wanted: HashMap<String, WorkerSpec> = offers
            .iter()
            .filter_map(|o| WorkerSpec::of(o).map(|s| (o.metadata.name.clone(), s)))
            .collect();
        let gone: Vec<String> = running
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&r.spec))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                tracing::info!("stopping the research worker of {name}");
                end(r.child).await;
            }
        }
        running.retain(|name, r| match r.child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!(
                    "the research worker of {name} exited ({status}); starting it again"
                );
                false
            }
            _ => true,
        });
        for (name, spec) in &wanted {
            let recent = started
                .get(name)
                .is_some_and(|t| t.elapsed() < RESTART_AFTER);
            if running.contains_key(name) || recent {
                continue;
            }
            started.insert(name.clone(), Instant::now());
            match start(launcher.as_ref(), &home, name, spec).await {
                Ok(child) => {
                    running.insert(
                        name.clone(),
                        Running {
                            spec: spec.clone(),
                            child,
                        },
                    );
                }
                Err(e) => tracing::error!("cannot start the research worker of {name}: {e}"),
            }
        }
        for offer in &offers {
            let name = &offer.metadata.name;
            let Some(r) = running.get(name) else { continue };
            if written
                .get(name)
                .is_some_and(|t| t.elapsed() < METADATA_EVERY)
            {
                continue;
            }
            let Some(fresh) = leaderboard(&http, &r.spec.listen).await else {
                continue;
            };
            if let Some(next) = with_metadata(offer, &fresh) {
                match store.put(&next) {
                    Ok(_) => {
                        written.insert(name.clone(), Instant::now());
                        wake.notify_one();
                    }
                    Err(e) => tracing::warn!("cannot save the leaderboard of {name}: {e}"),
                }
            }
        }
    }
    for (_, r) in running.drain() {
        end(r.child).await;
    }
}

/// Starts one worker, its output appended to `worker.log` in its data directory.
/// A stale worker (see [`stop_stale`]) is stopped first.
async fn start(
    launcher: &dyn WorkerLauncher,
    home: &Path,
    name: &str,
    spec: &WorkerSpec,
) -> Result<Child, LaunchError> {
    let data_dir = home.join("research").join(name);
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    stop_stale(&data_dir).await;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("worker.log"))
        .map_err(|e| format!("cannot open the worker's log: {e}"))?;
    let mut command = launcher.command(spec, &data_dir)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run the research worker: {e}"))?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(data_dir.join(PID_FILE), pid.to_string());
    }
    tracing::info!("started the research worker of {name} on {}", spec.listen);
    Ok(child)
}

/// The worker's pid, kept in its data directory so that a daemon that died without
/// stopping its worker (SIGKILL, a crash) can stop the one left behind before
/// starting another on the same port.
const PID_FILE: &str = "worker.pid";

/// Stops the worker a previous daemon left running for `data_dir`: only when the pid
/// file names a live process whose command line is `agora research worker` with this
/// data directory (read from `/proc`, so a reused pid is never signalled).
async fn stop_stale(data_dir: &Path) {
    let pid_file = data_dir.join(PID_FILE);
    let Some(raw) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let _ = std::fs::remove_file(&pid_file);
    if !is_worker_of(raw, data_dir) {
        return;
    }
    let Some(pid) = rustix::process::Pid::from_raw(raw) else {
        return;
    };
    tracing::warn!(
        "stopping research worker {raw} that a previous daemon left running for {}",
        data_dir.display()
    );
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !alive(raw) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// Whether process `pid` runs `research worker` with `--data-dir data_dir`.
fn is_worker_of(pid: i32, data_dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"research".as_slice() && w[1] == b"worker".as_slice())
        && args
            .windows(2)
            .any(|w| w[0] == b"--data-dir".as_slice() && w[1] == data_dir.as_os_str().as_bytes())
}

/// Whether `pid` is still running (a zombie awaiting its parent counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Asks a worker to stop (SIGTERM, so it can end its experiment's process group),
/// then kills it if it has not exited within [`STOP_GRACE`].
async fn end(mut child: Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_left_by_a_dead_daemon_is_stopped_and_nothing_else_is() {
        let dir = tempfile::tempdir().expect("dir");
        let data_dir = dir.path().join("w");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        // A stand-in with a worker's command line (sh's $0 and arguments) that waits
        // on a builtin, so it forks nothing that could outlive the test.
        let spawn = |data: &Path| {
            std::process::Command::new("sh")
                .args(["-c", "read -r line", "research", "worker", "--data-dir"])
                .arg(data)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh runs")
        };
        let mut ours = spawn(&data_dir);
        let mut other = spawn(&dir.path().join("other"));
        let ours_pid = i32::try_from(ours.id()).expect("pid");
        let other_pid = i32::try_from(other.id()).expect("pid");
        assert!(is_worker_of(ours_pid, &data_dir));
        assert!(
            !is_worker_of(other_pid, &data_dir),
            "another directory's worker"
        );

        std::fs::write(data_dir.join(PID_FILE), other_pid.to_string()).expect("pid file");
        stop_stale(&data_dir).await;
        assert!(
            alive(other_pid),
            "a pid file naming another process signals nothing"
        );

        std::fs::write(data_dir.join(PID_FILE), ours_pid.to_string()).expect("pid file");
        stop_stale(&data_dir).await;
        assert!(!alive(ours_pid), "the stale worker was stopped");
        assert!(!data_dir.join(PID_FILE).exists());
        let _ = ours.wait();
        let _ = other.kill();
        let _ = other.wait();
    }

    #[test]
    fn a_research_offer_names_its_worker_in_annotations() {
        let mut offer = ServiceOffer::new("w", offers::OfferSpec::default());
        assert!(WorkerSpec::of(&offer).is_none(), "not a research offer");
        for (k, v) in [
            (REPO, "/r"),
            (BUDGET, "300"),
            (GRACE, "60"),
            (LISTEN, "127.0.0.1:9"),
        ] {
            offer.metadata.annotations.insert(k.into(), v.into());
        }
        let spec = WorkerSpec::of(&offer).expect("a worker");
        assert_eq!(
            spec,
            WorkerSpec {
                repo: "/r".into(),
                budget: "300".into(),
                grace: "60".into(),
                listen: "127.0.0.1:9".into(),
                train_command: None,
                sandbox: None,
            }
        );
    }
}
