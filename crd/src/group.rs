//! `ConsumerGroup`: shows a consumer group's members and lag, and accepts a declarative
//! offset reset. Its status is filled by the brokers' group coordinator (a later issue).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// Desired state of a consumer group.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    namespaced,
    status = "ConsumerGroupStatus",
    shortname = "slcg",
    category = "sluice",
    doc = "A Sluice consumer group: members, committed offsets and lag",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"Total-Lag","type":"integer","jsonPath":".status.totalLag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSpec {
    /// Name of the `Cluster` (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    /// Group id, when it differs from `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub group_id: Option<String>,
    /// Reset committed offsets; applied only while the group has no members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_reset: Option<OffsetReset>,
}

/// A declarative offset reset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetReset {
    /// Topic to reset; all the group's topics when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub to: ResetTo,
    /// For `to: timestamp`: milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timestamp_ms: Option<i64>,
}

/// Where a reset moves the committed offsets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResetTo {
    Earliest,
    Latest,
    Timestamp,
}

/// Group state, in Kafka's words.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConsumerGroupState {
    #[default]
    Unknown,
    Empty,
    Stable,
    PreparingRebalance,
    CompletingRebalance,
    Dead,
}

/// Observed state of a consumer group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub state: ConsumerGroupState,
    #[serde(default)]
    pub members: i32,
    /// Sum of the lag over all partitions.
    #[serde(default)]
    pub total_lag: i64,
}
