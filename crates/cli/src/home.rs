//! `$AGORA_HOME`: where agora keeps its state (databases, keys) on this machine.
//!
//! One place decides the location so every command agrees on it: `$AGORA_HOME` when
//! set, else the platform data dir + `/agora` (`$XDG_DATA_HOME/agora`, falling back to
//! `~/.local/share/agora` on Linux, `~/Library/Application Support/agora` on macOS).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The agora state directory (not created here).
pub fn agora_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("AGORA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    Ok(platform_data_dir()?.join("agora"))
}

fn platform_data_dir() -> anyhow::Result<PathBuf> {
    if !cfg!(target_os = "macos")
        && let Some(xdg) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg);
    }
    let Some(home) = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    else {
        bail!("cannot find a data directory: HOME is not set; set AGORA_HOME=/some/dir");
    };
    Ok(if cfg!(target_os = "macos") {
        home.join("Library/Application Support")
    } else {
        home.join(".local/share")
    })
}

/// Creates `dir` and its missing parents, new ones private to this user (0700), since
/// agora's state includes settlement records and keys.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}
