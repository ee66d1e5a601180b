//! Consumer groups as pure state, in Kafka's vocabulary and free of any transport or
//! storage: the broker's coordinator wires them to its log and to gRPC.
//!
//! - [`assignor`]: the strategies (range, round-robin, cooperative-sticky).
//! - [`classic`]: one group of Kafka's classic protocol (JoinGroup/SyncGroup, client-side
//!   assignors), beside the KIP-848 style groups of [`group`].
//! - [`group`]: one group's members, epochs, sessions and reconciliation (KIP-848 style).
//! - [`records`]: committed offsets as keyed records of `__consumer_offsets`.
//! - [`offsets`]: the committed offsets of every group, as replaying those records
//!   leaves them.
//! - [`reset`]: the reset planner: where a reset moves each partition's offset.
//! - [`error`]: [`GroupError`], whose messages are the ones users see.
//!
//! Time comes in as arguments (`Instant`s for sessions), topic sizes and log offsets
//! through arguments or closures, so every rule is unit-tested without a broker.

pub mod assignor;
pub mod classic;
pub mod error;
pub mod group;
pub mod offsets;
pub mod records;
pub mod reset;

pub use assignor::{Assignment, MemberSpec, assign};
pub use classic::{ClassicError, ClassicGroup, ClassicMember, ClassicState, Join, JoinResult};
pub use error::{GroupError, Result};
pub use group::{Group, GroupState, Heartbeat, HeartbeatReply, Member};
pub use offsets::CommittedOffsets;
pub use records::{Committed, OffsetKey};
pub use reset::{PartitionOffsets, ResetLine, plan_reset};
pub use sluice_core::{ResetTo, Strategy, TopicPartition};

/// Longest group id, in bytes (keeps the keys of the offsets topic and metric labels
/// small).
pub const MAX_GROUP_ID_BYTES: usize = 255;

/// Checks a group id: not empty, at most [`MAX_GROUP_ID_BYTES`].
pub fn validate_group_id(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(GroupError::InvalidRequest("the group id is empty".into()));
    }
    if group.len() > MAX_GROUP_ID_BYTES {
        return Err(GroupError::InvalidRequest(format!(
            "group id of {} bytes; the limit is {MAX_GROUP_ID_BYTES}",
            group.len()
        )));
    }
    Ok(())
}

/// The offsets partition that holds `group`, as Kafka chooses it:
/// `abs(java_string_hash(group)) mod partitions`.
pub fn offsets_partition(group: &str, partitions: u32) -> u32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let h = if h == i32::MIN { 0 } else { h.unsigned_abs() };
    h % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_partition_matches_kafka() {
        // "my-group".hashCode() == -1_906_497_762 in Java; abs mod 50 = 12.
        assert_eq!(offsets_partition("my-group", 50), 12);
        assert_eq!(offsets_partition("", 8), 0);
        assert!(offsets_partition("orders-service", 8) < 8);
    }

    #[test]
    fn group_ids_must_be_present_and_short() {
        assert!(validate_group_id("g").is_ok());
        assert!(validate_group_id(&"g".repeat(255)).is_ok());
        assert_eq!(validate_group_id("").unwrap_err().to_string(), "invalid request: the group id is empty");
        assert_eq!(
            validate_group_id(&"g".repeat(256)).unwrap_err().to_string(),
            "invalid request: group id of 256 bytes; the limit is 255"
        );
    }
}
