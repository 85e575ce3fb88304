//! The sandbox a buyer's `train.py` runs in. A buyer pays cents for a run and sends
//! arbitrary code, so the run must see nothing of the seller: not its environment
//! (gas key, tunnel token, bore secret), not its files (`$AGORA_HOME`, key files, the
//! admin socket, other buyers' experiments), not its network (the seller's loopback
//! services included), and it must not outlive its time budget.
//!
//! The engine is bubblewrap (`bwrap`): a mount namespace holding only the system
//! read-only, a tmpfs `/tmp` and the experiment's work directory read-write, plus PID,
//! IPC, UTS and (unless `--allow-network`) network namespaces. The run is the PID
//! namespace's child, so killing the namespace's init kills every process the run
//! started, `setsid` and double forks included. Limits come from rlimits set by
//! util-linux `prlimit` inside the sandbox (address space, processes, file size, no
//! core files), which need no cgroup controller; the disk is also watched by the
//! worker (see `run.rs`). When agora runs as root, util-linux `setpriv` drops the run
//! to an unprivileged user (`--run-as`, default `agora-run` when it exists, else
//! `nobody`) with no capabilities and `no_new_privs`.
//!
//! Where a protection cannot be had, [`Sandbox::prepare`] refuses, naming what is
//! missing, how to install it, and `--insecure-sandbox`, which accepts a run with only
//! a cleared environment and the rlimits.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The default process limit: enough for a data loader's workers, far from a fork bomb.
pub const DEFAULT_PIDS: u64 = 256;
/// The default disk limit (bytes): the largest file and the work directory's total.
pub const DEFAULT_DISK: u64 = 20 << 30;
/// [`DEFAULT_DISK`] as the `--disk` flag writes it.
pub const DEFAULT_DISK_TEXT: &str = "20G";

/// Each line of the header the worker writes atop `run.log` starts with this, so the
/// buyer reads what the run could not reach, and the worker can tell it from output.
pub const HEADER_PREFIX: &str = "# agora sandbox: ";

/// Environment variables passed to the run by name (besides `AUTORESEARCH_*`,
/// `TIME_BUDGET`, `HOME` and `TMPDIR`, which the worker sets, and `NVIDIA_*`).
const PASSED: &[&str] = &["PATH", "LANG", "CUDA_VISIBLE_DEVICES"];

/// `/etc` entries the run sees (read-only): the loader's cache, time zone, users (for
/// `getpwuid`), TLS roots and Python's own. Nothing of the seller's is kept in these.
const ETC: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "ssl",
    "ca-certificates",
    "mime.types",
    "python3",
];

/// System directories the run sees read-only (or as the symlinks they are).
const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// How buyers' code is confined; see the module docs.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Run without the engine: a cleared environment and rlimits only. The run can
    /// then read this user's files and reach the network (`--insecure-sandbox`).
    pub insecure: bool,
    /// The bubblewrap binary: a name looked up on `PATH`, or a path.
    pub engine: PathBuf,
    /// Give the run this host's network (`--allow-network`).
    pub allow_network: bool,
    /// More environment variables passed by name (`--pass-env`).
    pub pass_env: Vec<String>,
    /// The user the run becomes when agora runs as root (`--run-as`); `None` picks
    /// `agora-run` when it exists, else `nobody`.
    pub run_as: Option<String>,
    /// Address space per process, bytes (`--memory`); `None`: 3/4 of the RAM without
    /// a GPU, no limit with one (CUDA reserves address space far beyond the RAM).
    pub memory: Option<u64>,
    /// Processes and threads of the run's user (`--pids`).
    pub pids: u64,
    /// The largest file, the `/tmp` size and the work directory's total (`--disk`).
    pub disk: u64,
    /// More directories the run sees read-only, e.g. a dataset or a virtualenv
    /// (`--ro-path`).
    pub ro_paths: Vec<PathBuf>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            insecure: false,
            engine: PathBuf::from("bwrap"),
            allow_network: false,
            pass_env: Vec::new(),
            run_as: None,
            memory: None,
            pids: DEFAULT_PIDS,
            disk: DEFAULT_DISK,
            ro_paths: Vec::new(),
        }
    }
}

