//! The program the daemon runs for a research offer: this agora binary as `agora
//! research worker`, with the offer's flags and sandbox, and an environment cleared of
//! the daemon's secrets. The daemon's supervisor (`seller::research_supervisor`)
//! starts, restarts and stops it.

use std::path::Path;

use anyhow::Context;
use seller::research_supervisor::annotations::SANDBOX;
use seller::research_supervisor::{LaunchError, WorkerLauncher, WorkerSpec};
use tokio::process::Command;

use crate::cmd::research::SandboxArgs;

/// Runs research workers as `agora research worker` children of the daemon.
pub(crate) struct AgoraWorker;

impl WorkerLauncher for AgoraWorker {
    fn command(&self, spec: &WorkerSpec, data_dir: &Path) -> Result<Command, LaunchError> {
        command(spec, data_dir).map_err(|e| format!("{e:#}").into())
    }
}

/// The daemon's environment variables its research workers keep.
const WORKER_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "TMPDIR",
    "AGORA_HOME",
    "AGORA_BWRAP",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CUDA_VISIBLE_DEVICES",
];

fn command(spec: &WorkerSpec, data_dir: &Path) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the agora binary to run the worker")?;
    let mut command = Command::new(exe);
    command.args([
        "research",
        "worker",
        "--repo",
        &spec.repo,
        "--budget",
        &spec.budget,
        "--grace",
        &spec.grace,
        "--listen",
        &spec.listen,
    ]);
    command.arg("--data-dir").arg(data_dir);
    if let Some(c) = &spec.train_command {
        command.args(["--train-command", c]);
    }
    let sandbox: SandboxArgs = match &spec.sandbox {
        Some(json) => serde_json::from_str(json).with_context(|| {
            format!(
                "the offer's {SANDBOX} annotation is not sandbox settings: {json}; sell the offer again"
            )
        })?,
        None => SandboxArgs::default(),
    };
    command.args(sandbox.flags());
    // The daemon holds secrets in its environment (AGORA_FACILITATOR_KEY,
    // TUNNEL_TOKEN, AGORA_BORE_SECRET); the worker gets none of them, only what
    // it needs and the variables the seller passes to runs.
    command.env_clear();
    command.envs(std::env::vars().filter(|(k, _)| {
        WORKER_ENV.contains(&k.as_str())
            || k.starts_with("NVIDIA_")
            || k.starts_with("LC_")
            || sandbox.pass_env.contains(k)
    }));
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_research_offer_runs_agora_research_worker_with_its_flags() {
        let spec = WorkerSpec {
            repo: "/r".into(),
            budget: "300".into(),
            grace: "60".into(),
            listen: "127.0.0.1:9".into(),
            train_command: None,
            sandbox: None,
        };
        let command = AgoraWorker
            .command(&spec, Path::new("/d"))
            .expect("command");
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
                "/d",
                "--pids",
                "256",
                "--disk",
                "20G"
            ]
        );
    }
}
