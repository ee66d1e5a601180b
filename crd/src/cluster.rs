//! `Cluster`: a set of brokers, rendered by the operator into a StatefulSet, Services,
//! a ConfigMap, a PodDisruptionBudget and the brokers' RBAC.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// Desired state of a Sluice cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "slc",
    category = "sluice",
    doc = "A Sluice cluster: brokers run as a StatefulSet managed by the operator",
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.brokers"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyBrokers"}"#,
    printcolumn = r#"{"name":"Live","type":"integer","jsonPath":".status.liveBrokers"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Number of brokers (StatefulSet replicas); broker ids are the pod ordinals.
    #[serde(default = "default_brokers")]
    #[schemars(range(min = 1, max = 1000))]
    pub brokers: i32,
    /// Broker container image.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Persistent storage of each broker.
    #[serde(default)]
    pub storage: StorageSpec,
    /// gRPC port of the brokers (produce, fetch, admin, health).
    #[serde(default = "default_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub grpc_port: i32,
    /// Prometheus metrics port of the brokers.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
    /// Node label that names a rack or zone (for example `topology.kubernetes.io/zone`).
    /// When set, broker pods are spread across its values (preferred anti-affinity).
    /// Replicas of a partition are spread across each broker's `SLUICE_RACK` (the
    /// `sluice.dev/rack` label of its Lease), which this key does not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_key: Option<String>,
    /// Broker configuration (Kafka-style keys), rendered into the brokers' ConfigMap.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// Persistent volume of each broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity (`10Gi`).
    #[serde(default = "default_storage_size")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Storage class; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

/// Observed state of a Sluice cluster, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Broker pods the StatefulSet reports ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Brokers whose Lease is current.
    #[serde(default)]
    pub live_brokers: i32,
    /// One entry per desired broker.
    #[serde(default)]
    pub brokers: Vec<BrokerStatus>,
}

/// What the operator knows about one broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Broker id (the pod ordinal).
    pub id: i32,
    /// gRPC address (`host:port`) clients and followers use.
    pub address: String,
    /// Whether the broker's Lease (`<cluster>-broker-<id>`) is current.
    pub live: bool,
    /// Partition replicas placed on this broker, over all topics.
    #[serde(default)]
    pub partitions: i32,
}

fn default_brokers() -> i32 {
    3
}
fn default_image() -> String {
    "ghcr.io/sluice-dev/sluice:0.1.0".into()
}
fn default_grpc_port() -> i32 {
    9092
}
fn default_metrics_port() -> i32 {
    9644
}
fn default_storage_size() -> String {
    "10Gi".into()
}
