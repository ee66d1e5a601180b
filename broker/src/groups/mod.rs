//! Consumer groups: the coordinator that keeps membership and assigns partitions
//! (server-side, in the spirit of Kafka's KIP-848), and committed offsets stored as
//! records in the internal topic `__consumer_offsets`.
//!
//! - [`assignor`]: the strategies (range, round-robin, cooperative-sticky), pure.
//! - [`group`]: one group's members, epochs, sessions and reconciliation, pure.
//! - [`records`]: how offsets are encoded as keyed records of the internal topic.
//! - [`coordinator`]: the groups this broker coordinates, wired to the log: commits
//!   append records, start-up replays them, compaction keeps the topic small.
//!
//! Membership is soft state: only committed offsets are written. After a restart the
//! coordinator knows no members; they get `UNKNOWN_MEMBER_ID` on their next heartbeat
//! and join again, and resume from their committed offsets.

pub mod assignor;
pub mod coordinator;
pub mod group;
pub mod records;

pub use assignor::Strategy;
pub use coordinator::{Coordinator, GroupsConfig, OFFSETS_TOPIC};

pub use sluice_core::TopicPartition;

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
}
