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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn topic(name: &str, created: &str, spec: serde_json::Value, status: serde_json::Value) -> Arc<Topic> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
                "metadata": { "name": name, "namespace": "ns", "creationTimestamp": created },
                "spec": spec, "status": status,
            }))
            .unwrap(),
        )
    }

    fn placed(n: i32) -> serde_json::Value {
        let ps: Vec<_> = (0..n)
            .map(|p| json!({ "partition": p, "replicas": [p % 3, (p + 1) % 3], "leader": p % 3, "leaderEpoch": 1, "isr": [p % 3] }))
            .collect();
        json!({ "partitions": ps })
    }

    #[test]
    fn placed_topics_of_the_cluster_with_their_kafka_name_and_config() {
        let t = "2026-01-01T00:00:00Z";
        let topics = vec![
            topic(
                "orders-k8s",
                t,
                json!({ "cluster": "c", "name": "Orders_1", "partitions": 2, "durability": "always",
                        "config": { "retention.ms": "1000", "unknown.key": "x" } }),
                placed(2),
            ),
            topic("other-cluster", t, json!({ "cluster": "d", "partitions": 1 }), placed(1)),
            topic("unplaced", t, json!({ "cluster": "c", "partitions": 3 }), json!({})),
        ];
        let out = cluster_topics("c", &topics);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["Orders_1"]);
        let (spec, placement) = &out["Orders_1"];
        assert_eq!(spec.partitions, 2);
        assert_eq!(spec.config["retention.ms"], "1000");
        assert_eq!(spec.config["durability"], "always");
        assert!(!spec.config.contains_key("unknown.key"));
        assert_eq!(placement[1].replicas, vec![1, 2]);
        assert_eq!(placement[1].leader, Some(1));
    }

    #[test]
    fn deleted_topics_are_gone_and_the_older_of_two_names_wins() {
        let mut deleting = (*topic("a", "2026-01-01T00:00:00Z", json!({ "cluster": "c" }), placed(1))).clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        let newer =
            topic("b", "2026-01-02T00:00:00Z", json!({ "cluster": "c", "name": "x", "partitions": 1 }), placed(1));
        let older =
            topic("c", "2026-01-01T00:00:00Z", json!({ "cluster": "c", "name": "x", "partitions": 2 }), placed(2));
        let out = cluster_topics("c", &[Arc::new(deleting), newer, older]);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["x"]);
        assert_eq!(out["x"].0.partitions, 2);
    }
}
