//! Broker errors as Kafka error codes, chosen as a Kafka broker would answer the same
//! failure. The one place where a [`BrokerError`] becomes a Kafka error code.

use kafka_protocol::{ResponseError as E, protocol::StrBytes};
use sluice_core::BatchError;

use crate::error::BrokerError;

/// The Kafka error code of a broker error.
pub fn code(e: &BrokerError) -> i16 {
    kind(e).code()
}

/// The Kafka error of a broker error.
pub fn kind(e: &BrokerError) -> E {
    match e {
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => E::UnknownTopicOrPartition,
        BrokerError::InvalidTopicName(_) => E::InvalidTopicException,
        BrokerError::TopicAlreadyExists(_) => E::TopicAlreadyExists,
        // Kafka's RecordTooLargeException is MESSAGE_TOO_LARGE on the wire.
        BrokerError::Batch(BatchError::RecordTooLarge { .. } | BatchError::BatchTooLarge { .. }) => E::MessageTooLarge,
        BrokerError::Batch(BatchError::Corrupt(why)) if why.contains("CRC") || why.contains("crc") => E::CorruptMessage,
        BrokerError::Batch(_) => E::InvalidRecord,
        BrokerError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        BrokerError::InvalidConfig(_) => E::InvalidConfig,
        BrokerError::InvalidRequest(_) => E::InvalidRequest,
        BrokerError::Storage(_) | BrokerError::DataDir { .. } | BrokerError::Damaged(_) => E::KafkaStorageError,
        // Kafka's answer when a log directory fails or is full; retriable.
        BrokerError::DiskFull { .. } => E::KafkaStorageError,
        BrokerError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
        BrokerError::ProducerFenced { .. } => E::InvalidProducerEpoch,
        BrokerError::Listen { .. } => E::UnknownServerError,
        BrokerError::NotLeader { .. } => E::NotLeaderOrFollower,
        BrokerError::NotEnoughReplicas { .. } => E::NotEnoughReplicas,
        BrokerError::NotEnoughInSyncReplicas { appended: false, .. } => E::NotEnoughReplicas,
        BrokerError::NotEnoughInSyncReplicas { appended: true, .. } => E::NotEnoughReplicasAfterAppend,
        BrokerError::ReplicationTimeout { .. } => E::RequestTimedOut,
        // Retriable: the client finds the partition elsewhere or here after a restart.
        BrokerError::ShuttingDown => E::LeaderNotAvailable,
        // What a Kafka broker answers while it auto-creates a topic; clients retry.
        BrokerError::TopicBeingCreated(_) => E::LeaderNotAvailable,
        // What a broker's create-topic policy answers; the message says why.
        BrokerError::Unsupported(_) => E::PolicyViolation,
        BrokerError::NotCoordinator { .. } => E::NotCoordinator,
        BrokerError::CoordinatorLoading { .. } => E::CoordinatorLoadInProgress,
        BrokerError::CoordinatorNotAvailable { .. } => E::CoordinatorNotAvailable,
        BrokerError::GroupNotFound(_) => E::GroupIdNotFound,
        BrokerError::UnknownMember { .. } => E::UnknownMemberId,
        BrokerError::FencedMemberEpoch { .. } => E::IllegalGeneration,
        BrokerError::PartitionNotOwned { .. } => E::IllegalGeneration,
        BrokerError::RebalanceInProgress(_) => E::RebalanceInProgress,
        BrokerError::GroupNotEmpty { .. } => E::NonEmptyGroup,
    }
}

/// The error message field of a response.
pub fn message(e: &BrokerError) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.to_string()))
}

/// A Kafka error's name as a metric label (`UNKNOWN_TOPIC_OR_PARTITION` style is
/// Kafka's; the crate's variant names are close enough and stable).
pub fn label(code: i16) -> String {
    if code == 0 {
        return "NONE".into();
    }
    match kafka_protocol::error::ParseResponseErrorCode::err(code) {
        Some(e) => format!("{e:?}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_codes_a_kafka_broker_answers() {
        let cases = [
            (BrokerError::UnknownTopic("t".into()), 3),
            (BrokerError::UnknownPartition { topic: "t".into(), partition: 9, count: 1 }, 3),
            (
                BrokerError::OffsetOutOfRange {
                    topic: "t".into(),
                    partition: 0,
                    offset: 9,
                    log_start: 0,
                    high_watermark: 1,
                },
                1,
            ),
            (BrokerError::Batch(BatchError::RecordTooLarge { size: 9, max: 1 }), 10),
            (BrokerError::Batch(BatchError::Empty), 87),
            (BrokerError::NotLeader { reason: "elsewhere".into(), leader: None }, 6),
            (BrokerError::NotEnoughReplicas { topic: "t".into(), replication_factor: 3 }, 19),
            (
                BrokerError::NotEnoughInSyncReplicas {
                    topic: "t".into(),
                    partition: 0,
                    isr: vec![1],
                    min_isr: 2,
                    appended: false,
                },
                19,
            ),
            (
                BrokerError::NotEnoughInSyncReplicas {
                    topic: "t".into(),
                    partition: 0,
                    isr: vec![1],
                    min_isr: 2,
                    appended: true,
                },
                20,
            ),
            (BrokerError::ReplicationTimeout { topic: "t".into(), partition: 0, offset: 5, timeout_ms: 10 }, 7),
            (BrokerError::UnknownMember { group: "g".into(), member: "m".into() }, 25),
            (BrokerError::FencedMemberEpoch { group: "g".into(), member: "m".into(), epoch: 1, current: 2 }, 22),
            (BrokerError::TopicAlreadyExists("t".into()), 36),
            (BrokerError::GroupNotEmpty { group: "g".into(), members: vec![] }, 68),
            (
                BrokerError::NotCoordinator {
                    group: "g".into(),
                    me: 0,
                    reason: "broker 1 leads".into(),
                    coordinator: Some((1, "h:1".into())),
                },
                16,
            ),
            (BrokerError::CoordinatorLoading { group: "g".into(), partition: 3 }, 14),
            (BrokerError::CoordinatorNotAvailable { group: "g".into(), reason: "offline".into() }, 15),
        ];
        for (e, want) in cases {
            assert_eq!(code(&e), want, "{e}");
        }
        assert_eq!(label(0), "NONE");
        assert_eq!(label(3), "UnknownTopicOrPartition");
    }
}
