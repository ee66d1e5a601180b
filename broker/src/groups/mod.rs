//! The group coordinator: the adapter that wires the pure consumer groups of
//! [`sluice_groups`] (membership, assignors, offset records, the reset planner) to this
//! broker's log. Committed offsets are records of the internal topic
//! `__consumer_offsets`; membership is served in the spirit of Kafka's KIP-848.
//!
//! - [`coordinator`]: the [`Coordinator`], its settings, opening (topic + replay).
//! - [`ownership`]: which groups this broker coordinates (in a cluster: those of the
//!   offsets partitions it leads), loading and forgetting partitions as leaders move.
//! - `classic`: Kafka's classic protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup).
//! - [`membership`]: join, heartbeat, leave, session expiry, who may commit.
//! - [`offsets`]: commits as records, replay on start, compaction, offset fetch.
//! - [`admin`]: list, describe (with lag), delete, reset.
//! - [`gauges`]: consumer-lag metrics, set before a scrape.
//!
//! Membership is soft state: only committed offsets are written. After a restart (or a
//! move of the coordinator to another broker) the coordinator knows no members; they get `UNKNOWN_MEMBER_ID` on their next heartbeat
//! and join again, and resume from their committed offsets.

mod admin;
mod classic;
pub mod coordinator;
mod gauges;
mod membership;
mod offsets;
pub mod ownership;

pub use admin::{GroupDescription, GroupSummary, MemberInfo, PartitionLag};
pub use classic::ClassicRefusal;
pub use coordinator::{Coordinator, GroupsConfig, OFFSETS_TOPIC};
pub use membership::HeartbeatOutcome;
pub use ownership::{CoordinatorAddress, OWNERSHIP_INTERVAL};
pub use sluice_groups::{ResetLine, ResetTo, Strategy, TopicPartition, offsets_partition};

#[cfg(test)]
mod tests {
    use sluice_groups::GroupError;

    use crate::error::BrokerError;

    /// Every refusal of the groups crate reads the same once it is a broker error (and
    /// so a gRPC status): users and tests see the messages they saw before the split.
    #[test]
    fn group_errors_keep_their_messages_as_broker_errors() {
        let cases: Vec<fn() -> GroupError> = vec![
            || GroupError::InvalidRequest("the group id is empty".into()),
            || GroupError::UnknownMember { group: "g".into(), member: "m".into() },
            || GroupError::FencedMemberEpoch { group: "g".into(), member: "m".into(), epoch: 1, current: 2 },
            || GroupError::PartitionNotOwned { group: "g".into(), member: "m".into(), topic: "t".into(), partition: 3 },
            || GroupError::GroupNotEmpty { group: "g".into(), members: vec!["a".into(), "b".into()] },
            || sluice_groups::records::decode(b"nope", None).expect_err("a bad record"),
        ];
        for make in cases {
            let (e, text) = (make(), make().to_string());
            let b = BrokerError::from(e);
            assert_eq!(b.to_string(), text);
            let same_variant = matches!(
                (make(), &b),
                (GroupError::InvalidRequest(_), BrokerError::InvalidRequest(_))
                    | (GroupError::UnknownMember { .. }, BrokerError::UnknownMember { .. })
                    | (GroupError::FencedMemberEpoch { .. }, BrokerError::FencedMemberEpoch { .. })
                    | (GroupError::PartitionNotOwned { .. }, BrokerError::PartitionNotOwned { .. })
                    | (GroupError::GroupNotEmpty { .. }, BrokerError::GroupNotEmpty { .. })
                    | (GroupError::Record(_), BrokerError::Storage(_))
            );
            assert!(same_variant, "{b:?}");
        }
    }
}
