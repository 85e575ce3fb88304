//! `agora sell research`: sell autoresearch experiments from this machine.
//!
//! The offer is an HTTP offer whose upstream is an `agora research worker` that the
//! daemon runs as its own child ([`supervise`]): started when the offer appears,
//! restarted when it exits, stopped when the offer goes. What the worker needs
//! (repository, budget, grace, command, address) rides in the offer's annotations, so
//! the offer alone says what to run and a daemon restart brings the worker back (and
//! first stops one that a killed daemon left running, found by its pid file).
//!
//! Price: x402's exact scheme charges per call, so `--per-hour` becomes a per-run
//! price for the worker's time budget, rounded UP to the next whole atomic unit
//! (`research::coordinator::price::per_run`; 0.50/h for 300 s is 41 666.67 atomic
//! units, charged 41 667). The worker's `/status` is the free health path, so a
//! buyer checks it is idle before paying, and one run at a time is admitted.
//!
//! Leaderboard: the registration's `metadata` carries `best_val_bpb`,
//! `total_experiments`, `updated`, `gpu`, `framework`, `best_experiment_hash` and
//! `avg_experiment_time`. The supervisor reads them from the worker's `/status` and
//! writes a change into the offer at most once a minute; the reconciler then
//! publishes the file and writes the changed values on chain (and only those).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use offers::{ServiceOffer, Store};
use research::coordinator::price;
use research::coordinator::workers::{WORKER_DOMAIN, WORKER_SKILL};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use x402::Money;

use super::args::{HttpArgs, LimitArgs, PaymentArgs, PriceArgs, RegisterArgs};
use super::{create, spec};
use crate::output::outln;

/// Annotation: the repository the worker runs experiments from.
const REPO: &str = "research.agora/repo";
/// Annotation: the training budget per run, seconds.
const BUDGET: &str = "research.agora/budget";
/// Annotation: the grace after the budget, seconds.
const GRACE: &str = "research.agora/grace";
/// Annotation: the training command.
const TRAIN_COMMAND: &str = "research.agora/train-command";
/// Annotation: where the worker listens.
const LISTEN: &str = "research.agora/listen";
/// Annotation: the hourly price the per-run price was derived from.
const PER_HOUR: &str = "research.agora/per-hour";

/// How often the supervisor looks at the offers and the workers.
const TICK: Duration = Duration::from_secs(2);
/// A worker that exited is not started again sooner than this.
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// Leaderboard metadata is written into the offer at most this often.
const METADATA_EVERY: Duration = Duration::from_secs(60);
/// How long a worker gets to exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// `agora sell research` flags.
#[derive(Debug, Args)]
pub(crate) struct ResearchArgs {
    /// Offer name (lowercase letters, digits, hyphens).
    name: Option<String>,
    /// The repository holding train.py; each experiment runs in a fresh copy of it.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Price per hour of GPU time in USDC; one run costs this × --budget / 3600,
    /// rounded up to the next atomic unit (0.50 for 300 s: 0.041667).
    #[arg(long, value_name = "USDC")]
    per_hour: String,
    /// Seconds of training per run (the worker's TIME_BUDGET).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    budget: u64,
    /// Extra seconds for startup and evaluation before the run is killed (the run is
    /// paid after it is served, so --budget + --grace is at most 480).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    grace: u64,
    /// The command the worker runs in the copy [default: python3 train.py].
    #[arg(long, value_name = "COMMAND")]
    train_command: Option<String>,
    /// Where the worker listens [default: a free port on 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    worker_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    register: RegisterArgs,
    /// Wait until the offer is Ready, showing each stage (seconds).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
}

/// Decimals of USDC, what `--per-hour` is read in.
const USDC_DECIMALS: u8 = 6;

/// Seconds a killed run gets to have its result written, beyond budget + grace.
const RESULT_SLACK: u64 = 30;

