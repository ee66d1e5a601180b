//! The partition log of a Sluice broker: one `sled::Db` per broker, one set of trees per
//! partition. Knows nothing of gRPC, Kubernetes or metrics; the broker adapts it.
//!
//! - [`store`]: [`PartitionStore`], the log of one partition in Kafka's vocabulary (log
//!   start offset, log end offset, high watermark, truncate); what the broker's data
//!   path and replication call.
//! - [`partition`]: [`PartitionLog`], the sled implementation (append, read, recovery,
//!   truncation, retention, timestamp index).
//! - [`retention`]: the pure decision of which batches retention deletes.
//! - [`db`]: opening the database ([`LogConfig`], [`open`]) and the trees of partitions
//!   (dropping a partition, or every partition nobody hosts).
//! - [`data_dir`]: locks the data directory, checks its data-format marker, and repairs
//!   sled's crash leftovers before sled opens it.
//! - [`group_commit`]: shares one sled flush among concurrent `durability=always`
//!   produce requests.
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
pub mod store;

pub use data_dir::DataDirLock;
pub use db::{LogConfig, drop_partition, drop_unhosted_partitions, open};
pub use error::{LogError, Result};
pub use group_commit::{FlushObserver, GroupCommit};
pub use partition::{AppendedBatch, LogOffsets, PartitionLog, ReadResult};
pub use retention::RetentionLimits;
pub use store::PartitionStore;
