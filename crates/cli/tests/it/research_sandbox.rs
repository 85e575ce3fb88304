//! The worker sandbox attacked as a buyer would (issue 21, H2): `agora research
//! worker` is started the way a seller's daemon holds it, with the gas key, tunnel
//! token and bore secret in its environment, `$AGORA_HOME/keys`, the admin socket
//! and a service on the host's loopback, and a paid run's `train.py` goes looking for
//! all of them, for other buyers' experiments, for a way out to the network, and
//! leaves a `setsid` double-forked child behind. It must find nothing, and once the
//! run's answer is back no process of it may be left. A host without bubblewrap is
//! simulated by pointing `AGORA_BWRAP` at a missing file.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::process;

const SECRETS: [(&str, &str); 3] = [
    ("AGORA_FACILITATOR_KEY", "0xfacilitator-gas-key-secret"),
    ("TUNNEL_TOKEN", "tunnel-token-secret"),
    ("AGORA_BORE_SECRET", "bore-secret-secret"),
];

/// A seller's home: a key file, the admin socket (a real listener), a file a planted
/// `results.tsv` link aims at, and a TCP service on the host's loopback.
struct Seller {
    dir: tempfile::TempDir,
    _admin: std::os::unix::net::UnixListener,
    loopback: std::net::TcpListener,
}

impl Seller {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("keys")).unwrap();
        process::key_file(
            &home.join("keys"),
            "facilitator.key",
            "0xkeyfilesecret",
            0o600,
        );
        std::fs::write(home.join("leak.tsv"), "commit\tval_bpb\nx\t0.4242\n").unwrap();
        let admin = std::os::unix::net::UnixListener::bind(home.join("agora.sock")).unwrap();
        let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self {
            dir,
            _admin: admin,
            loopback,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn results(&self) -> PathBuf {
        self.home().join("research/autoresearch-worker/results")
    }
}

/// `agora research worker` on a loopback port, its data in `$AGORA_HOME/research`
/// as under `agora sell research`, the daemon's secrets in its environment.
async fn worker(seller: &Seller, extra: &[&str]) -> (tokio::process::Child, String) {
    let repo = testkit::autoresearch::example_repo(seller.dir.path());
    let mut command = process::agora(env!("CARGO_BIN_EXE_agora"), &seller.home());
    command.envs(SECRETS).args([
        "research",
        "worker",
        "--repo",
        repo.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--budget",
        "2",
        "--grace",
        "1",
        "--json",
    ]);
    command.args(extra);
    let (child, started, _) = process::spawn(command, Duration::from_secs(30)).await;
    (child, started["url"].as_str().unwrap().to_string())
}

/// The hostile `train.py`: it reports what it reached as one `FINDINGS` JSON line,
/// plants a `results.tsv` link to a seller file, leaves a `setsid` double-forked
/// child writing a heartbeat (its command line carries `marker`), then either
/// outlives the budget (`stay`) or exits at once.
fn hostile(seller: &Seller, marker: &str, stay: bool) -> String {
    let home = seller.home();
    let victim = seller.results().join("victim-1/train.py");
    let host_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    format!(
        r#"import json, os, socket, sys, time
found = {{}}
found["env"] = sorted(k for k in {names:?} if k in os.environ)
found["env_values"] = [k for k, v in os.environ.items() if "secret" in v.lower()]
def readable(path):
    try:
        with open(path, "rb") as f:
            return len(f.read()) > 0
    except OSError:
        return False
keys = [{home:?} + "/keys/facilitator.key"] + ["../" * n + "keys/facilitator.key" for n in range(1, 9)]
found["keys"] = [p for p in keys if readable(p)]
def entries(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
# The directories on the way to its own work directory exist (empty but for that way).
found["home"] = [e for e in entries({home:?}) if e != "research"] + entries({home:?} + "/keys") + [e for e in entries({host_home:?}) if not {home:?}.startswith(os.path.join({host_home:?}, e))]
found["results"] = [e for e in entries({results:?}) if e != os.environ["AUTORESEARCH_EXPERIMENT_ID"]]
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect({home:?} + "/agora.sock")
    found["admin_socket"] = True
except OSError:
    found["admin_socket"] = False
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    found["loopback"] = True
except OSError:
    found["loopback"] = False
found["interfaces"] = [name for _, name in socket.if_nameindex() if name != "lo"]
try:
    # A UDP connect only looks the route up; no packet leaves.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("192.0.2.1", 53))
    found["route_out"] = True
except OSError:
    found["route_out"] = False
others = [{victim:?}] + ["../" * n + "victim-1/train.py" for n in range(1, 5)]
found["other_experiments"] = [p for p in others if readable(p)]
os.symlink({leak:?}, "results.tsv")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        beat = "n = 0\nwhile True:\n    n += 1\n    open('heartbeat', 'w').write(str(n))\n    __import__('time').sleep(0.05)\n"
        os.execv(sys.executable, [sys.executable, "-c", beat, {marker:?}])
    os._exit(0)
while not os.path.exists("heartbeat"):
    time.sleep(0.05)
print("FINDINGS " + json.dumps(found), flush=True)
if {stay}:
    time.sleep(600)
"#,
        names = SECRETS.map(|(k, _)| k),
        home = home.display().to_string(),
        host_home = host_home,
        port = seller.loopback.local_addr().unwrap().port(),
        victim = victim.display().to_string(),
        results = seller.results().display().to_string(),
        leak = home.join("leak.tsv").display().to_string(),
        marker = marker,
        stay = if stay { "True" } else { "False" },
    )
}

/// Host pids whose command line holds `marker` (any namespace's process shows here).
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A process's state, parent and namespace pids, for a failure message.
fn describe(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let lines: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("State") || l.starts_with("PPid") || l.starts_with("NSpid"))
        .collect();
    format!("{pid}: {}", lines.join(" | "))
}

