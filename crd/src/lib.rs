//! Sluice's Kubernetes custom resources: [`Cluster`], [`Topic`] and [`ConsumerGroup`]
//! (group `sluice.dev`, version `v1alpha1`).
//!
//! With the default feature `resources`, the resource types; without it, only the
//! [`contract`] (no kube, no k8s-openapi), for brokers built without Kubernetes support.
//!
//! Types only: the operator reconciles them and brokers read them, so this crate pulls
//! in nothing beyond serde, schemars and kube's derive. [`contract`] holds the rules
//! brokers and the operator share (Lease names and liveness, labels, topic names and
//! configuration, environment variables), in plain types, written once. The schemas carry what the API
//! server can check (minimums, enums, patterns, defaults); what a 1.20 API server cannot
//! check (no CEL) the operator validates and reports in conditions.

#[cfg(feature = "resources")]
mod cluster;
#[cfg(feature = "resources")]
mod condition;
pub mod contract;
#[cfg(feature = "resources")]
pub mod group;
#[cfg(feature = "resources")]
mod topic;

#[cfg(feature = "resources")]
pub use cluster::{BrokerStatus, Cluster, ClusterSpec, ClusterStatus, StorageSpec};
#[cfg(feature = "resources")]
pub use condition::{Condition, ConditionStatus, conditions};
#[cfg(feature = "resources")]
pub use group::{
    ConsumerGroup, ConsumerGroupSpec, ConsumerGroupState, ConsumerGroupStatus, GroupMember, OffsetReset, PartitionLag,
    ResetLine, ResetRecord, ResetTo, ResetTopic,
};
#[cfg(feature = "resources")]
pub use topic::{CleanupPolicy, Durability, PartitionStatus, Topic, TopicSpec, TopicStatus};

/// API group of every Sluice resource.
pub const GROUP: &str = "sluice.dev";
/// API version of every Sluice resource.
pub const VERSION: &str = "v1alpha1";
/// `kubectl get sluice` lists every Sluice resource.
pub const CATEGORY: &str = "sluice";

/// Kafka's topic name rule (1–249 of `[a-zA-Z0-9._-]`), as a schema pattern.
/// `.` and `..` also match; the operator refuses them.
pub const TOPIC_NAME_PATTERN: &str = r"^[a-zA-Z0-9._-]{1,249}$";

#[cfg(feature = "resources")]
/// Every CRD, in a stable order (what `sluice-operator crd` prints).
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![Cluster::crd(), Topic::crd(), ConsumerGroup::crd()]
}

#[cfg(all(test, feature = "resources"))]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crds_have_status_category_and_distinct_short_names() {
        let crds = crds();
        let mut short = Vec::new();
        for crd in &crds {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.names.categories.as_deref(), Some(&[CATEGORY.to_string()][..]));
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, VERSION);
            assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{}", crd.spec.names.kind);
            assert!(v.additional_printer_columns.as_ref().is_some_and(|c| c.len() >= 3));
            short.extend(crd.spec.names.short_names.clone().unwrap_or_default());
        }
        // Built-in short names we must not shadow.
        for builtin in ["cs", "cm", "ns", "po", "svc", "sts", "pdb", "sa", "ep", "ev", "no", "pv", "pvc", "rs", "ds"] {
            assert!(!short.iter().any(|s| s == builtin), "{builtin}");
        }
        let mut dedup = short.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), short.len());
    }

    #[test]
    fn schema_has_validation_and_defaults() {
        let topic = serde_json::to_value(Topic::crd()).unwrap_or_default();
        let spec = &topic["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["partitions"]["minimum"], 1.0);
        assert_eq!(spec["partitions"]["default"], 1);
        assert_eq!(spec["replicationFactor"]["minimum"], 1.0);
        assert_eq!(spec["name"]["pattern"], TOPIC_NAME_PATTERN);
        assert_eq!(spec["cleanupPolicy"]["enum"], serde_json::json!(["delete", "compact"]));
        let cluster = serde_json::to_value(Cluster::crd()).unwrap_or_default();
        let spec = &cluster["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["brokers"]["minimum"], 1.0);
        assert_eq!(spec["brokers"]["default"], 3);
    }
}
