//! The partition log of a Sluice broker: record batches in segment files per partition,
//! their index and the broker's other state in one `sled::Db`. Knows nothing of gRPC,
//! Kubernetes or metrics; the broker adapts it.
//!
//! - [`store`]: [`PartitionStore`], the log of one partition in Kafka's vocabulary (log
//!   start offset, log end offset, high watermark, truncate); what the broker's data
//!   path and replication call.
//! - [`partition`]: [`PartitionLog`], the implementation (append, read, recovery,
//!   truncation, retention, timestamp index).
//! - [`storage`]: [`LogStore`], what all partitions share: the database and its global
//!   trees, the data directory, roll settings, and the segments waiting for a flush.
//! - [`segment`]: one segment file and the checks of a stored batch.
//! - [`retention`]: the pure decision of which segments retention deletes.
//! - [`db`]: opening the storage ([`LogConfig`], [`open`]) and dropping the data of
//!   partitions (one, or every partition nobody hosts).
//! - [`data_dir`]: locks the data directory, checks its data-format marker, and repairs
//!   sled's crash leftovers before sled opens it.
//! - [`group_commit`]: shares one flush among concurrent `durability=always` produce
//!   requests, and flushes every interval for `durability=interval`.
//! - [`producer_state`]: idempotent-producer state per partition (Kafka's
//!   `ProducerStateManager`): duplicate, gap and epoch checks, snapshots in sled, and
//!   the rebuild from the log tail.
//! - [`error`]: the log's error type, [`LogError`].

pub mod data_dir;
pub mod db;
pub mod error;
pub mod group_commit;
pub mod partition;
pub mod producer_state;
pub mod retention;
pub(crate) mod segment;
pub mod storage;
pub mod store;

pub use data_dir::DataDirLock;
pub use db::{DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_MS, LogConfig, drop_partition, drop_unhosted_partitions, open};
pub use error::{LogError, Result};
pub use group_commit::{FlushObserver, GroupCommit};
pub use partition::{AppendedBatch, LogOffsets, PartitionLog, ReadResult, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use retention::RetentionLimits;
pub use storage::LogStore;
pub use store::PartitionStore;
