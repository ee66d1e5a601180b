//! Sluice's shared vocabulary: the batch format (Kafka's RecordBatch v2), which clients
//! encode and brokers validate and store without re-encoding, plus the names and enums
//! clients, brokers and the operator share.
//!
//! - [`record`]: the logical record (key, value, headers, timestamp).
//! - [`varint`]: Kafka's zig-zag varints used inside batches.
//! - [`batch`]: RecordBatch v2, documented field by field: [`batch::BatchBuilder`]
//!   encodes, [`batch::validate`] checks a batch as the broker receives it,
//!   [`batch::Records`] decodes, [`batch::Batches`] iterates over a fetch's batches.
//! - [`compression`]: the codecs of a batch (none, gzip, snappy, lz4, zstd).
//! - [`topic_partition`]: the name of one partition of one topic.
//! - [`topic`]: topic-name rules and topic configuration keys, shared by brokers and
//!   the operator.
//! - [`produce`]: `Acks` and `Durability`.
//! - [`group`]: consumer-group `Strategy` and `ResetTo`.

pub mod batch;
pub mod compression;
pub mod group;
pub mod produce;
pub mod record;
pub mod topic;
pub mod topic_partition;
pub mod varint;

pub use batch::{Batch, BatchBuilder, BatchError, BatchHeader, BatchInfo, Batches};
pub use compression::Compression;
pub use group::{ResetTo, Strategy};
pub use produce::{Acks, Durability};
pub use record::{Header, Record};
pub use topic::{InvalidTopicConfig, InvalidTopicName, TopicConfig};
pub use topic_partition::TopicPartition;
