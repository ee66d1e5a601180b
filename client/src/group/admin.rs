//! Group administration: list, describe (with lag), delete, reset offsets.

use sluice_proto::v1 as pb;

use super::coordinator;
use crate::{connection::Client, error::Result};

/// Where `reset_offsets` moves a group's committed offsets.
pub use sluice_core::ResetTo;

/// Admin calls on consumer groups. Each call goes to the group's coordinator.
#[derive(Debug, Clone)]
pub struct GroupAdmin {
    client: Client,
}

impl GroupAdmin {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Groups with members or committed offsets.
    pub async fn list(&self) -> Result<Vec<pb::GroupSummary>> {
        // Standalone: one broker coordinates every group.
        Ok(self.client.groups().list_groups(pb::ListGroupsRequest {}).await?.into_inner().groups)
    }

    pub async fn describe(&self, group: &str) -> Result<pb::DescribeGroupResponse> {
        let c = coordinator(&self.client, group).await?;
        Ok(c.groups().describe_group(pb::DescribeGroupRequest { group: group.to_string() }).await?.into_inner())
    }

    /// Deletes an empty group; returns the number of committed offsets removed.
    pub async fn delete(&self, group: &str) -> Result<u32> {
        let c = coordinator(&self.client, group).await?;
        let r = c.groups().delete_group(pb::DeleteGroupRequest { group: group.to_string() }).await?;
        Ok(r.into_inner().offsets_deleted)
    }

    /// Committed offsets of a group (all when `partitions` is empty).
    pub async fn committed(&self, group: &str, partitions: &[(String, u32)]) -> Result<Vec<pb::CommittedOffset>> {
        let c = coordinator(&self.client, group).await?;
        let partitions = partitions
            .iter()
            .map(|(topic, partition)| pb::TopicPartition { topic: topic.clone(), partition: *partition });
        let r = c
            .groups()
            .offset_fetch(pb::OffsetFetchRequest { group: group.to_string(), partitions: partitions.collect() })
            .await?;
        Ok(r.into_inner().offsets)
    }

    /// Plans (`execute == false`) or applies a reset of `group`'s offsets on `topic`.
    /// Refused while the group has live members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
        execute: bool,
    ) -> Result<pb::ResetOffsetsResponse> {
        self.reset_partitions(group, topic, &[], to, execute).await
    }

    /// [`Self::reset_offsets`] on `partitions` of `topic` only (all when empty).
    pub async fn reset_partitions(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
        to: ResetTo,
        execute: bool,
    ) -> Result<pb::ResetOffsetsResponse> {
        use pb::reset_offsets_request::To;
        let to = match to {
            ResetTo::Earliest => To::Earliest(true),
            ResetTo::Latest => To::Latest(true),
            ResetTo::Offset(o) => To::Offset(o),
            ResetTo::Timestamp(ts) => To::TimestampMs(ts),
            ResetTo::ShiftBy(n) => To::ShiftBy(n),
        };
        let c = coordinator(&self.client, group).await?;
        let req = pb::ResetOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            to: Some(to),
            dry_run: !execute,
            partitions: partitions.to_vec(),
        };
        Ok(c.groups().reset_offsets(req).await?.into_inner())
    }
}