/// How long the gateway lets the worker answer a paid run: budget + grace + slack.
/// The exact scheme settles after the answer, so the buyer's authorization must
/// outlive it plus the gateway's settle and margin; agora's buyer signs for at most
/// `MAX_VALIDITY_SECONDS` (600 s), which leaves 510 s (budget + grace ≤ 480).
fn run_timeout(budget: u64, grace: u64) -> anyhow::Result<u64> {
    let longest = x402::client::MAX_VALIDITY_SECONDS
        - gateway::GatewayConfig::default().settle_timeout.as_secs()
        - gateway::paid::VALIDITY_MARGIN_SECONDS;
    let timeout = budget.saturating_add(grace).saturating_add(RESULT_SLACK);
    if timeout > longest {
        bail!(
            "--budget {budget} + --grace {grace} is too long to be paid after the run: buyers' authorizations last at most {} s, so keep --budget + --grace at most {} (e.g. --budget 300 --grace 120)",
            x402::client::MAX_VALIDITY_SECONDS,
            longest - RESULT_SLACK
        );
    }
    Ok(timeout)
}

/// The per-run price of `per_hour` (a USDC decimal) for a `budget`-second run.
fn per_run_price(per_hour: &str, budget: u64) -> anyhow::Result<Money> {
    let hourly = Money::parse(per_hour, USDC_DECIMALS)
        .map_err(|e| anyhow::anyhow!("--per-hour {per_hour:?}: {e}; write e.g. --per-hour 0.50"))?;
    Ok(price::per_run(hourly, budget)?)
}

/// `agora sell research`.
pub(super) async fn sell(a: ResearchArgs, json_out: bool) -> anyhow::Result<()> {
    let repo = std::fs::canonicalize(&a.repo).with_context(|| {
        format!(
            "--repo {}: no such directory; point it at the checkout holding train.py",
            a.repo.display()
        )
    })?;
    if !repo.join("train.py").is_file() && a.train_command.is_none() {
        bail!(
            "--repo {} holds no train.py; point it at the experiment's checkout, or pass --train-command",
            repo.display()
        );
    }
    let run_price = per_run_price(&a.per_hour, a.budget)?;
    let timeout = run_timeout(a.budget, a.grace)?;
    let listen = match a.worker_listen {
        Some(addr) => addr,
        None => free_port()?,
    };
    let mut register = a.register.clone();
    if register.skills.is_empty() {
        register.skills.push(WORKER_SKILL.to_string());
    }
    if register.domains.is_empty() {
        register.domains.push(WORKER_DOMAIN.to_string());
    }
    let http = HttpArgs {
        name: a.name.clone(),
        upstream: Some(
            format!("http://{listen}")
                .parse()
                .context("the worker address is not a URL")?,
        ),
        health_path: "/status".into(),
        price: PriceArgs {
            price: None,
            per_request: Some(run_price.to_string()),
            per_mtok: None,
            per_hour: None,
        },
        payment: a.payment.clone(),
        register,
        limits: LimitArgs {
            rps: None,
            max_in_flight: Some(1),
            path: None,
        },
        wait: a.wait,
    };
    let draft = spec::http(&http)?;
    if !json_out {
        outln!(
            "one run costs {run_price} USDC: {} USDC/hour × {} s, rounded up to the next atomic unit",
            a.per_hour.trim(),
            a.budget
        )?;
    }
    let annotations = [
        (REPO, repo.display().to_string()),
        (BUDGET, a.budget.to_string()),
        (GRACE, a.grace.to_string()),
        (LISTEN, listen.to_string()),
        (PER_HOUR, a.per_hour.trim().to_string()),
    ];
    let train_command = a.train_command.clone();
    // The worker reports the same name, so its first /status changes nothing.
    let gpu = research::worker::detect_gpu().unwrap_or_else(|| "none".to_string());
    create::sell_shaped(draft, &a.payment, a.wait, json_out, move |offer| {
        offer.spec.limits.get_or_insert_default().timeout_seconds = Some(timeout);
        let notes = &mut offer.metadata.annotations;
        for (k, v) in annotations {
            notes.insert(k.to_string(), v);
        }
        if let Some(command) = train_command {
            notes.insert(TRAIN_COMMAND.to_string(), command);
        }
        if let Some(registration) = offer.spec.registration.as_mut() {
            let metadata = &mut registration.metadata;
            metadata.insert("framework".into(), "autoresearch".into());
            metadata.insert("gpu".into(), gpu);
            metadata.insert("total_experiments".into(), "0".into());
            metadata.insert(
                "updated".into(),
                offers::time::format_rfc3339(x402::UnixTimestamp::now().as_secs()),
            );
        }
    })
    .await
}

