//! The buyer's keys: `$AGORA_HOME/keys/NAME.key`, one hex private key per file.
//!
//! Whoever reads a key file spends its money, so the directory is 0700 and each file is
//! created with mode 0600 in the same `open` that creates it (never chmod-ed after
//! writing, which would leave a moment when others could read it), refusing to follow
//! or replace anything already there. Key files are read back through the same checks
//! as every other key agora reads (`keyfile::read_private_file`: no symlinks,
//! ours, nobody else can read). Names are restricted to `^[a-z0-9][a-z0-9-]{0,62}$`
//! so a name is always a plain file name.

use std::io::Write;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};

use crate::home;
use crate::keyfile::{parse_key, read_private_file};

/// Checks a wallet name: lowercase letters, digits and dashes, starting with a letter
/// or digit, at most 63 characters.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let bytes = name.as_bytes();
    let ok_first = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !ok_first || !ok_rest || bytes.len() > 63 {
        bail!(
            "wallet name {name:?} is not allowed: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit, e.g. --name main"
        );
    }
    Ok(())
}

/// The key directory of `agora_home`.
pub fn keys_dir(agora_home: &Path) -> PathBuf {
    agora_home.join("keys")
}

/// The key file of wallet `name`.
pub fn key_path(agora_home: &Path, name: &str) -> PathBuf {
    keys_dir(agora_home).join(format!("{name}.key"))
}

/// Creates the key directory (0700) or checks that an existing one is private: a key
/// directory others can write lets them swap keys in.
pub fn ensure_keys_dir(agora_home: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;

    let dir = keys_dir(agora_home);
    home::create_private_dir(&dir)?;
    let meta = std::fs::symlink_metadata(&dir)
        .with_context(|| format!("cannot read the key directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory; move it away so agora can create its key directory there",
            dir.display()
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the key directory {} has mode {mode:04o}, so other users can reach the keys; restrict it with:\n  chmod 700 {}",
            dir.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// Writes `signer`'s key as wallet `name`: a new file, mode 0600 from its creation,
/// never overwriting one that exists.
pub fn write_key(
    agora_home: &Path,
    name: &str,
    signer: &PrivateKeySigner,
) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;

    check_name(name)?;
    ensure_keys_dir(agora_home)?;
    let path = key_path(agora_home, name);
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "a wallet named {name} already exists ({}); pick another with --name NAME, or see its address with: agora wallet address --name {name}",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    let text = format!("{}\n", signer.to_bytes());
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written key is worse than none: it would load as a different key.
        let _ = std::fs::remove_file(&path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(path)
}

/// Loads wallet `name`'s key, through the key-file checks (ours, 0600, no symlink).
pub fn load(agora_home: &Path, name: &str) -> anyhow::Result<PrivateKeySigner> {
    check_name(name)?;
    let path = key_path(agora_home, name);
    if std::fs::symlink_metadata(&path).is_err() {
        bail!(
            "no wallet named {name} (no {}); see the wallets with: agora wallet list, or create it with: agora wallet new --name {name}",
            path.display()
        );
    }
    let text = read_private_file(&path)?;
    parse_key(&text).with_context(|| {
        format!(
            "{} does not hold a private key (64 hex digits); replace it with: agora wallet import --name {name} --key-file FILE",
            path.display()
        )
    })
}

/// Reads a key to import from `source`: a file (checked like every key file) or `-`
/// for stdin. The key text is never echoed in errors.
pub fn read_import(source: &Path) -> anyhow::Result<PrivateKeySigner> {
    let (text, shown) = if source == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the key from stdin")?;
        (text, "stdin".to_string())
    } else {
        (read_private_file(source)?, source.display().to_string())
    };
    parse_key(&text).with_context(|| {
        format!(
            "{shown} does not hold a private key: expected 64 hex digits, optionally 0x-prefixed"
        )
    })
}

/// The wallet names present, sorted; files that are not `NAME.key` are skipped.
pub fn names(agora_home: &Path) -> anyhow::Result<Vec<String>> {
    let dir = keys_dir(agora_home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let file = entry.file_name();
        if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".key"))
            && check_name(name).is_ok()
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The address of wallet `name`.
pub fn address(agora_home: &Path, name: &str) -> anyhow::Result<Address> {
    Ok(load(agora_home, name)?.address())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        for ok in ["default", "a", "main-2", "0x", &"a".repeat(63)] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            "A",
            "a_b",
            "a.b",
            "../x",
            "a/b",
            " a",
            &"a".repeat(64),
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("--name main"), "{err}");
        }
    }

    #[test]
    fn keys_are_written_0600_in_a_0700_directory_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let signer = PrivateKeySigner::random();
        let path = write_key(&home, "main", &signer).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(keys_dir(&home)).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(load(&home, "main").unwrap().address(), signer.address());
        assert_eq!(names(&home).unwrap(), ["main"]);
        let again = write_key(&home, "main", &PrivateKeySigner::random()).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        assert_eq!(load(&home, "main").unwrap().address(), signer.address());
        let missing = load(&home, "other").unwrap_err().to_string();
        assert!(
            missing.contains("agora wallet new --name other"),
            "{missing}"
        );
    }

    #[test]
    fn a_key_directory_others_can_reach_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        ensure_keys_dir(&home).unwrap();
        std::fs::set_permissions(keys_dir(&home), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = write_key(&home, "main", &PrivateKeySigner::random()).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }
}
