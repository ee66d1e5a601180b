//! Data directory ownership (one broker per directory) and sled crash repair.

use std::{
    fs::{File, OpenOptions},
    io::ErrorKind,
    path::{Path, PathBuf},
};

use fs2::FileExt;
use tracing::warn;

use crate::error::{LogError, Result};

/// An exclusive lock on a data directory, held for the broker's lifetime so that two
/// brokers can never write one log. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates the directory if needed and locks its `broker.lock`; refuses when another
    /// process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let err = |reason: String| LogError::DataDir { path: dir.display().to_string(), reason };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create it: {e}")))?;
        let path = dir.join("broker.lock");
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| match e.kind() {
                ErrorKind::PermissionDenied => err("is not writable (permission denied)".into()),
                _ => err(format!("is not writable: {e}")),
            })?;
        file.try_lock_exclusive().map_err(|_| {
            err("is already in use by another broker (its broker.lock is held); \
                 stop that broker or choose another --data-dir"
                .into())
        })?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// sled 0.34.7 writes snapshots as `snap.<lsn>.generating` and renames them when done.
/// A crash during `Db::open` can leave an empty or partial one behind, which sled then
/// takes as the newest snapshot and refuses to open with `Corruption { at: None }`.
/// Removing incomplete snapshots before opening is safe: sled rebuilds from its log.
/// Returns the files removed.
pub fn remove_incomplete_snapshots(db_path: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(db_path) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(LogError::DataDir {
                path: db_path.display().to_string(),
                reason: format!("cannot list it: {e}"),
            });
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path).map_err(|e| LogError::DataDir {
                path: path.display().to_string(),
                reason: format!("cannot remove incomplete sled snapshot: {e}"),
            })?;
            warn!(file = %path.display(), size, "removed incomplete sled snapshot left by a crash");
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = DataDirLock::acquire(dir.path()).expect("first lock");
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already in use by another broker"), "{err}");
    }

    #[test]
    fn removes_only_generating_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("snap.00000000000000A0.generating"), b"").expect("write");
        std::fs::write(dir.path().join("snap.0000000000000010"), b"keep").expect("write");
        let removed = remove_incomplete_snapshots(dir.path()).expect("cleanup");
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("snap.0000000000000010").exists());
    }
}
