//! The Sluice record batch format, shared by clients (which encode batches) and brokers
//! (which validate and store them without decoding individual records).
//!
//! - [`record`]: the logical record (key, value, headers, timestamp).
//! - [`varint`]: LEB128 and zig-zag varints used inside batches.
//! - [`batch`]: the client batch: [`batch::BatchBuilder`] encodes, [`batch::validate`]
//!   checks a batch as the broker receives it, [`batch::Records`] decodes.
//! - [`stored`]: the broker's own header in front of every stored batch, and iteration
//!   over the concatenated stored batches a fetch returns.
//! - [`topic_partition`]: the name of one partition of one topic.
//! - [`topic`]: topic-name rules and topic configuration keys, shared by brokers and
//!   the operator.
//! - [`produce`]: `Acks` and `Durability`.
//! - [`group`]: consumer-group `Strategy` and `ResetTo`.

pub mod batch;
pub mod group;
pub mod produce;
pub mod record;
pub mod stored;
pub mod topic;
pub mod topic_partition;
pub mod varint;

pub use batch::{BatchBuilder, BatchError, BatchInfo};
pub use group::{ResetTo, Strategy};
pub use produce::{Acks, Durability};
pub use record::{Header, Record};
pub use stored::{StoredBatch, StoredBatchHeader, StoredBatches};
pub use topic::{InvalidTopicConfig, InvalidTopicName, TopicConfig};
pub use topic_partition::TopicPartition;
