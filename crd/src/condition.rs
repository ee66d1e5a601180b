//! Status conditions, as Kubernetes API conventions describe them (the shape of
//! `metav1.Condition`, kept here so the schema stays small and ours).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types used by Sluice resources.
pub mod conditions {
    /// The resource is in the state its spec asks for.
    pub const READY: &str = "Ready";
    /// The operator is moving the resource towards its spec.
    pub const PROGRESSING: &str = "Progressing";
    /// The resource works, but not as well as asked (for example a broker is down).
    pub const DEGRADED: &str = "Degraded";
    /// Topic: some partitions have fewer live in-sync replicas than replicas (named in
    /// the message).
    pub const UNDER_REPLICATED: &str = "UnderReplicated";
    /// Topic: some partitions have no leader (named in the message).
    pub const OFFLINE: &str = "Offline";
}

/// `True`, `False` or `Unknown`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation of one aspect of a resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase reason a program can act on.
    pub reason: String,
    /// What a person should know, and do. (Absent rather than empty: a 1.20 API server
    /// reads an empty string in a status patch as null.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
