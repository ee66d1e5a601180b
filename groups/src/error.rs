//! What group operations refuse. The messages are the ones users already see: the
//! broker maps every variant onto its own error of the same text (and gRPC code).

/// A refused group operation.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A malformed request (an empty or overlong group id).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("member '{member}' is not in group '{group}' (its session may have expired); join again")]
    UnknownMember { group: String, member: String },
    #[error("member '{member}' of group '{group}' is fenced: epoch {epoch} is stale, the current epoch is {current}")]
    FencedMemberEpoch { group: String, member: String, epoch: i32, current: i32 },
    #[error("member '{member}' of group '{group}' does not own {topic}-{partition}")]
    PartitionNotOwned { group: String, member: String, topic: String, partition: u32 },
    #[error("group '{group}' has {} live member(s): {}; stop them first", members.len(), members.join(", "))]
    GroupNotEmpty { group: String, members: Vec<String> },
    /// An offsets record that cannot be encoded or decoded.
    #[error("storage error: offsets record: {0}")]
    Record(#[source] serde_json::Error),
}

pub type Result<T, E = GroupError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_group_names_its_members() {
        let e = GroupError::GroupNotEmpty { group: "g".into(), members: vec!["a".into(), "b".into()] };
        assert_eq!(e.to_string(), "group 'g' has 2 live member(s): a, b; stop them first");
    }
}
