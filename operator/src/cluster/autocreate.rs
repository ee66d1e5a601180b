//! Kafka's `auto.create.topics.enable` on Kubernetes. A broker cannot create topics
//! there (Topic resources are the only way), so when a Kafka client asks it for a topic
//! that does not exist it lists the name on its Lease
//! ([`contract::REQUESTED_TOPICS_ANNOTATION`]) and answers `LEADER_NOT_AVAILABLE`, which
//! clients retry. When the Cluster opts in (`spec.config["auto.create.topics.enable"]:
//! "true"`) the operator creates a Topic resource for each such name, with the Cluster's
//! `num.partitions` partitions (Kafka's default of 1 otherwise) and the Topic defaults
//! for the rest, labelled [`contract::AUTO_CREATED_LABEL`]; the broker then learns it as
//! any Topic and the client's retry succeeds. Off by default, as the issue of a typo
//! creating a topic is worse on a shared cluster.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_crd::contract::{self, AUTO_CREATED_LABEL, REQUESTED_TOPICS_ANNOTATION};
use sluice_crd::{Cluster, Topic};

use crate::context::Context;
use crate::{Error, Result, liveness};

/// Kafka topic name → the broker ids that asked for it, over the live brokers of
/// `cluster`.
pub fn requested(cluster: &str, leases: &[Lease], now: Timestamp) -> BTreeMap<String, BTreeSet<i32>> {
    let live = liveness::live_brokers(cluster, leases, now);
    let mut out: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for lease in leases {
        let Some(id) = lease.metadata.name.as_deref().and_then(|n| contract::broker_id_from_lease_name(cluster, n))
        else {
            continue;
        };
        if !live.contains_key(&id) {
            continue;
        }
        let Some(names) = lease.metadata.annotations.as_ref().and_then(|a| a.get(REQUESTED_TOPICS_ANNOTATION)) else {
            continue;
        };
        for name in contract::requested_topics(names) {
            out.entry(name).or_default().insert(id);
        }
    }
    out
}

/// The requested names no Topic of `cluster` carries yet (by its Kafka-style name), and
/// that are valid names for a user topic.
pub fn missing(
    cluster: &str,
    requested: BTreeMap<String, BTreeSet<i32>>,
    topics: &[Topic],
) -> BTreeMap<String, BTreeSet<i32>> {
    let existing: BTreeSet<String> = topics
        .iter()
        .filter(|t| t.spec.cluster == cluster)
        .map(|t| contract::topic_name(t.spec.name.as_deref(), &t.name_any()).to_string())
        .collect();
    requested
        .into_iter()
        .filter(|(name, _)| !existing.contains(name) && sluice_core::topic::validate_user_topic_name(name).is_ok())
        .collect()
}

/// The Topic resource for Kafka topic `name` of `cluster`.
pub fn topic_for(cluster: &Cluster, name: &str) -> Result<Topic> {
    let resource = contract::auto_topic_resource_name(name);
    let mut spec = json!({
        "cluster": cluster.name_any(),
        "partitions": contract::auto_create_partitions(&cluster.spec.config),
    });
    if resource != name {
        spec["name"] = json!(name);
    }
    let topic = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
        "metadata": {
            "name": resource,
            "namespace": cluster.namespace(),
            "labels": { AUTO_CREATED_LABEL: "true", contract::CLUSTER_LABEL: cluster.name_any() },
        },
        "spec": spec,
    });
    Ok(serde_json::from_value(topic)?)
}

/// Creates a Topic for every topic the live brokers of `cluster` were asked for and
/// that has none, when the Cluster opts in; one Normal Event per Topic created.
pub async fn create_requested(
    cluster: &Cluster,
    ctx: &Context,
    ns: &str,
    leases: &[Lease],
    topics: &[Topic],
    now: Timestamp,
) -> Result<()> {
    if !contract::auto_create_topics(&cluster.spec.config) {
        return Ok(());
    }
    let name = cluster.name_any();
    let wanted = missing(&name, requested(&name, leases, now), topics);
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), ns);
    for (topic, brokers) in wanted {
        let resource = topic_for(cluster, &topic)?;
        match api.create(&PostParams::default(), &resource).await {
            Ok(_) => {
                tracing::info!(cluster = %name, topic, resource = %resource.name_any(), ?brokers,
                               "Topic auto-created for a Kafka client (auto.create.topics.enable)");
                let asked: Vec<String> = brokers.iter().map(i32::to_string).collect();
                let note = format!(
                    "created Topic {} for Kafka topic '{topic}' that a client asked broker(s) {} for \
                     (spec.config auto.create.topics.enable=true)",
                    resource.name_any(),
                    asked.join(", ")
                );
                ctx.event(cluster, EventType::Normal, "TopicAutoCreated", note).await;
            }
            // Another reconcile (or the user) created it meanwhile.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::from(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::tests::lease as plain_lease;
    use k8s_openapi::jiff::SignedDuration;

    /// A broker Lease renewed at `renewed` for 10 s, asking for `requested` topics.
    fn lease(name: &str, requested: Option<&str>, renewed: Timestamp) -> Lease {
        let mut l = plain_lease(name, Some("pod"), renewed, 10, None);
        l.metadata.annotations = requested.map(|r| [(REQUESTED_TOPICS_ANNOTATION.to_string(), r.to_string())].into());
        l
    }

    fn topic(resource: &str, cluster: &str, spec_name: Option<&str>) -> Topic {
        let mut spec = json!({ "cluster": cluster });
        if let Some(n) = spec_name {
            spec["name"] = json!(n);
        }
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
            "metadata": { "name": resource, "namespace": "ns" }, "spec": spec,
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_missing_topics_requested_by_live_brokers_are_created() {
        let now = Timestamp::now();
        let dead = lease("demo-broker-2", Some("from-dead"), now - SignedDuration::from_secs(60));
        let leases = vec![
            lease("demo-broker-0", Some("orders,Events_V1"), now),
            lease("demo-broker-1", Some("orders,exists,__consumer_offsets"), now),
            dead,
            lease("other-broker-0", Some("elsewhere"), now),
        ];
        let asked = requested("demo", &leases, now);
        assert_eq!(asked["orders"], BTreeSet::from([0, 1]));
        assert!(!asked.contains_key("from-dead") && !asked.contains_key("elsewhere"), "{asked:?}");
        let topics = vec![topic("t1", "demo", Some("exists")), topic("Events_V1", "other", None)];
        let todo: Vec<String> = missing("demo", asked, &topics).into_keys().collect();
        assert_eq!(todo, vec!["Events_V1", "orders"], "internal names are never auto-created");
    }

    #[test]
    fn the_topic_takes_the_clusters_partition_count_and_keeps_the_kafka_name() {
        let cluster: Cluster = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
            "metadata": { "name": "demo", "namespace": "ns" },
            "spec": { "config": { "auto.create.topics.enable": "true", "num.partitions": "3" } },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let t = topic_for(&cluster, "orders").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.name_any(), t.spec.name.clone(), t.spec.partitions), ("orders".into(), None, 3));
        assert_eq!(t.labels()[AUTO_CREATED_LABEL], "true");
        let t = topic_for(&cluster, "Events_V1").unwrap_or_else(|e| panic!("{e}"));
        assert!(t.name_any().starts_with("auto-events-v1-"), "{}", t.name_any());
        assert_eq!(t.spec.name.as_deref(), Some("Events_V1"));
    }
}
