//! autoresearch repositories for the research tests: the shipped example as a
//! worker's repository, and a real git history of experiments (a baseline commit and
//! a better one) that the publishing tests of the research crate and the CLI read.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Creates `dir/repo` holding the shipped CPU example as its `train.py`, the
/// experiment a worker trains in the CLI tests; returns the repository.
pub fn example_repo(dir: &Path) -> PathBuf {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/autoresearch/train.py");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(example, repo.join("train.py")).unwrap();
    repo
}

/// Runs `git -C repo args` with a fixed identity and no line-ending conversion, so
/// committed bytes are exactly what was written; returns its trimmed stdout.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "core.autocrlf=false",
        ])
        .args(args)
        .output()
        .expect("git must be installed (scripts/setup)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Creates a repository at `repo` with a baseline `train.py` (val_bpb 0.997900) and a
/// second commit whose `train.py` is `better`; returns both short (7-digit) commits.
pub fn experiments(repo: &Path, better: &str) -> (String, String) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q"]);
    std::fs::write(repo.join("train.py"), "print('val_bpb: 0.997900')\n").unwrap();
    git(repo, &["add", "train.py"]);
    git(repo, &["commit", "-q", "-m", "baseline"]);
    let baseline = git(repo, &["rev-parse", "--short=7", "HEAD"]);
    std::fs::write(repo.join("train.py"), better).unwrap();
    git(repo, &["commit", "-q", "-am", "lr 0.04"]);
    let better = git(repo, &["rev-parse", "--short=7", "HEAD"]);
    (baseline, better)
}