/// A free loopback port for the worker, chosen now and kept in the offer.
fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port for the worker; pass --worker-listen 127.0.0.1:PORT")?;
    Ok(listener.local_addr()?)
}

/// What the daemon runs for one research offer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WorkerSpec {
    repo: String,
    budget: String,
    grace: String,
    listen: String,
    train_command: Option<String>,
}

impl WorkerSpec {
    /// The worker of `offer`, when it is a research offer.
    fn of(offer: &ServiceOffer) -> Option<Self> {
        let notes = &offer.metadata.annotations;
        Some(Self {
            repo: notes.get(REPO)?.clone(),
            budget: notes.get(BUDGET)?.clone(),
            grace: notes.get(GRACE)?.clone(),
            listen: notes.get(LISTEN)?.clone(),
            train_command: notes.get(TRAIN_COMMAND).cloned(),
        })
    }

    fn command(&self, data_dir: &Path) -> anyhow::Result<Command> {
        let exe =
            std::env::current_exe().context("cannot find the agora binary to run the worker")?;
        let mut command = Command::new(exe);
        command.args([
            "research",
            "worker",
            "--repo",
            &self.repo,
            "--budget",
            &self.budget,
            "--grace",
            &self.grace,
            "--listen",
            &self.listen,
        ]);
        command.arg("--data-dir").arg(data_dir);
        if let Some(c) = &self.train_command {
            command.args(["--train-command", c]);
        }
        Ok(command)
    }
}

/// A worker the supervisor started.
struct Running {
    spec: WorkerSpec,
    child: Child,
}

