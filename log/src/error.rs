//! The log's error type. Its messages are the broker's for the same failures (the broker
//! maps each variant to its own error, and from there to a gRPC status).

use sluice_core::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed, or holds something the log cannot read.
    #[error("storage error: {0}")]
    Storage(String),
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
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        LogError::Storage(e.to_string())
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
