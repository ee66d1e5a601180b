//! Topic resources → the broker's view (Kafka-style name, configuration, placement, by
//! the contract's rules), and the Topic watch that keeps it current.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, watcher},
};
use sluice_crd::{Topic, contract};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::KubeMetadata;
use crate::{
    Broker,
    metadata::{PartitionPlacement, TopicSpec},
};

/// The Kafka-style name of a Topic: `status.topicName`, else `spec.name`, else
/// `metadata.name` (as the operator decides it).
pub fn kafka_name(t: &Topic) -> String {
    let decided = t.status.as_ref().and_then(|s| s.topic_name.clone());
    decided.unwrap_or_else(|| {
        let resource = t.metadata.name.as_deref().unwrap_or_default();
        contract::topic_name(t.spec.name.as_deref(), resource).to_string()
    })
}

/// The topic configuration the broker applies: `durability` from the spec and the keys
/// of `spec.config` brokers honour (the operator reports any other as an invalid spec).
pub fn topic_config(t: &Topic) -> BTreeMap<String, String> {
    contract::honoured_topic_config(t.spec.durability, &t.spec.config)
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
    let precedence =
        |t: &Topic| (t.metadata.creation_timestamp.as_ref().map(|c| c.0), t.metadata.name.clone().unwrap_or_default());
    mine.sort_by(|a, b| {
        let (a, b) = (precedence(a), precedence(b));
        contract::topic_precedence(a.0, &a.1).cmp(&contract::topic_precedence(b.0, &b.1))
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
                // Topic status has no partition epoch yet: the operator does not take
                // ISR changes (MetadataStore::replicates is false in Kubernetes mode).
                partition_epoch: 0,
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

/// Watches the namespace's Topics; after the first full list and every change, brings
/// the broker's open partitions in line (off the async workers: it touches storage).
pub(super) async fn watch_topics(
    meta: Arc<KubeMetadata>,
    broker: Arc<Broker>,
    client: Client,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Topic> = Api::namespaced(client, &meta.settings().namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    futures::pin_mut!(stream);
    let mut listed = false;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let changed = match event {
            Some(Ok(watcher::Event::InitDone)) => {
                listed = true;
                true
            }
            Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => listed,
            Some(Ok(_)) => false,
            Some(Err(e)) => {
                warn!(error = %e, "Topic watch failed; retrying");
                false
            }
            None => return,
        };
        if !changed {
            continue;
        }
        if let Err(e) = meta.set_topics(&reader.state()) {
            warn!(error = %e, "cannot update topics");
            continue;
        }
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || b.sync_with_metadata()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot apply topic changes to the log; retrying at the next change"),
            Err(e) => warn!(error = %e, "topic sync panicked"),
        }
    }
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
