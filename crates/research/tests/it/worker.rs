//! The worker end to end over loopback HTTP with real `python3` processes: the API's
//! answers and error texts, single flight, id checks, val_bpb extraction, and the
//! timeout killing the whole process group while keeping the log.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use research::worker::sandbox::HEADER_PREFIX;
use research::worker::{Sandbox, Worker};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

const TRAIN_PY: &str = include_str!("../../../../examples/autoresearch/train.py");

struct Fixture {
    dir: tempfile::TempDir,
    worker: Arc<Worker>,
    server: testkit::loopback::Server,
}

impl Fixture {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data/autoresearch-worker")
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        support::post_experiment(&self.server.url(), body).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = testkit::http()
            .get(format!("{}{path}", self.server.url()))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn run(&self, train_py: &str, id: &str) -> Value {
        let (code, result) = self
            .post(json!({"train_py": train_py, "experiment_id": id}).to_string())
            .await;
        assert_eq!(code, 200, "{result}");
        result
    }
}

/// A sandboxed worker on a loopback port over a repo holding the example train.py and
/// some entries that must not be copied.
async fn worker(budget_secs: u64, grace_secs: u64) -> Fixture {
    worker_in(budget_secs, grace_secs, Sandbox::default()).await
}

/// What the run printed: `log` without the sandbox's header lines atop it.
fn output(log: &[u8]) -> &[u8] {
    let mut rest = log;
    while rest.starts_with(HEADER_PREFIX.as_bytes()) {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        rest = &rest[end..];
    }
    rest
}

fn output_text(log: &str) -> &str {
    std::str::from_utf8(output(log.as_bytes())).unwrap()
}

/// [`worker`] with `sandbox`; the process-group tests use the insecure mode, whose
/// pids the test can see (a sandbox's pids are its own namespace's).
async fn worker_in(budget_secs: u64, grace_secs: u64, sandbox: Sandbox) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("results/old")).unwrap();
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(repo.join("train.py"), TRAIN_PY).unwrap();
    std::fs::write(repo.join("prepare.py"), "# data preparation\n").unwrap();
    let worker = support::sandboxed_worker(
        repo,
        dir.path().join("data"),
        (budget_secs, grace_secs),
        sandbox,
    );
    let server = testkit::loopback::serve(worker.router()).await;
    Fixture {
        dir,
        worker,
        server,
    }
}

