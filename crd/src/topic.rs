//! `Topic`: a Kafka-style topic of one Cluster; the operator places its partitions on
//! live brokers and records placement, leader and leader epoch in the status.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// Desired state of a topic.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "slt",
    category = "sluice",
    doc = "A Sluice topic: partitioned, replicated, retained log of records",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topicName"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicationFactor"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Name of the `Cluster` (same namespace) that hosts the topic.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    /// Kafka-style topic name, when it differs from `metadata.name` (Kafka names may hold
    /// `_` and upper case, Kubernetes names may not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub name: Option<String>,
    /// Number of partitions. May grow, never shrink.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// Replicas per partition; at most the number of brokers.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,
    /// `acks=all` is refused when fewer replicas are in sync.
    #[serde(default = "default_min_insync")]
    #[schemars(range(min = 1, max = 32))]
    pub min_insync_replicas: i32,
    /// Delete old batches, or keep the latest value per key.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// When a produce is acknowledged relative to the flush to disk.
    #[serde(default)]
    pub durability: Durability,
    /// Other topic configuration (Kafka-style keys such as `retention.ms`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// Kafka's `cleanup.policy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CleanupPolicy {
    #[default]
    Delete,
    Compact,
}

/// Acknowledge after the log append (`interval` flushes) or after the flush (`always`):
/// the brokers' own type.
pub use sluice_core::Durability;

/// Observed state of a topic, written only by the operator (the active controller).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The Kafka-style name brokers and clients use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Placement and leadership of each partition, in partition order.
    #[serde(default)]
    pub partitions: Vec<PartitionStatus>,
}

/// Placement and leadership of one partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    pub partition: i32,
    /// Broker ids holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// Broker id of the leader; none while no replica is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// Bumped on every leader change; followers truncate to its boundary.
    pub leader_epoch: i32,
    /// In-sync replicas.
    #[serde(default)]
    pub isr: Vec<i32>,
}

fn default_partitions() -> i32 {
    1
}
fn default_replication_factor() -> i32 {
    1
}
fn default_min_insync() -> i32 {
    1
}
