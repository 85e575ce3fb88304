//! The exclusive lock beside the database that lets one process own it at a time.

use std::path::Path;

use super::StoreError;

/// Takes the exclusive lock beside `db`; the lock lives as long as the returned file.
pub(super) fn lock(db: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::LockFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: db.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::LockFile {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}
