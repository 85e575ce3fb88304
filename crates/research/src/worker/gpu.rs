//! Which GPU this worker trains on, for its status and every result.

/// The GPU's name from `nvidia-smi`, or `None` where there is none.
pub fn detect_gpu() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.lines().next()?.trim();
    (out.status.success() && !name.is_empty()).then(|| name.to_owned())
}