/// A sandbox checked on this host, ready to wrap runs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The configuration it came from.
    pub config: Sandbox,
    /// The engine's resolved path; `None` in the insecure mode.
    engine: Option<PathBuf>,
    /// `prlimit`'s path, when found (the insecure mode runs without it if missing).
    prlimit: Option<PathBuf>,
    /// `setpriv`'s path and the uid, gid and name the run becomes (agora as root).
    user: Option<(PathBuf, u32, u32, String)>,
    /// The address-space limit in force.
    memory: Option<u64>,
    /// `/dev/nvidia*` devices bound into the sandbox.
    gpus: Vec<PathBuf>,
}

/// What one run needs to be wrapped.
pub struct RunPaths<'a> {
    /// The experiment's work directory: the only writable place, and `HOME`.
    pub workdir: &'a Path,
    /// Files the run reads at their own path (the experiment's config.json).
    pub read_only: &'a [&'a Path],
}

/// The program, arguments and environment that run a command in the sandbox.
pub struct Wrapped {
    /// What to execute.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The whole environment (everything else is cleared).
    pub env: Vec<(String, String)>,
    /// The uid and gid to chown the work directory to, when the run changes user.
    pub owner: Option<(u32, u32)>,
}

impl Sandbox {
    /// Checks this host can give every protection (engine, namespaces, limit and
    /// user-switching tools), and resolves the user and limits. An error names what
    /// is missing, how to install it, and `--insecure-sandbox`.
    pub fn prepare(&self, data_dir: &Path) -> Result<Prepared, String> {
        let root = rustix::process::getuid().is_root();
        if self.pids == 0 || self.disk == 0 {
            return Err(format!(
                "--pids and --disk must be above 0 (defaults: --pids {DEFAULT_PIDS} --disk {DEFAULT_DISK_TEXT})"
            ));
        }
        if self.run_as.is_some() && !root {
            return Err(
                "--run-as needs agora to run as root (only root can switch users); drop --run-as, and the run keeps this user inside the sandbox".into(),
            );
        }
        for path in &self.ro_paths {
            if data_dir.starts_with(path) {
                return Err(format!(
                    "--ro-path {} holds the worker's data directory, so every run would read other buyers' experiments: name a directory outside {}",
                    path.display(),
                    data_dir.display()
                ));
            }
            if !path.is_absolute() || !path.exists() {
                return Err(format!(
                    "--ro-path {}: not an existing absolute path",
                    path.display()
                ));
            }
        }
        for name in &self.pass_env {
            if name.is_empty() || name.contains('=') {
                return Err(format!(
                    "--pass-env {name:?}: give a variable's name, e.g. --pass-env HF_TOKEN"
                ));
            }
        }
        let gpus = gpu_devices();
        let memory = self.memory.or_else(|| {
            gpus.is_empty()
                .then(|| mem_total().map(|m| m / 4 * 3))
                .flatten()
        });
        let prlimit = which("prlimit");
        let mut prepared = Prepared {
            config: self.clone(),
            engine: None,
            prlimit,
            user: None,
            memory,
            gpus,
        };
        if self.insecure {
            return Ok(prepared);
        }
        let insecure = "or pass --insecure-sandbox to run buyers' code with only a cleared environment and rlimits (it can then read this user's files, including $AGORA_HOME and its keys, and reach the network)";
        let engine = which_path(&self.engine).ok_or_else(|| {
            format!(
                "the sandbox engine bubblewrap ({}) is not installed, so buyers' train.py would run with this user's files and network: install it (apt-get install bubblewrap, or scripts/setup), {insecure}",
                self.engine.display()
            )
        })?;
        if prepared.prlimit.is_none() {
            return Err(format!(
                "prlimit (util-linux) is not installed, so runs would have no memory, process or disk limit: install it (apt-get install util-linux), {insecure}"
            ));
        }
        if root {
            let setpriv = which("setpriv").ok_or_else(|| {
                format!(
                    "setpriv (util-linux) is not installed, so runs would keep root: install it (apt-get install util-linux), {insecure}"
                )
            })?;
            let name = self.run_as.clone().unwrap_or_else(|| {
                if lookup_user("agora-run").is_some() {
                    "agora-run".into()
                } else {
                    "nobody".into()
                }
            });
            let (uid, gid) = lookup_user(&name).ok_or_else(|| {
                format!(
                    "--run-as {name}: no such user in /etc/passwd: create it (useradd --system --no-create-home --shell /usr/sbin/nologin {name}, or scripts/setup for agora-run) or name another"
                )
            })?;
            if uid == 0 {
                return Err(format!(
                    "--run-as {name} is root: name an unprivileged user (default agora-run, else nobody)"
                ));
            }
            prepared.user = Some((setpriv, uid, gid, name));
        }
        prepared.engine = Some(engine);
        prepared.probe()?;
        Ok(prepared)
    }
}

