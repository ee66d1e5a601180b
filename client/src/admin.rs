//! Topic administration and offset look-ups.

use std::collections::{BTreeMap, HashMap};

use sluice_proto::v1 as pb;

use crate::{connection::Client, error::Result};

/// Admin calls: create, delete, describe, list, alter topics; metadata; offsets.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: BTreeMap<String, String>,
    ) -> Result<pb::TopicDescription> {
        let r = self
            .client
            .raw()
            .create_topic(pb::CreateTopicRequest {
                name: name.to_string(),
                partitions,
                replication_factor: 0,
                config: config.into_iter().collect::<HashMap<_, _>>(),
            })
            .await?;
        Ok(r.into_inner().topic.unwrap_or_default())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.client.raw().delete_topic(pb::DeleteTopicRequest { name: name.to_string() }).await?;
        Ok(())
    }

    pub async fn describe_topic(&self, name: &str) -> Result<pb::TopicDescription> {
        let r = self.client.raw().describe_topic(pb::DescribeTopicRequest { name: name.to_string() }).await?;
        Ok(r.into_inner().topic.unwrap_or_default())
    }

    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<pb::TopicSummary>> {
        let r = self.client.raw().list_topics(pb::ListTopicsRequest { include_internal }).await?;
        Ok(r.into_inner().topics)
    }

    /// Sets configuration overrides; an empty value removes one.
    pub async fn alter_topic_config(&self, name: &str, set: BTreeMap<String, String>) -> Result<pb::TopicDescription> {
        let r = self
            .client
            .raw()
            .alter_topic_config(pb::AlterTopicConfigRequest { name: name.to_string(), set: set.into_iter().collect() })
            .await?;
        Ok(r.into_inner().topic.unwrap_or_default())
    }

    pub async fn metadata(&self, topics: &[String]) -> Result<pb::MetadataResponse> {
        Ok(self.client.raw().metadata(pb::MetadataRequest { topics: topics.to_vec() }).await?.into_inner())
    }

    /// Number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        let m = self.metadata(&[topic.to_string()]).await?;
        Ok(m.topics.first().map_or(0, |t| t.partitions.len() as u32))
    }

    /// Offset by spec; for `Timestamp`, `timestamp_ms` is used. Returns the offset and
    /// the record timestamp when one matched.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: pb::OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<(u64, Option<i64>)> {
        let req = pb::ListOffsetsRequest { topic: topic.to_string(), partition, spec: spec as i32, timestamp_ms };
        let mut attempt = 0;
        let r = loop {
            attempt += 1;
            match self.client.partition_client(topic, partition).await.list_offsets(req.clone()).await {
                Ok(r) => break r.into_inner(),
                Err(s) => {
                    let e = crate::ClientError::from(s);
                    self.client.refresh_route(topic, partition, &e).await;
                    // A few tries after NOT_LEADER: the first teaches the leader.
                    if attempt >= 5 || e.kind() != Some(pb::ErrorCode::NotLeader) {
                        return Err(e);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
            }
        };
        Ok((r.offset, (r.timestamp_ms >= 0).then_some(r.timestamp_ms)))
    }
}