async fn submit(url: &str, train_py: &str, id: &str) -> Value {
    let r = testkit::http()
        .post(format!("{url}/experiment"))
        .json(&json!({"train_py": train_py, "experiment_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// Checks one hostile run: nothing found, no planted link read, the heartbeat child
/// ran and is gone with everything else of the run.
fn judge(seller: &Seller, result: &Value, id: &str, marker: &str) {
    let log = std::fs::read_to_string(seller.results().join(id).join("run.log")).unwrap();
    assert!(log.starts_with("# agora sandbox: "), "{log}");
    assert!(log.contains("network: none"), "the buyer reads why: {log}");
    let findings: Value = log
        .lines()
        .find_map(|l| l.strip_prefix("FINDINGS "))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("the script reported nothing: {log}"));
    assert_eq!(
        findings,
        json!({
            "env": [], "env_values": [], "keys": [], "home": [], "admin_socket": false,
            "loopback": false, "interfaces": [], "route_out": false, "other_experiments": [],
            "results": [],
        }),
        "the buyer's code reached the seller's things"
    );
    assert_eq!(
        result["val_bpb"],
        Value::Null,
        "a results.tsv linked to a seller file is not read: {result}"
    );
    let beats = std::fs::read_to_string(seller.results().join(id).join("work/heartbeat")).unwrap();
    assert!(beats.trim().parse::<u64>().unwrap() > 0, "the child ran");
    let left: Vec<String> = processes_with(marker).iter().map(|p| describe(p)).collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "the setsid double-forked child outlived the run {id}"
    );
}

#[tokio::test]
async fn a_hostile_train_py_finds_none_of_the_sellers_secrets_and_dies_with_its_run() {
    let seller = Seller::new();
    let (mut child, url) = worker(&seller, &[]).await;
    let victim = submit(&url, "print('val_bpb: 1.0')  # VICTIM'S IDEA\n", "victim-1").await;
    assert_eq!(victim["status"], "completed", "{victim}");

    // Outlives the budget: the run is killed at budget + grace.
    let marker = format!("agora-sandbox-stay-{}", std::process::id());
    let r = submit(&url, &hostile(&seller, &marker, true), "attack-1").await;
    assert_eq!(r["status"], "timeout", "{r}");
    judge(&seller, &r, "attack-1", &marker);

    // Exits at once, leaving the child behind: it dies with the run all the same.
    let marker = format!("agora-sandbox-exit-{}", std::process::id());
    let r = submit(&url, &hostile(&seller, &marker, false), "attack-2").await;
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["return_code"], 0, "{r}");
    judge(&seller, &r, "attack-2", &marker);

    // The free /status names no one's run.
    let status: Value = testkit::get_json(&format!("{url}/status")).await;
    for secret in ["victim-1", "attack-1", "VICTIM", "log_path", "config"] {
        assert!(!status.to_string().contains(secret), "{secret} in {status}");
    }
    let _ = child.kill().await;
}

#[tokio::test]
async fn without_bubblewrap_simulated_by_a_missing_engine_path_the_worker_refuses_to_start() {
    let seller = Seller::new();
    let repo = testkit::autoresearch::example_repo(seller.dir.path());
    let run = |extra: &'static [&'static str]| {
        let mut command = process::agora(env!("CARGO_BIN_EXE_agora"), &seller.home());
        command.env("AGORA_BWRAP", seller.dir.path().join("no-such-bwrap"));
        command.args([
            "research",
            "worker",
            "--repo",
            repo.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--json",
        ]);
        command.args(extra);
        command
    };
    let out = process::run(run(&[]), &[], None).await;
    out.fails_saying(&[
        "bubblewrap",
        "apt-get install bubblewrap",
        "--insecure-sandbox",
    ]);

    // --insecure-sandbox accepts the weaker mode, and says what it means.
    let mut insecure = run(&["--insecure-sandbox"]);
    insecure.stderr(std::process::Stdio::piped());
    let (mut child, started, _) = process::spawn(insecure, Duration::from_secs(30)).await;
    assert_eq!(started["sandbox"], false, "{started}");
    let _ = child.kill().await;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    assert!(stderr.contains("warning: --insecure-sandbox"), "{stderr}");
}