#[tokio::test]
async fn the_example_runs_with_its_env_and_becomes_the_best() {
    let f = worker(30, 30).await;
    let (code, body) = f.get("/best").await;
    assert_eq!(
        (code, body),
        (404, json!({"error": "no completed experiments yet"}))
    );
    let (code, health) = f.get("/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["busy"], false);
    assert_eq!(health["timeoutSeconds"], 60);

    let probe = f.post(r#"{"probe": true}"#).await;
    assert_eq!(
        probe,
        (
            200,
            json!({"status": "ok", "probe": true, "busy": false, "timeoutSeconds": 60})
        )
    );
    assert!(
        !f.data_dir().join("results.jsonl").exists(),
        "a probe runs nothing"
    );

    let env_py = "import json, os\nprint(json.dumps({k: os.environ.get(k) for k in ['AUTORESEARCH_EXPERIMENT_ID', 'AUTORESEARCH_EXPERIMENT_DIR', 'AUTORESEARCH_EXPERIMENT_CONFIG', 'TIME_BUDGET']}))\nprint(sorted(os.listdir('.')))\nprint(open(os.environ['AUTORESEARCH_EXPERIMENT_CONFIG']).read().replace(chr(10), ''))\nprint('val_bpb: 2.5')\n";
    let (code, env_run) = f
        .post(
            json!({"trainPy": env_py, "experimentId": "env-1", "config": {"order": 3}}).to_string(),
        )
        .await;
    assert_eq!(code, 200, "{env_run}");
    let whole = std::fs::read_to_string(env_run["log_path"].as_str().unwrap()).unwrap();
    assert!(whole.starts_with(HEADER_PREFIX), "{whole}");
    let log = output_text(&whole);
    let exp_dir = f.data_dir().join("results/env-1");
    let env: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(env["AUTORESEARCH_EXPERIMENT_ID"], "env-1");
    assert_eq!(
        env["AUTORESEARCH_EXPERIMENT_DIR"],
        exp_dir.display().to_string()
    );
    assert_eq!(
        env["AUTORESEARCH_EXPERIMENT_CONFIG"],
        exp_dir.join("config.json").display().to_string()
    );
    assert_eq!(env["TIME_BUDGET"], "30");
    assert_eq!(
        log.lines().nth(1),
        Some("['prepare.py', 'train.py']"),
        "no .git or results copied"
    );
    assert!(
        log.lines().nth(2).unwrap().contains("\"order\": 3"),
        "{log}"
    );
    assert_eq!(
        env_run["train_hash"],
        research::train_hash(env_py.as_bytes())
    );

    let result = f.run(TRAIN_PY, "example-1").await;
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["return_code"], 0);
    assert_eq!(result["val_bpb_source"], "summary_line");
    let val_bpb = result["val_bpb"].as_f64().unwrap();
    assert!(val_bpb > 0.5 && val_bpb < 2.5, "{val_bpb}");
    assert_eq!(
        result["train_hash"],
        research::train_hash(TRAIN_PY.as_bytes())
    );
    assert!(
        result["artifact_path"]
            .as_str()
            .unwrap()
            .ends_with("checkpoints/model.bin")
    );
    assert_eq!(f.get("/best").await, (200, result.clone()));
    assert_eq!(f.get("/experiments/example-1").await, (200, result.clone()));
    let (code, missing) = f.get("/experiments/nope").await;
    assert_eq!(
        (code, missing),
        (404, json!({"error": "experiment nope not found"}))
    );
    let best: Value =
        serde_json::from_slice(&std::fs::read(f.data_dir().join("best.json")).unwrap()).unwrap();
    assert_eq!(best["experiment_id"], "example-1");
    let history = std::fs::read_to_string(f.data_dir().join("results.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2);

    let (_, status) = f.get("/status").await;
    assert_eq!(status["status"], "idle");
    assert_eq!(status["total_experiments"], 2);
    assert_eq!(status["command"], json!(["python3", "train.py"]));
    // The free /status is the aggregate only: no one's result, config or paths.
    assert_eq!(
        status["best"],
        json!({"val_bpb": result["val_bpb"], "train_hash": result["train_hash"]})
    );
    assert_eq!(status["updated"], result["finishedAt"]);
    for hidden in ["last", "current"] {
        assert!(status.get(hidden).is_none(), "{hidden} in {status}");
    }
    let text = status.to_string();
    for secret in ["example-1", "env-1", "order", "model.bin", "results/"] {
        assert!(!text.contains(secret), "{secret} in {status}");
    }

    let (code, reused) = f
        .post(json!({"train_py": TRAIN_PY, "experiment_id": "example-1"}).to_string())
        .await;
    assert_eq!(code, 400);
    assert!(
        reused["error"].as_str().unwrap().contains("already exists"),
        "{reused}"
    );

    // A restarted worker keeps its best and counts.
    let again =
        support::python_worker(f.dir.path().join("repo"), f.dir.path().join("data"), 30, 30);
    assert_eq!(again.best(), Some(result));
    assert_eq!(again.status()["total_experiments"], 2);
}

#[tokio::test]
async fn a_busy_worker_answers_409_and_runs_one_at_a_time() {
    let f = worker(30, 30).await;
    let slow = "import time\ntime.sleep(1.5)\nprint('val_bpb: 1.0')\n";
    let first = {
        let url = f.server.url();
        tokio::spawn(async move {
            testkit::http()
                .post(format!("{url}/experiment"))
                .json(&json!({"train_py": slow, "experiment_id": "slow-1"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let worker = f.worker.clone();
    testkit::eventually("the first run to start", Duration::from_secs(10), || {
        let busy = worker.busy();
        async move { busy }
    })
    .await;
    let (_, health) = f.get("/health").await;
    assert_eq!(health["busy"], true);
    let (_, status) = f.get("/status").await;
    assert_eq!(status["status"], "busy");
    assert!(
        !status.to_string().contains("slow-1"),
        "the free /status names no one's run: {status}"
    );
    let (code, body) = f
        .post(json!({"train_py": slow, "experiment_id": "slow-2"}).to_string())
        .await;
    assert_eq!(
        (code, body),
        (
            409,
            json!({"error": "worker is already running an experiment", "status": "busy"})
        )
    );
    let (code, probe) = f.post(r#"{"probe": true}"#).await;
    assert_eq!((code, probe["busy"].clone()), (200, json!(true)));
    assert_eq!(first.await.unwrap(), 200);
    assert!(
        !f.data_dir().join("results/slow-2").exists(),
        "the refused run left nothing"
    );
    assert_eq!(f.run(slow, "slow-3").await["status"], "completed");
}

/// Sends a raw HTTP/1.1 GET with `target` exactly as written (a client library would
/// resolve `..` segments before sending) and returns the status code and body.
async fn raw_get(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (code, body)
}

#[tokio::test]
async fn path_traversal_ids_are_refused_on_get_and_post() {
    let f = worker(30, 30).await;
    // A file the traversals aim at, next to the results directory.
    std::fs::write(f.data_dir().join("secret.json"), r#"{"secret": true}"#).unwrap();
    std::fs::create_dir_all(f.data_dir().join("results/x")).unwrap();
    let targets = [
        "/experiments/..",
        "/experiments/../secret.json",
        "/experiments/..%2fsecret.json",
        "/experiments/%2e%2e",
        "/experiments/x/../../secret.json",
        "/experiments/x%00",
        "/experiments/a.b",
        "/experiments/",
        "/experiments/~root",
        "/experiments/..%5c..%5csecret.json",
    ];
    for target in targets {
        let (code, body) = raw_get(f.server.addr, target).await;
        assert_eq!(code, 400, "{target}: {body}");
        assert_eq!(body, r#"{"error":"invalid experiment id"}"#, "{target}");
    }
    for id in [
        "..",
        "../secret",
        "..\\x",
        "a/b",
        "x\u{0}",
        "/etc/passwd",
        "a b",
        "",
        "é",
    ] {
        let (code, body) = f
            .post(json!({"train_py": "print(1)", "experiment_id": id}).to_string())
            .await;
        assert_eq!(code, 400, "{id:?}");
        assert_eq!(
            body["error"],
            "experiment_id must contain only alphanumeric characters, hyphens, or underscores"
        );
    }
    let (code, body) = f
        .post(r#"{"train_py": "print(1)", "experiment_id": 7}"#)
        .await;
    assert_eq!(
        (code, body["error"].clone()),
        (400, json!("experiment_id must be a string when provided"))
    );
    assert_eq!(
        std::fs::read_dir(f.data_dir().join("results"))
            .unwrap()
            .count(),
        1,
        "nothing was created"
    );
}

#[tokio::test]
async fn garbage_and_oversized_requests_get_400() {
    let f = worker(30, 30).await;
    let (code, body) = f.post("{not json").await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body: "),
        "{body}"
    );
    assert_eq!(
        f.post("[1,2]").await,
        (400, json!({"error": "JSON body must be an object"}))
    );
    assert_eq!(
        f.post("").await,
        (400, json!({"error": "train_py string is required"}))
    );
    assert_eq!(
        f.post(r#"{"train_py": "  "}"#).await,
        (400, json!({"error": "train_py string is required"}))
    );
    assert_eq!(
        f.post(r#"{"train_py": "print(1)", "config": [1]}"#).await,
        (
            400,
            json!({"error": "config must be a JSON object when provided"})
        )
    );
    let big = "#".repeat(research::worker::MAX_TRAIN_PY + 1);
    let (code, body) = f.post(json!({"train_py": big}).to_string()).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the most this worker accepts is 1048576"),
        "{body}"
    );
    let huge = "#".repeat(research::worker::MAX_BODY + 1);
    let (code, body) = f.post(json!({"train_py": huge}).to_string()).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("request body is over"),
        "{body}"
    );
    assert_eq!(
        f.get("/nowhere").await,
        (404, json!({"error": "unknown endpoint: /nowhere"}))
    );
    let r = testkit::http()
        .get(format!("{}/experiment", f.server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(!f.data_dir().join("results.jsonl").exists());
}

#[tokio::test]
async fn val_bpb_is_the_final_evaluation_then_json_then_results_tsv() {
    let f = worker(30, 30).await;
    let early_then_final = "print('val_bpb: 1.900000')\nprint('step 1', end='\\r')\nprint('---')\nprint('val_bpb:          0.997900')\nprint('training_seconds: 0.1')\n";
    let r = f.run(early_then_final, "early-final").await;
    assert_eq!(
        (r["status"].clone(), r["val_bpb"].clone()),
        (json!("completed"), json!(0.9979))
    );
    assert_eq!(r["val_bpb_source"], "summary_line");

    let json_out = "import json\nprint('loading')\nprint(json.dumps({'metrics': {'val_bpb': 1.125}, 'steps': 3}))\n";
    let r = f.run(json_out, "json-out").await;
    assert_eq!(
        (r["val_bpb"].clone(), r["val_bpb_source"].clone()),
        (json!(1.125), json!("json"))
    );

    let pattern = "print('eval val_bpb=1.5')\nprint('final: VAL_BPB = 1.25')\n";
    let r = f.run(pattern, "pattern").await;
    assert_eq!(
        (r["val_bpb"].clone(), r["val_bpb_source"].clone()),
        (json!(1.25), json!("pattern"))
    );

    let tsv = "open('results.tsv', 'w').write('commit\\tval_bpb\\tmemory_gb\\tstatus\\tdescription\\na1\\t1.02\\t4.0\\tkeep\\tbase\\nb2\\t1.01\\t4.1\\tkeep\\tlr\\nc3\\t0.000000\\t0.0\\tcrash\\toom\\n')\nprint('done')\n";
    let r = f.run(tsv, "tsv").await;
    assert_eq!(
        (r["val_bpb"].clone(), r["val_bpb_source"].clone()),
        (json!(1.01), json!("results_tsv"))
    );

    let none = "print('trained, but reported nothing')\n";
    let r = f.run(none, "none").await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["val_bpb"], Value::Null);
    assert!(
        r["note"].as_str().unwrap().contains("printed no val_bpb"),
        "{r}"
    );

    let crash = "import sys\nprint('val_bpb: 0.5')\nsys.exit('CUDA out of memory')\n";
    let r = f.run(crash, "crash").await;
    assert_eq!(
        (r["status"].clone(), r["return_code"].clone()),
        (json!("failed"), json!(1))
    );
    let log = std::fs::read_to_string(r["log_path"].as_str().unwrap()).unwrap();
    assert_eq!(
        output_text(&log),
        "val_bpb: 0.5\n\n--- stderr ---\nCUDA out of memory\n"
    );

    // Only completed runs count as best: the crash's 0.5 does not.
    assert_eq!(f.get("/best").await.1["experiment_id"], "early-final");
}

/// Whether `pid` is a live process (a zombie, already dead, is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn at_the_timeout_the_whole_group_dies_and_the_log_is_kept() {
    let insecure = Sandbox {
        insecure: true,
        ..Sandbox::default()
    };
    let f = worker_in(1, 1, insecure).await;
    let pids = f.dir.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    // The script forks a sleeping child that ignores SIGTERM, prints invalid UTF-8
    // and a progress line on both streams, and never finishes.
    let forking = format!(
        r#"import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open({dir:?} + "/child", "w").write(str(child.pid))
open({dir:?} + "/leader", "w").write(str(os.getpid()))
sys.stdout.buffer.write(b"val_bpb: 1.7\nbinary \xff\xfe end\nstep 1\r")
sys.stdout.flush()
sys.stderr.write("still training\n")
sys.stderr.flush()
time.sleep(600)
"#,
        dir = pids.display().to_string()
    );
    let started = std::time::Instant::now();
    let r = f.run(&forking, "forks-1").await;
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(r["return_code"], -1);
    assert!(
        r["note"]
            .as_str()
            .unwrap()
            .contains("exceeded timeout of 2s"),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let (leader, child) = (
        read_pid(&pids.join("leader")),
        read_pid(&pids.join("child")),
    );
    testkit::eventually(
        "the group to be gone",
        Duration::from_secs(5),
        || async move { !alive(leader) && !alive(child) },
    )
    .await;
    let log = std::fs::read(r["log_path"].as_str().unwrap()).unwrap();
    assert_eq!(
        output(&log),
        b"val_bpb: 1.7\nbinary \xff\xfe end\nstep 1\r\n--- stderr ---\nstill training\n"
    );
    assert_eq!(
        r["val_bpb"], 1.7,
        "a timed-out run still reports what it printed"
    );
    assert_eq!(f.get("/experiments/forks-1").await.1, r);
    let saved = std::fs::read_to_string(f.data_dir().join("results.jsonl")).unwrap();
    assert!(saved.contains("\"timeout\""));
    assert_eq!(f.get("/best").await.0, 404, "a timeout is never the best");
    assert!(!f.worker.busy());
}

#[test]
fn the_gpu_example_is_valid_python() {
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "py_compile",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/autoresearch/train_gpu.py"
            ),
        ])
        .env(
            "PYTHONPYCACHEPREFIX",
            std::env::temp_dir().join("agora-pycache"),
        )
        .output()
        .expect("python3 must be installed (scripts/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn shutting_down_kills_the_running_group_and_saves_why() {
    let insecure = Sandbox {
        insecure: true,
        ..Sandbox::default()
    };
    let f = worker_in(300, 300, insecure).await;
    let pid_file = f.dir.path().join("leader");
    let long = format!(
        "import os, time\nopen({:?}, 'w').write(str(os.getpid()))\nprint('started', flush=True)\ntime.sleep(600)\n",
        pid_file.display().to_string()
    );
    let run = {
        let url = f.server.url();
        tokio::spawn(async move {
            testkit::http()
                .post(format!("{url}/experiment"))
                .json(&json!({"train_py": long, "experiment_id": "long-1"}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let leader = pid_file.clone();
    testkit::eventually("the run to start", Duration::from_secs(10), || {
        let started = leader.exists();
        async move { started }
    })
    .await;
    let pid = read_pid(&pid_file);
    f.worker.shut_down();
    let result = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the run ends at once")
        .unwrap();
    assert_eq!(result["status"], "failed", "{result}");
    assert!(
        result["note"].as_str().unwrap().contains("shut down"),
        "{result}"
    );
    assert!(!alive(pid));
    let log = std::fs::read_to_string(result["log_path"].as_str().unwrap()).unwrap();
    assert_eq!(output_text(&log), "started\n");
    let (code, body) = f.post(json!({"train_py": "print(1)"}).to_string()).await;
    assert_eq!(code, 500);
    assert_eq!(
        body["error"],
        "internal worker error: the worker is shutting down"
    );
}
