//! `ConsumerGroup`: shows a consumer group's state, members, committed offsets and lag,
//! read from the group's coordinator by the operator, and accepts a declarative offset
//! reset applied while the group has no members. Opt-in per group: groups exist on the
//! brokers whether or not a resource names them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// Condition types of a ConsumerGroup besides `Ready`.
pub mod conditions {
    /// True while the group's total lag is above `spec.lagThreshold`.
    pub const LAGGING: &str = "Lagging";
    /// True while a requested offset reset waits (live members, or a dry run).
    pub const RESET_PENDING: &str = "ResetPending";
}

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
    /// The `Lagging` condition turns True while the total lag is above this many records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub lag_threshold: Option<i64>,
    /// Reset committed offsets: applied once each time this field changes (it runs when it
    /// differs from `status.lastReset.reset`), and only while the group has no members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_reset: Option<OffsetReset>,
    /// Delete the group's committed offsets on the brokers when this resource is deleted
    /// (default: deleting the resource deletes nothing on the brokers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_offsets_on_removal: bool,
}

/// A declarative offset reset, as `kafka-consumer-groups --reset-offsets` does it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetReset {
    pub to: ResetTo,
    /// For `to: timestamp`: milliseconds since the epoch (not in the future).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timestamp_ms: Option<i64>,
    /// For `to: offset`: the offset (clamped to each partition's log range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub offset: Option<i64>,
    /// For `to: shiftBy`: records to move each committed offset by (negative: back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_by: Option<i64>,
    /// Topics (and optionally partitions) to reset; every topic the group has committed
    /// offsets for when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<ResetTopic>,
    /// Only compute the plan and show it in `status.lastReset`; nothing is applied until
    /// this is false again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One topic of a reset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetTopic {
    #[schemars(length(min = 1, max = 249))]
    pub name: String,
    /// Partitions to reset; all of the topic's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<u32>,
}

/// Where a reset moves the committed offsets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResetTo {
    Earliest,
    Latest,
    Timestamp,
    Offset,
    ShiftBy,
}

/// Group state, in Kafka's words (KIP-848's, for the server-side protocol; a classic
/// group's rebalance shows as `Reconciling`). `Dead`: the brokers know no such group
/// (no members, no committed offsets).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConsumerGroupState {
    #[default]
    Unknown,
    Empty,
    Reconciling,
    Stable,
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
    /// Number of members.
    #[serde(default)]
    pub members: i32,
    /// Sum of the lag over all partitions.
    #[serde(default)]
    pub total_lag: i64,
    /// Broker id of the group's coordinator, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<i32>,
    /// The members and their assigned partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_details: Vec<GroupMember>,
    /// Per partition: committed offset, log end offset and lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionLag>,
    /// The last reset applied (or planned, for a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<ResetRecord>,
}

/// A member of the group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    /// Assigned partitions as `topic-partition`.
    #[serde(default)]
    pub assignment: Vec<String>,
}

/// One partition's committed offset and lag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    /// None: nothing committed (lag counts from the log start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_offset: Option<i64>,
    pub log_end_offset: i64,
    pub lag: i64,
}

/// What a reset did (or, for a dry run, would do).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetRecord {
    /// The `spec.offsetReset` that was applied (or planned).
    pub reset: OffsetReset,
    /// The spec generation it was applied in.
    pub generation: i64,
    /// True: planned only (`spec.offsetReset.dryRun`), not applied.
    #[serde(default)]
    pub dry_run: bool,
    /// When it was applied or planned (RFC 3339).
    pub time: String,
    /// Per partition: the offset before and after.
    #[serde(default)]
    pub partitions: Vec<ResetLine>,
}

/// One partition of a reset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetLine {
    pub topic: String,
    pub partition: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    pub to: i64,
}

impl ConsumerGroup {
    /// The group id consumers use: `spec.groupId`, else `metadata.name`.
    pub fn group_id(&self) -> String {
        self.spec.group_id.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
