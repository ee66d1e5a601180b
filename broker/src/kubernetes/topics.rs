//! Topic resources → the broker's view: Kafka-style name, configuration, placement.

use std::{collections::BTreeMap, sync::Arc};

use sluice_crd::Topic;
use tracing::debug;

use crate::{
    config::TOPIC_CONFIG_KEYS,
    metadata::{PartitionPlacement, TopicSpec},
};

/// The Kafka-style name of a Topic: `status.topicName`, else `spec.name`, else
/// `metadata.name` (as the operator decides it).
pub fn kafka_name(t: &Topic) -> String {
    t.status
        .as_ref()
        .and_then(|s| s.topic_name.clone())
        .or_else(|| t.spec.name.clone())
        .or_else(|| t.metadata.name.clone())
        .unwrap_or_default()
}

/// The topic configuration keys the broker applies: `durability` from the spec and
/// the known keys of `spec.config` (others are ignored here; the operator validates).
pub fn topic_config(t: &Topic) -> BTreeMap<String, String> {
    let mut config: BTreeMap<String, String> = t
        .spec
        .config
        .iter()
        .filter(|(k, _)| TOPIC_CONFIG_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let durability = match t.spec.durability {
        sluice_crd::Durability::Interval => "interval",
        sluice_crd::Durability::Always => "always",
    };
    config.insert("durability".into(), durability.into());
    config
}

/// The topics of `cluster` among `topics` that exist for the brokers: placed by the
/// operator (status has partitions) and not being deleted. Of two Topics with one
/// Kafka-style name the older wins (as the operator decides).
pub fn cluster_topics(cluster: &str, topics: &[Arc<Topic>]) -> BTreeMap<String, (TopicSpec, Vec<PartitionPlacement>)> {
    let mut mine: Vec<&Arc<Topic>> = topics
        .iter()
        .filter(|t| t.spec.cluster == cluster && t.metadata.deletion_timestamp.is_none())
        .filter(|t| t.status.as_ref().is_some_and(|s| !s.partitions.is_empty()))
        .collect();
    mine.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref().map(|t| t.0), &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), &b.metadata.name))
    });
    let mut out = BTreeMap::new();
    for t in mine {
        let name = kafka_name(t);
        if out.contains_key(&name) {
            debug!(topic = %name, resource = ?t.metadata.name, "duplicate topic name ignored");
            continue;
        }
        let Some(status) = t.status.as_ref() else { continue };
        let placement: Vec<PartitionPlacement> = status
            .partitions
            .iter()
            .filter(|p| p.partition >= 0)
            .map(|p| PartitionPlacement {
                partition: p.partition as u32,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            })
            .collect();
        let spec = TopicSpec {
            name: name.clone(),
            partitions: placement.len() as u32,
            replication_factor: t.spec.replication_factor.max(1) as u32,
            config: topic_config(t),
            internal: false,
        };
        out.insert(name, (spec, placement));
    }
    out
}
