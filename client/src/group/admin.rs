//! Group administration: list, describe (with lag), delete, reset offsets.

use std::{collections::BTreeMap, future::Future};

use sluice_proto::v1 as pb;

use super::{coordinator, link::REDISCOVERY_BACKOFF};
use crate::{
    connection::Client,
    error::{ClientError, Result},
};

/// Times an admin call is retried while its group's coordinator moves (about 5 s).
const COORDINATOR_RETRIES: u32 = 25;

/// Where `reset_offsets` moves a group's committed offsets.
pub use sluice_core::ResetTo;

/// Admin calls on consumer groups. Each call goes to the group's coordinator (found
/// again, for a few seconds, while it moves); `list` asks every broker.
#[derive(Debug, Clone)]
pub struct GroupAdmin {
    client: Client,
}

impl GroupAdmin {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every group of the cluster with members or committed offsets: each broker lists
    /// the groups it coordinates (a standalone broker: all of them), sorted by id.
    pub async fn list(&self) -> Result<Vec<pb::GroupSummary>> {
        let m = self.client.raw().metadata(pb::MetadataRequest { topics: Vec::new() }).await?.into_inner();
        let mut groups: BTreeMap<String, pb::GroupSummary> = BTreeMap::new();
        let mut merge = |list: Vec<pb::GroupSummary>| {
            for g in list {
                // Mid-move two brokers may both list a group: keep the one with members.
                match groups.get(&g.group) {
                    Some(seen) if seen.members >= g.members => {}
                    _ => {
                        groups.insert(g.group.clone(), g);
                    }
                }
            }
        };
        if m.brokers.len() <= 1 {
            merge(self.client.groups().list_groups(pb::ListGroupsRequest {}).await?.into_inner().groups);
        } else {
            for b in &m.brokers {
                let c = if b.address == self.client.addr() {
                    self.client.clone()
                } else {
                    Client::connect(&b.address).await?
                };
                let listed = c.groups().list_groups(pb::ListGroupsRequest {}).await.map_err(|s| {
                    let e = ClientError::from(s);
                    ClientError::Transport(format!("listing the groups of broker {} at {}: {e}", b.id, b.address))
                })?;
                merge(listed.into_inner().groups);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Runs `call` on the coordinator of `group`, finding it again while it moves.
    async fn on_coordinator<T, F, Fut>(&self, group: &str, call: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        use pb::ErrorCode as E;
        let mut attempt = 0;
        loop {
            let r = match coordinator(&self.client, group).await {
                Ok(c) => call(c).await,
                Err(e) => Err(e),
            };
            match r {
                Err(e)
                    if attempt < COORDINATOR_RETRIES
                        && matches!(
                            e.kind(),
                            Some(E::NotCoordinator | E::CoordinatorLoadInProgress | E::CoordinatorNotAvailable)
                        ) =>
                {
                    attempt += 1;
                    tokio::time::sleep(REDISCOVERY_BACKOFF).await;
                }
                r => return r,
            }
        }
    }

    pub async fn describe(&self, group: &str) -> Result<pb::DescribeGroupResponse> {
        let req = pb::DescribeGroupRequest { group: group.to_string() };
        self.on_coordinator(group, |c| {
            let req = req.clone();
            async move { Ok(c.groups().describe_group(req).await?.into_inner()) }
        })
        .await
    }

    /// Deletes an empty group; returns the number of committed offsets removed.
    pub async fn delete(&self, group: &str) -> Result<u32> {
        let req = pb::DeleteGroupRequest { group: group.to_string() };
        self.on_coordinator(group, |c| {
            let req = req.clone();
            async move { Ok(c.groups().delete_group(req).await?.into_inner().offsets_deleted) }
        })
        .await
    }

    /// Committed offsets of a group (all when `partitions` is empty).
    pub async fn committed(&self, group: &str, partitions: &[(String, u32)]) -> Result<Vec<pb::CommittedOffset>> {
        let partitions = partitions
            .iter()
            .map(|(topic, partition)| pb::TopicPartition { topic: topic.clone(), partition: *partition });
        let req = pb::OffsetFetchRequest { group: group.to_string(), partitions: partitions.collect() };
        self.on_coordinator(group, |c| {
            let req = req.clone();
            async move { Ok(c.groups().offset_fetch(req).await?.into_inner().offsets) }
        })
        .await
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
        let req = pb::ResetOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            to: Some(to),
            dry_run: !execute,
            partitions: partitions.to_vec(),
        };
        self.on_coordinator(group, |c| {
            let req = req.clone();
            async move { Ok(c.groups().reset_offsets(req).await?.into_inner()) }
        })
        .await
    }
}