/// Runs the worker of every research offer as a child of the daemon until `stop`,
/// and keeps each offer's leaderboard metadata current (see the module docs).
pub(crate) async fn supervise(
    store: Arc<Store>,
    wake: Arc<Notify>,
    home: PathBuf,
    stop: Arc<Notify>,
) {
    let stopped = stop.notified();
    tokio::pin!(stopped);
    let http = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
    {
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
            match start(&home, name, spec).await {
                Ok(child) => {
                    running.insert(
                        name.clone(),
                        Running {
                            spec: spec.clone(),
                            child,
                        },
                    );
                }
                Err(e) => tracing::error!("cannot start the research worker of {name}: {e:#}"),
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
async fn start(home: &Path, name: &str, spec: &WorkerSpec) -> anyhow::Result<Child> {
    let data_dir = home.join("research").join(name);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    stop_stale(&data_dir).await;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("worker.log"))
        .context("cannot open the worker's log")?;
    let mut command = spec.command(&data_dir)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .context("cannot run agora research worker")?;
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

/// The leaderboard fields a worker's `/status` gives, as registration metadata.
async fn leaderboard(http: &reqwest::Client, listen: &str) -> Option<BTreeMap<String, String>> {
    let status: Value = http
        .get(format!("http://{listen}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(metadata_of(&status))
}

/// The registration metadata a worker's `/status` says: only the keys it knows, so
/// a worker that has run nothing yet leaves `sell research`'s first values alone.
fn metadata_of(status: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut out = BTreeMap::new();
    out.insert("framework".into(), "autoresearch".into());
    out.insert(
        "gpu".into(),
        status["gpu"].as_str().unwrap_or("none").to_string(),
    );
    if let Some(n) = text(&status["total_experiments"]) {
        out.insert("total_experiments".into(), n);
    }
    if let Some(avg) = text(&status["avg_experiment_time"]) {
        out.insert("avg_experiment_time".into(), avg);
    }
    if let Some(best) = text(&status["best"]["val_bpb"]) {
        out.insert("best_val_bpb".into(), best);
    }
    if let Some(hash) = text(&status["best"]["train_hash"]) {
        out.insert("best_experiment_hash".into(), hash);
    }
    if let Some(at) = text(&status["last"]["finishedAt"]) {
        out.insert("updated".into(), at);
    }
    out
}

/// `offer` with `fresh` in its registration metadata, or `None` when nothing changed.
fn with_metadata(offer: &ServiceOffer, fresh: &BTreeMap<String, String>) -> Option<ServiceOffer> {
    let registration = offer.spec.registration.as_ref()?;
    let changed = fresh
        .iter()
        .any(|(k, v)| registration.metadata.get(k) != Some(v));
    if !changed {
        return None;
    }
    let mut next = offer.clone();
    if let Some(r) = next.spec.registration.as_mut() {
        r.metadata
            .extend(fresh.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;
    use serde_json::json;

    #[test]
    fn the_per_run_price_rounds_up_to_the_next_atomic_unit() {
        let run = per_run_price("0.50", 300).expect("price");
        assert_eq!(run.atomic, U256::from(41_667));
        assert_eq!(run.to_string(), "0.041667");
        assert_eq!(per_run_price("6", 300).expect("price").to_string(), "0.5");
        let e = per_run_price("half", 300).expect_err("not a number");
        assert!(e.to_string().contains("--per-hour"), "{e}");
        let e = per_run_price("0.5", 0).expect_err("no budget");
        assert!(e.to_string().contains("--budget"), "{e}");
    }

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
    fn a_run_must_end_while_the_buyers_authorization_is_valid() {
        assert_eq!(run_timeout(300, 120).expect("default"), 450);
        assert_eq!(run_timeout(360, 120).expect("the longest"), 510);
        let e = run_timeout(300, 300).expect_err("the worker's own default grace");
        assert!(e.to_string().contains("at most 480"), "{e}");
    }

    #[test]
    fn the_leaderboard_comes_from_the_workers_status_and_only_changes_write() {
        let idle = json!({"status": "idle", "gpu": null, "total_experiments": 0, "best": null, "last": null});
        let first = metadata_of(&idle);
        assert_eq!(first["gpu"], "none");
        assert_eq!(first["total_experiments"], "0");
        assert!(!first.contains_key("best_val_bpb"));
        assert!(!first.contains_key("updated"), "sell research's time stays");
        let ran = json!({
            "status": "idle",
            "gpu": "NVIDIA H100",
            "total_experiments": 2,
            "avg_experiment_time": 3.5,
            "best": {"val_bpb": 0.9979, "train_hash": "sha256:ab"},
            "last": {"finishedAt": "2026-11-26T05:00:00Z"}
        });
        let fresh = metadata_of(&ran);
        assert_eq!(fresh["best_val_bpb"], "0.9979");
        assert_eq!(fresh["best_experiment_hash"], "sha256:ab");
        assert_eq!(fresh["avg_experiment_time"], "3.5");
        assert_eq!(fresh["updated"], "2026-11-26T05:00:00Z");

        let mut offer: ServiceOffer = serde_json::from_value(json!({
            "metadata": {"name": "w"},
            "spec": {
                "upstream": "http://127.0.0.1:1",
                "payment": {"network": "base-sepolia", "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "price": {"perRequest": "0.041667"}},
                "registration": {"enabled": true, "metadata": {"framework": "autoresearch", "updated": "then"}}
            }
        }))
        .expect("an offer");
        let next = with_metadata(&offer, &fresh).expect("changed");
        assert_eq!(
            next.spec.registration.as_ref().expect("r").metadata["best_val_bpb"],
            "0.9979"
        );
        offer = next;
        assert!(
            with_metadata(&offer, &fresh).is_none(),
            "same values: no write"
        );
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
        let command = spec.command(Path::new("/d")).expect("command");
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "research",
                "worker",
                "--repo",
                "/r",
                "--budget",
                "300",
                "--grace",
                "60",
                "--listen",
                "127.0.0.1:9",
                "--data-dir",
                "/d"
            ]
        );
    }
}
