//! The one reader of private key files, for every key agora reads (wallets, the
//! facilitator's gas key, the registry and buyer keys, API keys): whoever reads a key
//! file spends its money, so each is checked on the opened file itself before a byte of
//! it is read, and no error ever repeats a key.

use std::path::Path;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};

/// A private key from a 0600 file, else from the environment variable `env`; the key
/// itself is never printed.
pub fn load_key(key_file: Option<&Path>, env: &str) -> anyhow::Result<PrivateKeySigner> {
    let (text, source) = match key_file {
        Some(path) => (read_private_file(path)?, path.display().to_string()),
        None => match crate::env::var(env) {
            Some(key) => (key, format!("${env}")),
            None => bail!(
                "no key: pass --key-file PATH (a file with the hex private key, mode 0600) or set {env}"
            ),
        },
    };
    parse_key(&text).with_context(|| {
        format!(
            "{source} does not hold a private key: expected 64 hex digits, optionally 0x-prefixed"
        )
    })
}

/// Reads a key file after checking, on the opened file itself (so nothing can be
/// swapped in between), that it is a regular file of this user's that nobody else can
/// read or write. A symlink is refused rather than followed: whoever can change the link
/// chooses the key.
pub fn read_private_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    let shown = path.display();
    // NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(_) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            let target = std::fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            bail!(
                "key file {shown} is a symlink{target}; point --key-file at the real file, which must be yours with mode 0600"
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read key file {shown}")),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read key file {shown}"))?;
    if !meta.is_file() {
        bail!(
            "key file {shown} is not a regular file; pass --key-file PATH of a file holding the hex key"
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "key file {shown} is owned by uid {}, not you (uid {me}), so its owner can change the key; take it over with:\n  sudo chown {me} {shown}\nor copy the key into a new file of yours with mode 0600",
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {shown} has mode {mode:04o}, so other users can read or change it; restrict it with:\n  chmod 600 {shown}"
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read key file {shown}"))?;
    Ok(text)
}

/// Parses a hex private key; the error never repeats the input.
pub fn parse_key(text: &str) -> anyhow::Result<PrivateKeySigner> {
    let trimmed = text.trim();
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not 64 hex digits");
    }
    let bytes: B256 = hex.parse().map_err(|_| anyhow::anyhow!("not hex"))?;
    PrivateKeySigner::from_bytes(&bytes)
        .map_err(|_| anyhow::anyhow!("not a valid secp256k1 private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn key_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, KEY).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn refusal(path: &Path) -> String {
        format!("{:#}", read_private_file(path).unwrap_err())
    }

    #[test]
    fn a_private_key_file_of_ours_is_read() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            let path = key_file(dir.path(), &format!("key-{mode:o}"), mode);
            assert_eq!(read_private_file(&path).unwrap(), KEY);
        }
        let signer = load_key(
            Some(&key_file(dir.path(), "key", 0o600)),
            "AGORA_FACILITATOR_KEY",
        )
        .unwrap();
        assert_eq!(
            signer.address(),
            alloy::primitives::address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
    }

    #[test]
    fn key_files_others_can_reach_are_refused_with_the_chmod_to_type() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o777] {
            let path = key_file(dir.path(), &format!("key-{mode:o}"), mode);
            let err = refusal(&path);
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{mode:o}: {err}"
            );
            assert!(!err.contains(KEY), "{err}");
        }
    }

    #[test]
    fn a_symlinked_key_file_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = key_file(dir.path(), "real", 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = refusal(&link);
        assert!(err.contains("is a symlink"), "{err}");
        assert!(err.contains("point --key-file at the real file"), "{err}");
        assert!(err.contains(&real.display().to_string()), "{err}");
        // A dangling link is called a symlink too, not a missing file.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
        assert!(refusal(&dangling).contains("is a symlink"));
    }

    #[test]
    fn only_regular_files_are_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(refusal(&sub).contains("not a regular file"));
        // A FIFO is refused at once instead of waiting for a writer.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(refusal(&fifo).contains("not a regular file"));
        assert!(refusal(&dir.path().join("missing")).contains("cannot read key file"));
    }

    #[test]
    fn a_key_file_owned_by_someone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let theirs = if me == 0 {
            // As root, give a private key file away to "nobody".
            let path = key_file(dir.path(), "theirs", 0o600);
            let nobody = rustix::process::Uid::from_raw(65534);
            rustix::fs::chown(&path, Some(nobody), None).unwrap();
            path
        } else {
            // Otherwise any readable file of root's will do: ownership is checked first.
            PathBuf::from("/etc/passwd")
        };
        let err = refusal(&theirs);
        assert!(err.contains("not you (uid "), "{err}");
        assert!(err.contains("chown"), "{err}");
    }

    #[test]
    fn keys_parse_with_or_without_0x_and_errors_do_not_echo_them() {
        let hex = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let a = parse_key(hex).unwrap();
        let b = parse_key(&format!("  0x{hex}\n")).unwrap();
        assert_eq!(a.address(), b.address());
        assert_eq!(
            a.address(),
            alloy::primitives::address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
        let zeros = "0".repeat(64);
        for bad in [&hex[..63], "zz", "", zeros.as_str()] {
            let err = format!("{:#}", parse_key(bad).unwrap_err());
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
    }
}
