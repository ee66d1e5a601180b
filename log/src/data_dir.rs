//! Data directory ownership (one broker per directory), the data-format marker, and
//! sled crash repair.

use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Write},
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

/// The data format this broker stores: format 3, Kafka RecordBatch v2 in segment files
/// per partition, the index in sled. (Format 2 kept the batches in sled trees; format 1,
/// before the marker existed, stored Sluice's own batch format behind a 40-byte header.)
pub const DATA_FORMAT: u32 = 3;
/// The marker file in the data directory; it holds the format number.
pub const FORMAT_FILE: &str = "format-version";

/// Checks that the data directory holds data of [`DATA_FORMAT`], and marks a new one
/// (no database yet) with it. A database without a marker was written by a broker of
/// format 1: it is refused, never misread.
pub fn check_format(dir: &Path) -> Result<()> {
    let err = |reason: String| LogError::DataDir { path: dir.display().to_string(), reason };
    let what_to_do = "move it away or start with an empty --data-dir";
    let marker = dir.join(FORMAT_FILE);
    let found = match std::fs::read_to_string(&marker) {
        Ok(text) => text.trim().parse::<u32>().map_err(|_| {
            err(format!("its {FORMAT_FILE} file says {:?}, which is no Sluice data format; {what_to_do}", text.trim()))
        })?,
        Err(e) if e.kind() == ErrorKind::NotFound && dir.join("db").exists() => 1,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            write_marker(dir).map_err(|e| err(format!("cannot write its {FORMAT_FILE} file: {e}")))?;
            return Ok(());
        }
        Err(e) => return Err(err(format!("cannot read its {FORMAT_FILE} file: {e}"))),
    };
    match found {
        DATA_FORMAT => Ok(()),
        1 => Err(err(format!(
            "holds Sluice format 1 batches; this broker stores Kafka RecordBatch v2 in segment files \
             (format {DATA_FORMAT}): {what_to_do}"
        ))),
        2 => Err(err(format!(
            "holds Sluice data format 2 (record batches inside the sled database); this broker stores them in \
             segment files (format {DATA_FORMAT}): {what_to_do} (to keep the records, consume them with a \
             broker of the previous release and produce them again)"
        ))),
        n => Err(err(format!(
            "holds Sluice data format {n}, which this broker does not know (it stores format {DATA_FORMAT}, \
             Kafka RecordBatch v2 in segment files): {what_to_do}"
        ))),
    }
}

/// The topic and partition a partition directory (`<topic>-<partition>`) stands for.
pub fn parse_partition_dir(name: &str) -> Option<(&str, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, partition.parse().ok()?))
}

/// Names of the partition directories in the data directory.
pub fn partition_dirs(dir: &Path) -> Result<impl Iterator<Item = String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LogError::DataDir { path: dir.display().to_string(), reason: format!("cannot list it: {e}") })?;
    Ok(entries.flatten().filter_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        (e.file_type().is_ok_and(|t| t.is_dir()) && parse_partition_dir(&name).is_some()).then_some(name)
    }))
}

/// Writes the marker durably: a temporary file, synced, renamed into place.
fn write_marker(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(format!("{DATA_FORMAT}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FORMAT_FILE))?;
    File::open(dir)?.sync_all()
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
    fn new_dirs_get_the_format_marker_and_old_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_format(dir.path()).expect("new dir");
        assert_eq!(std::fs::read_to_string(dir.path().join(FORMAT_FILE)).expect("marker"), "3\n");
        std::fs::create_dir(dir.path().join("db")).expect("db");
        check_format(dir.path()).expect("marked dir with a database");

        let old = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(old.path().join("db")).expect("db");
        let err = check_format(old.path()).expect_err("format 1").to_string();
        assert_eq!(
            err,
            format!(
                "data directory {}: holds Sluice format 1 batches; this broker stores Kafka RecordBatch v2 in \
                 segment files (format 3): move it away or start with an empty --data-dir",
                old.path().display()
            )
        );
        assert!(!old.path().join(FORMAT_FILE).exists(), "an old dir is left as it was");

        std::fs::write(dir.path().join(FORMAT_FILE), "2\n").expect("write");
        let err = check_format(dir.path()).expect_err("format 2").to_string();
        assert!(err.contains("holds Sluice data format 2 (record batches inside the sled database)"), "{err}");
        std::fs::write(dir.path().join(FORMAT_FILE), "7\n").expect("write");
        let err = check_format(dir.path()).expect_err("format 7").to_string();
        assert!(err.contains("holds Sluice data format 7, which this broker does not know"), "{err}");
        std::fs::write(dir.path().join(FORMAT_FILE), "v2").expect("write");
        let err = check_format(dir.path()).expect_err("garbage").to_string();
        assert!(err.contains("its format-version file says \"v2\""), "{err}");
    }

    #[test]
    fn partition_directories_parse_back() {
        assert_eq!(parse_partition_dir("orders-3"), Some(("orders", 3)));
        assert_eq!(parse_partition_dir("a-b-12"), Some(("a-b", 12)));
        assert_eq!(parse_partition_dir("db"), None);
        assert_eq!(parse_partition_dir("orders-x"), None);
        assert_eq!(parse_partition_dir("-1"), None);
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