impl Prepared {
    /// Whether runs are confined (false with `--insecure-sandbox`).
    pub fn confined(&self) -> bool {
        self.engine.is_some()
    }

    /// The user runs become (agora as root), `None` when they keep this one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|(_, _, _, name)| name.as_str())
    }

    /// The disk limit, bytes.
    pub fn disk(&self) -> u64 {
        self.config.disk
    }

    /// Starts the engine once with the namespaces every run gets, so a host whose
    /// kernel refuses them (user namespaces off, a seccomp'd container) is found at
    /// startup rather than at a buyer's paid run.
    fn probe(&self) -> Result<(), String> {
        let dir = std::env::temp_dir();
        let wrapped = self.wrap(
            &["true".to_string()],
            &RunPaths {
                workdir: &dir,
                read_only: &[],
            },
            Vec::new(),
        );
        let out = std::process::Command::new(&wrapped.program)
            .args(&wrapped.args)
            .env_clear()
            .envs(wrapped.env)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run the sandbox engine: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "the sandbox engine cannot create its namespaces on this host ({}): {}; enable user namespaces (sysctl user.max_user_namespaces=15000; on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0) or run agora as root, or pass --insecure-sandbox to run buyers' code with only a cleared environment and rlimits (it can then read this user's files and reach the network)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// `command` wrapped in the sandbox for one run, with the cleared environment
    /// plus `extra` (the worker's `AUTORESEARCH_*` and `TIME_BUDGET`).
    pub fn wrap(
        &self,
        command: &[String],
        paths: &RunPaths<'_>,
        extra: Vec<(String, String)>,
    ) -> Wrapped {
        let env = self.environment(paths.workdir, extra);
        let mut inner: Vec<OsString> = Vec::new();
        if let Some(prlimit) = &self.prlimit {
            inner.push(prlimit.clone().into());
            if let Some(memory) = self.memory {
                inner.push(format!("--as={memory}").into());
            }
            inner.push(format!("--nproc={}", self.config.pids).into());
            inner.push(format!("--fsize={}", self.config.disk).into());
            inner.push("--core=0".into());
            inner.push("--".into());
        }
        if let Some((setpriv, uid, gid, _)) = &self.user {
            inner.push(setpriv.clone().into());
            inner.extend(
                [
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                    "--inh-caps=-all".into(),
                    "--bounding-set=-all".into(),
                    "--no-new-privs".into(),
                    "--".into(),
                ]
                .map(OsString::from),
            );
        }
        inner.extend(command.iter().map(OsString::from));
        let owner = self.user.as_ref().map(|(_, uid, gid, _)| (*uid, *gid));
        let Some(engine) = &self.engine else {
            let (program, args) = match inner.split_first() {
                Some((p, a)) => (p.clone(), a.to_vec()),
                None => (OsString::new(), Vec::new()),
            };
            return Wrapped {
                program,
                args,
                env,
                owner,
            };
        };
        let mut b = Bwrap::default();
        b.flags(&[
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
        ]);
        if !self.config.allow_network {
            b.flags(&["--unshare-net"]);
        }
        if self.user.is_none() {
            // Not root: the engine needs a user namespace for its mounts; the run
            // keeps this uid inside it and cannot nest another one.
            b.flags(&["--unshare-user", "--disable-userns"]);
        }
        for dir in SYSTEM {
            let path = Path::new(dir);
            match std::fs::read_link(path) {
                Ok(target) => b.symlink(&target, path),
                Err(_) if path.is_dir() => b.ro_bind(path),
                Err(_) => {}
            }
        }
        b.dir(Path::new("/etc"));
        for name in ETC {
            let path = Path::new("/etc").join(name);
            if path.exists() {
                b.ro_bind(&path);
            }
        }
        if self.config.allow_network && Path::new("/etc/resolv.conf").exists() {
            b.ro_bind(Path::new("/etc/resolv.conf"));
        }
        b.flags(&["--proc", "/proc", "--dev", "/dev"]);
        for gpu in &self.gpus {
            b.push("--dev-bind");
            b.push(gpu);
            b.push(gpu);
        }
        if !self.gpus.is_empty() {
            // CUDA reads the PCI topology from /sys; nothing of the seller's is there.
            b.ro_bind(Path::new("/sys"));
        }
        b.push("--perms");
        b.push("1777");
        b.push("--size");
        b.push(self.config.disk.to_string());
        b.push("--tmpfs");
        b.push("/tmp");
        b.made.insert(PathBuf::from("/tmp"));
        for path in &self.config.ro_paths {
            b.ro_bind(path);
        }
        b.bind(paths.workdir);
        for path in paths.read_only {
            b.ro_bind(path);
        }
        b.push("--chdir");
        b.push(paths.workdir);
        b.push("--");
        b.args.extend(inner);
        Wrapped {
            program: engine.clone().into(),
            args: b.args,
            env,
            owner,
        }
    }

    /// The run's whole environment: [`PASSED`], `NVIDIA_*` and `--pass-env` names
    /// from this process, `HOME` (the work directory), `TMPDIR`, then `extra`.
    fn environment(&self, workdir: &Path, extra: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                PASSED.contains(&k.as_str())
                    || k.starts_with("NVIDIA_")
                    || self.config.pass_env.iter().any(|p| p == k)
            })
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        env.push(("HOME".into(), workdir.display().to_string()));
        let tmp = if self.confined() {
            "/tmp".to_string()
        } else {
            std::env::temp_dir().display().to_string()
        };
        env.push(("TMPDIR".into(), tmp));
        env.push(("PYTHONUNBUFFERED".into(), "1".into()));
        env.extend(extra);
        env
    }

    /// The lines written atop `run.log`: what the run can and cannot reach, so a
    /// buyer whose script failed on a refused resource reads why.
    pub fn header(&self) -> String {
        let gib = |b: u64| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30));
        let limits = format!(
            "limits: {}, {} processes, files and disk {}",
            self.memory
                .map(|m| format!("memory {} per process", gib(m)))
                .unwrap_or_else(|| "memory unlimited".into()),
            self.config.pids,
            gib(self.config.disk)
        );
        let mut env = vec![
            "PATH, LANG, HOME, TMPDIR, AUTORESEARCH_*, TIME_BUDGET, CUDA_VISIBLE_DEVICES, NVIDIA_*"
                .to_string(),
        ];
        env.extend(self.config.pass_env.iter().cloned());
        let lines = if self.confined() {
            let network = if self.config.allow_network {
                "this host's network (the seller passed --allow-network)".to_string()
            } else {
                "none: no internet, no DNS, no host services; only the sandbox's own loopback"
                    .to_string()
            };
            let user = match &self.user {
                Some((_, uid, _, name)) => format!("{name} (uid {uid}), no capabilities"),
                None => "the seller's uid inside a user namespace, no capabilities".into(),
            };
            let mut ro = vec!["/usr".to_string(), "/etc (system files only)".into()];
            ro.extend(self.config.ro_paths.iter().map(|p| p.display().to_string()));
            vec![
                format!(
                    "files: this directory (read-write, also HOME) and /tmp (tmpfs); read-only: {}; nothing else of this machine (no seller files, keys or other experiments)",
                    ro.join(", ")
                ),
                format!("network: {network}"),
                format!("user: {user}"),
                format!("environment: only {}", env.join(", ")),
                format!("{limits}; every process of the run is killed at the time limit"),
                format!(
                    "GPUs: {}",
                    if self.gpus.is_empty() {
                        "none".to_string()
                    } else {
                        self.gpus
                            .iter()
                            .map(|g| g.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ]
        } else {
            vec![
                "OFF (the seller passed --insecure-sandbox): this run has the seller's user, files and network".into(),
                format!("environment: only {}", env.join(", ")),
                limits,
            ]
        };
        lines
            .into_iter()
            .map(|l| format!("{HEADER_PREFIX}{l}\n"))
            .collect()
    }
}

/// bwrap's arguments, creating each mount point's missing parents with mode 0755
/// (bwrap's own would be 0700, unreadable to the run's user).
#[derive(Default)]
struct Bwrap {
    args: Vec<OsString>,
    made: BTreeSet<PathBuf>,
    read_only: Vec<PathBuf>,
}

impl Bwrap {
    fn push(&mut self, arg: impl Into<OsString>) {
        self.args.push(arg.into());
    }

    fn push_path(&mut self, path: &Path) {
        self.args.push(path.as_os_str().to_owned());
    }

    fn flags(&mut self, flags: &[&str]) {
        self.args.extend(flags.iter().map(OsString::from));
    }

    /// `--dir` for each missing ancestor of `path`, and `path` itself noted.
    fn parents(&mut self, path: &Path) {
        let ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        for dir in ancestors.into_iter().rev() {
            if dir == Path::new("/") || self.made.contains(dir) {
                continue;
            }
            if self.read_only.iter().any(|r| dir.starts_with(r)) {
                return;
            }
            self.dir(dir);
        }
        self.made.insert(path.to_path_buf());
    }

    fn dir(&mut self, dir: &Path) {
        if self.made.insert(dir.to_path_buf()) {
            self.flags(&["--perms", "0755", "--dir"]);
            self.push_path(dir);
        }
    }

    fn ro_bind(&mut self, path: &Path) {
        self.parents(path);
        self.push("--ro-bind");
        self.push_path(path);
        self.push_path(path);
        self.read_only.push(path.to_path_buf());
    }

    fn bind(&mut self, path: &Path) {
        self.parents(path);
        self.push("--bind");
        self.push_path(path);
        self.push_path(path);
    }

    fn symlink(&mut self, target: &Path, path: &Path) {
        self.made.insert(path.to_path_buf());
        self.push("--symlink");
        self.push_path(target);
        self.push_path(path);
    }
}

/// `/dev/nvidia*` (and `/dev/nvidia-caps`), bound so CUDA works in the sandbox.
fn gpu_devices() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The RAM in bytes, from `/proc/meminfo`.
fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `name`'s uid and gid from `/etc/passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// `name` found on `PATH`, or in the usual system directories (a worker started with
/// a bare environment still finds util-linux).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `engine` as given when it holds a `/`, else looked up like [`which`].
fn which_path(engine: &Path) -> Option<PathBuf> {
    if engine.components().count() > 1 {
        engine.is_file().then(|| engine.to_path_buf())
    } else {
        which(&engine.to_string_lossy())
    }
}

/// A size like `8G`, `512M`, `100k` or plain bytes (binary multiples), for
/// `--memory` and `--disk`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: write a size like 8G, 512M or 1T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: write a size like 8G, 512M or 1T"))?;
    n.checked_mul(1u64 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{text:?}: give a size above 0 and below 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_binary_suffixes() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size(DEFAULT_DISK_TEXT), Ok(DEFAULT_DISK));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("8X").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn a_missing_engine_is_refused_naming_the_package_and_the_flag() {
        let sandbox = Sandbox {
            engine: PathBuf::from("/nonexistent/bwrap"),
            ..Sandbox::default()
        };
        let e = sandbox
            .prepare(Path::new("/nonexistent-data"))
            .expect_err("no engine");
        assert!(e.contains("apt-get install bubblewrap"), "{e}");
        assert!(e.contains("--insecure-sandbox"), "{e}");
    }

    #[test]
    fn the_environment_is_an_allow_list() {
        let prepared = Sandbox {
            insecure: true,
            pass_env: vec!["HF_TOKEN".into()],
            ..Sandbox::default()
        }
        .prepare(Path::new("/nonexistent-data"))
        .expect("insecure needs nothing");
        let env = prepared.environment(Path::new("/w"), vec![("TIME_BUDGET".into(), "3".into())]);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names.iter().all(|n| [
                "PATH",
                "LANG",
                "CUDA_VISIBLE_DEVICES",
                "HOME",
                "TMPDIR",
                "PYTHONUNBUFFERED",
                "TIME_BUDGET",
                "HF_TOKEN"
            ]
            .contains(n)
                || n.starts_with("NVIDIA_")),
            "{names:?}"
        );
        assert!(env.contains(&("HOME".into(), "/w".into())));
    }
}
