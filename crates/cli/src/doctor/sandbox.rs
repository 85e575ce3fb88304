//! Doctor's `sandbox` check: can this host confine buyers' `train.py` the way `agora
//! research worker` and `agora sell research` do by default (bubblewrap, namespaces,
//! rlimit and user-switching tools)? Checked by preparing the default sandbox exactly
//! as the worker does, so doctor and the worker never disagree; a host that cannot is
//! a warning, not a failure, since only research sellers need it.

use serde_json::json;

use super::Check;

/// The sandbox's state, with the fix (the install command, or `--insecure-sandbox`)
/// when it cannot confine runs here.
pub(super) fn sandbox_check() -> Check {
    const NAME: &str = "sandbox";
    let data_dir = match wallet::home::agora_home() {
        Ok(home) => home.join("research"),
        Err(e) => return Check::skip(NAME, format!("no agora home: {e}")),
    };
    let config = match crate::research::SandboxArgs::default().sandbox() {
        Ok(config) => config,
        Err(e) => return Check::skip(NAME, format!("{e:#}")),
    };
    let root = rustix::process::getuid().is_root();
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let cgroup2 = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.controllers",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    let details = json!({
        "engine": config.engine,
        "root": root,
        "maxUserNamespaces": userns,
        "cgroupV2Controllers": cgroup2,
        "limits": "rlimits (address space, processes, file size) via prlimit; the work directory's size is watched",
    });
    match config.prepare(&data_dir) {
        Ok(prepared) => {
            let user = prepared.user().unwrap_or("this user's, in a user namespace");
            Check::ok(
                NAME,
                format!(
                    "buyers' train.py runs in bubblewrap: no network, no seller files or environment, user {user}, every process killed at the time limit"
                ),
            )
            .details(details)
        }
        Err(e) => Check::warn(
            NAME,
            format!("research runs cannot be sandboxed here: {e}"),
            "apt-get install bubblewrap util-linux (or scripts/setup); else agora research worker / agora sell research refuse to start unless given --insecure-sandbox",
        )
        .details(details),
    }
}
