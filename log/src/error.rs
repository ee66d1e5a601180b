//! The log's error type. Its messages are the broker's for the same failures (the broker
//! maps each variant to its own error, and from there to a gRPC status).

use std::path::Path;

use sluice_core::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed, or holds something the log cannot read.
    #[error("storage error: {0}")]
    Storage(String),
    /// A file operation failed.
    #[error("storage error: {0}")]
    Io(String),
    /// The filesystem holding the data directory is full: nothing was stored.
    #[error(
        "disk full: {path}: no space left on the device holding the data directory; free space there (the broker resumes by itself)"
    )]
    DiskFull { path: String },
    /// Stored data disagrees with the broker's own checkpoints, or fails its checks.
    #[error("damaged log: {0}")]
    Damaged(String),
    /// The data directory cannot be used (locked, not writable, cannot be opened).
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    /// A read or deletion asked for an offset outside the partition's valid range.
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: valid offsets are {log_start} to {high_watermark}"
    )]
    OffsetOutOfRange { topic: String, partition: u32, offset: i64, log_start: u64, high_watermark: u64 },
    /// A stored batch failed its checks.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A follower's append of its leader's batches was refused (wrong base offset, an
    /// epoch older than the log's, a damaged batch).
    #[error("replica append refused: {0}")]
    Replica(String),
}

impl LogError {
    /// An I/O error on `path`; "no space left" becomes [`LogError::DiskFull`].
    pub fn io(path: &Path, what: &str, e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            return LogError::DiskFull { path: path.display().to_string() };
        }
        LogError::Io(format!("{what} {}: {e}", path.display()))
    }

    /// Whether this error means the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LogError::DiskFull { .. })
    }
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        match &e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) => {
                LogError::DiskFull { path: "the log database (db/)".into() }
            }
            _ => LogError::Storage(e.to_string()),
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
