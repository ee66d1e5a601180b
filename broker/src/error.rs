//! The broker's error type. Its mapping to gRPC statuses lives in `grpc::status`.

use sluice_core::{BatchError, InvalidTopicConfig, InvalidTopicName};
use sluice_groups::GroupError;
use sluice_log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("unknown partition {partition} of topic '{topic}': it has partitions 0..{count}")]
    UnknownPartition { topic: String, partition: u32, count: u32 },
    #[error(transparent)]
    InvalidTopicName(#[from] InvalidTopicName),
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: valid offsets are {log_start} to {high_watermark}"
    )]
    OffsetOutOfRange { topic: String, partition: u32, offset: i64, log_start: u64, high_watermark: u64 },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error(
        "disk full: {path}: no space left on the device holding the data directory; free space there (the broker resumes by itself)"
    )]
    DiskFull { path: String },
    #[error("damaged log: {0}")]
    Damaged(String),
    #[error("{reason}")]
    NotLeader { reason: String, leader: Option<(i32, String)> },
    #[error(
        "topic '{topic}' has replication factor {replication_factor}, but brokers do not replicate yet: \
         acks=all cannot be guaranteed (produce with acks=1, or use replication factor 1)"
    )]
    NotEnoughReplicas { topic: String, replication_factor: u32 },
    #[error(
        "{topic}-{partition}: {} in-sync replica(s) {isr:?}, fewer than min.insync.replicas={min_isr}: \
         acks=all is refused{}; wait for the followers to catch up, or produce with acks=1",
        isr.len(),
        if *appended { " (the batch was written on the leader but is not committed)" } else { "" }
    )]
    NotEnoughInSyncReplicas { topic: String, partition: u32, isr: Vec<i32>, min_isr: u32, appended: bool },
    #[error(
        "{topic}-{partition}: the in-sync replicas did not all have offset {offset} within the request timeout \
         of {timeout_ms} ms; the batch may still be committed later: retry (an idempotent producer retries \
         without duplicates)"
    )]
    ReplicationTimeout { topic: String, partition: u32, offset: u64, timeout_ms: u64 },
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// A Kafka client asked for a topic that does not exist yet and whose creation was
    /// requested (Kubernetes: the operator creates the Topic resource); retriable.
    #[error("topic '{0}' is being created (auto.create.topics.enable): retry shortly")]
    TopicBeingCreated(String),
    #[error("{0}")]
    Unsupported(String),
    /// Another broker coordinates the group (the leader of its offsets partition), named
    /// when known.
    #[error("broker {me} does not coordinate group '{group}': {reason}")]
    NotCoordinator { group: String, me: i32, reason: String, coordinator: Option<(i32, String)> },
    /// The coordinator is reading the group's offsets partition (its leadership just
    /// moved here); retriable.
    #[error("group '{group}': offsets partition {partition} is still loading on this coordinator; retry shortly")]
    CoordinatorLoading { group: String, partition: u32 },
    /// The group's offsets partition has no leader (or does not exist yet); retriable.
    #[error("no coordinator is available for group '{group}': {reason}")]
    CoordinatorNotAvailable { group: String, reason: String },
    #[error("group '{0}' does not exist")]
    GroupNotFound(String),
    #[error("member '{member}' is not in group '{group}' (its session may have expired); join again")]
    UnknownMember { group: String, member: String },
    #[error("member '{member}' of group '{group}' is fenced: epoch {epoch} is stale, the current epoch is {current}")]
    FencedMemberEpoch { group: String, member: String, epoch: i32, current: i32 },
    #[error("member '{member}' of group '{group}' does not own {topic}-{partition}")]
    PartitionNotOwned { group: String, member: String, topic: String, partition: u32 },
    #[error("group '{0}' is rebalancing; join again")]
    RebalanceInProgress(String),
    #[error("group '{group}' has {} live member(s): {}; stop them first", members.len(), members.join(", "))]
    GroupNotEmpty { group: String, members: Vec<String> },
    #[error("out-of-order sequence on {topic}-{partition}: {reason}")]
    OutOfOrderSequence { topic: String, partition: u32, reason: String },
    #[error("{topic}-{partition}: {reason}")]
    ProducerFenced { topic: String, partition: u32, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
}

impl From<InvalidTopicConfig> for BrokerError {
    fn from(e: InvalidTopicConfig) -> Self {
        BrokerError::InvalidConfig(e.0)
    }
}

/// Each log failure is the broker failure it was before the log had its own crate, so
/// gRPC codes and messages do not change.
impl From<LogError> for BrokerError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Storage(reason) | LogError::Io(reason) => BrokerError::Storage(reason),
            LogError::DiskFull { path } => BrokerError::DiskFull { path },
            LogError::Damaged(what) => BrokerError::Damaged(what),
            LogError::DataDir { path, reason } => BrokerError::DataDir { path, reason },
            LogError::OffsetOutOfRange { topic, partition, offset, log_start, high_watermark } => {
                BrokerError::OffsetOutOfRange { topic, partition, offset, log_start, high_watermark }
            }
            LogError::Batch(e) => BrokerError::Batch(e),
            e @ LogError::Replica(_) => BrokerError::InvalidRequest(e.to_string()),
        }
    }
}

/// Same variants, same messages: a group refusal keeps its gRPC code and text.
impl From<GroupError> for BrokerError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::InvalidRequest(why) => BrokerError::InvalidRequest(why),
            GroupError::UnknownMember { group, member } => BrokerError::UnknownMember { group, member },
            GroupError::FencedMemberEpoch { group, member, epoch, current } => {
                BrokerError::FencedMemberEpoch { group, member, epoch, current }
            }
            GroupError::PartitionNotOwned { group, member, topic, partition } => {
                BrokerError::PartitionNotOwned { group, member, topic, partition }
            }
            GroupError::GroupNotEmpty { group, members } => BrokerError::GroupNotEmpty { group, members },
            GroupError::Record(e) => BrokerError::Storage(format!("offsets record: {e}")),
        }
    }
}

impl From<sled::Error> for BrokerError {
    fn from(e: sled::Error) -> Self {
        BrokerError::Storage(e.to_string())
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_errors_keep_their_broker_variant_and_message() {
        let cases = [
            LogError::Storage("flush failed: disk full".into()),
            LogError::DataDir { path: "/data".into(), reason: "is not writable (permission denied)".into() },
            LogError::OffsetOutOfRange { topic: "t".into(), partition: 2, offset: 9, log_start: 3, high_watermark: 7 },
            LogError::Batch(BatchError::Empty),
            LogError::DiskFull { path: "/data/t-0/00000000000000000000.log".into() },
            LogError::Damaged("t-0: gone".into()),
        ];
        for e in cases {
            let message = e.to_string();
            let b = BrokerError::from(e);
            assert_eq!(b.to_string(), message);
            assert!(matches!(
                b,
                BrokerError::Storage(_)
                    | BrokerError::DataDir { .. }
                    | BrokerError::OffsetOutOfRange { .. }
                    | BrokerError::Batch(BatchError::Empty)
                    | BrokerError::DiskFull { .. }
                    | BrokerError::Damaged(_)
            ));
        }
        assert_eq!(
            BrokerError::from(LogError::OffsetOutOfRange {
                topic: "t".into(),
                partition: 2,
                offset: 9,
                log_start: 3,
                high_watermark: 7
            })
            .to_string(),
            "offset 9 is out of range for t-2: valid offsets are 3 to 7"
        );
    }
}
