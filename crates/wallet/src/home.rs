//! `$AGORA_HOME`: where agora keeps its state (databases, keys) on this machine.
//!
//! One place decides the location so every command agrees on it: `$AGORA_HOME` when
//! set, else the platform data dir + `/agora` (`$XDG_DATA_HOME/agora`, falling back to
//! `~/.local/share/agora` on Linux, `~/Library/Application Support/agora` on macOS).
//! The daemon refuses a home another user could write to, since whoever can write there
//! can replace its admin socket and databases.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::env;

/// The agora state directory (not created here).
pub fn agora_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = env::var_os(env::HOME) {
        return Ok(PathBuf::from(home));
    }
    Ok(platform_data_dir()?.join("agora"))
}

fn platform_data_dir() -> anyhow::Result<PathBuf> {
    if !cfg!(target_os = "macos")
        && let Some(xdg) = env::var_os("XDG_DATA_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg);
    }
    let Some(home) = env::var_os("HOME").map(PathBuf::from) else {
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

/// Refuses `dir` as agora's home when another user could write to it (group or other
/// write permission, or another owner): they could replace the admin socket, the
/// databases or the logs in it.
pub fn refuse_shared_home(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;

    let shown = dir.display();
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read agora's home directory {shown}"))?;
    if !meta.is_dir() {
        bail!(
            "agora's home {shown} is not a directory; set AGORA_HOME=DIR to a directory of yours"
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "agora's home {shown} is owned by uid {}, not you (uid {me}), so its owner can replace the admin socket and the databases; set AGORA_HOME=DIR to a directory of yours, or take it over with:\n  sudo chown {me} {shown}",
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        bail!(
            "agora's home {shown} has mode {mode:04o}, so other users can replace the admin socket and the databases in it; restrict it with:\n  chmod 700 {shown}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn home_with_mode(parent: &Path, mode: u32) -> PathBuf {
        let dir = parent.join(format!("home-{mode:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn a_home_others_can_write_is_refused_with_the_chmod_to_type() {
        let parent = tempfile::tempdir().unwrap();
        for mode in [0o700, 0o750, 0o755, 0o1700] {
            let dir = home_with_mode(parent.path(), mode);
            refuse_shared_home(&dir).unwrap();
        }
        for mode in [0o777, 0o1777, 0o770, 0o720, 0o702, 0o775] {
            let dir = home_with_mode(parent.path(), mode);
            let err = format!("{:#}", refuse_shared_home(&dir).unwrap_err());
            assert!(
                err.contains(&format!("chmod 700 {}", dir.display())),
                "{mode:o}: {err}"
            );
        }
        let file = parent.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = format!("{:#}", refuse_shared_home(&file).unwrap_err());
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn a_home_owned_by_someone_else_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let theirs = if me == 0 {
            // As root, give a private directory away to "nobody".
            let dir = home_with_mode(parent.path(), 0o700);
            rustix::fs::chown(&dir, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
            dir
        } else {
            PathBuf::from("/")
        };
        let err = format!("{:#}", refuse_shared_home(&theirs).unwrap_err());
        assert!(err.contains("not you (uid "), "{err}");
        assert!(err.contains("AGORA_HOME=DIR"), "{err}");
    }
}
