//! Doctor's `sandbox` check: can this host confine buyers' `train.py` the way research
//! workers do by default (bubblewrap, namespaces, rlimit and user-switching tools)?
//! Checked by preparing the given sandbox exactly as the worker does, so doctor and the
//! worker never disagree; a host that cannot is a warning, not a failure, since only
//! research sellers need it.

use std::path::PathBuf;

use research::worker::Sandbox;
use serde::Serialize;

use super::{Check, Details, Fix};

/// What the sandbox depends on, on this host, for a report's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxHost {
    /// The bubblewrap binary used.
    pub engine: PathBuf,
    /// Whether this process runs as root (runs then switch to another user).
    pub root: bool,
    /// `/proc/sys/user/max_user_namespaces`, when readable.
    pub max_user_namespaces: Option<u64>,
    /// The cgroup v2 controllers available, when cgroup v2 is mounted.
    pub cgroup_v2_controllers: Option<Vec<String>>,
    /// How runs are limited.
    pub limits: &'static str,
}

/// The sandbox's state, with the fix when it cannot confine runs here.
pub(super) fn sandbox_check(sandbox: &Result<Sandbox, String>) -> Check {
    const NAME: &str = "sandbox";
    let data_dir = match wallet::home::agora_home() {
        Ok(home) => home.join("research"),
        Err(e) => return Check::skip(NAME, format!("no agora home: {e}")),
    };
    let config = match sandbox {
        Ok(config) => config,
        Err(e) => return Check::skip(NAME, e.clone()),
    };
    let host = SandboxHost {
        engine: config.engine.clone(),
        root: rustix::process::getuid().is_root(),
        max_user_namespaces: std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok()),
        cgroup_v2_controllers: [
            "/sys/fs/cgroup/cgroup.controllers",
            "/sys/fs/cgroup/unified/cgroup.controllers",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|c| c.split_whitespace().map(str::to_string).collect()),
        limits: "rlimits (address space, processes, file size) via prlimit; the work directory's size is watched",
    };
    match config.prepare(&data_dir) {
        Ok(prepared) => {
            let user = prepared
                .user()
                .unwrap_or("this user's, in a user namespace");
            Check::ok(
                NAME,
                format!(
                    "buyers' train.py runs in bubblewrap: no network, no seller files or environment, user {user}, every process killed at the time limit"
                ),
            )
            .details(Details::Sandbox(host))
        }
        Err(e) => Check::warn(
            NAME,
            format!("research runs cannot be sandboxed here: {e}"),
            Fix::InstallSandbox,
        )
        .details(Details::Sandbox(host)),
    }
}
