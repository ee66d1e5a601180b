//! Topic spec checks the API server cannot make (a 1.20 server has no CEL): the Kafka
//! name rules beyond the pattern, cross-field rules, and the configuration the brokers
//! honour. Names and configuration are checked with the rules the brokers apply
//! (`sluice_core::topic`, `sluice_crd::contract`), so a spec accepted here is one every
//! broker takes as written.

use sluice_crd::contract;
use sluice_crd::{CleanupPolicy, TopicSpec};

/// The Kafka-style name of a topic: `spec.name`, else `metadata.name`.
pub fn topic_name<'a>(spec: &'a TopicSpec, metadata_name: &'a str) -> &'a str {
    contract::topic_name(spec.name.as_deref(), metadata_name)
}

/// Every problem with `spec`, as sentences a user can act on (empty: valid).
pub fn problems(spec: &TopicSpec, metadata_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = sluice_core::topic::validate_user_topic_name(topic_name(spec, metadata_name)) {
        out.push(e.to_string());
    }
    if spec.partitions < 1 {
        out.push(format!("spec.partitions is {}, it must be at least 1", spec.partitions));
    }
    if spec.replication_factor < 1 {
        out.push(format!("spec.replicationFactor is {}, it must be at least 1", spec.replication_factor));
    }
    if spec.min_insync_replicas > spec.replication_factor {
        out.push(format!(
            "spec.minInsyncReplicas ({}) is larger than spec.replicationFactor ({}): acks=all could never succeed",
            spec.min_insync_replicas, spec.replication_factor
        ));
    }
    if spec.cleanup_policy == CleanupPolicy::Compact {
        // Accepting it would promise compaction the brokers do not perform yet.
        out.push(
            "spec.cleanupPolicy \"compact\" is not supported by the brokers yet (old values would never be \
             removed); use \"delete\" with retention"
                .to_string(),
        );
    }
    // Every key is one the brokers honour, with a value they parse; anything else
    // (`segment.bytes`, a typo) is refused here rather than dropped by the brokers.
    if let Err(problems) = contract::topic_config(spec.durability, &spec.config) {
        out.extend(problems);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn spec(partitions: i32, rf: i32) -> TopicSpec {
        TopicSpec {
            cluster: "c".into(),
            name: None,
            partitions,
            replication_factor: rf,
            min_insync_replicas: 1,
            cleanup_policy: Default::default(),
            durability: Default::default(),
            config: Default::default(),
        }
    }

    #[test]
    fn compaction_is_refused_until_brokers_compact() {
        let mut s = spec(1, 1);
        s.cleanup_policy = CleanupPolicy::Compact;
        let p = problems(&s, "changelog");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("not supported by the brokers yet"), "{p:?}");
    }

    #[test]
    fn valid_spec_has_no_problems() {
        assert!(problems(&spec(6, 3), "orders").is_empty());
        let mut s = spec(1, 1);
        s.name = Some("Orders_v2".into());
        s.config.insert("retention.ms".into(), "-1".into());
        s.config.insert("retention.bytes".into(), "1073741824".into());
        s.config.insert("max.message.bytes".into(), "2097152".into());
        assert!(problems(&s, "orders").is_empty());
    }

    #[test]
    fn reports_what_the_schema_cannot() {
        let mut s = spec(1, 2);
        s.min_insync_replicas = 3;
        s.name = Some("__offsets".into());
        s.config.insert("retention.ms".into(), "1 week".into());
        let p = problems(&s, "x").join("\n");
        assert!(p.contains("minInsyncReplicas (3)"), "{p}");
        assert!(p.contains("invalid topic name '__offsets': names starting with '__' are reserved"), "{p}");
        assert!(p.contains("retention.ms=1 week"), "{p}");
        assert!(problems(&spec(1, 1), "..").join("").contains("'.' and '..' are not allowed"));
        let mut s = spec(0, 1);
        s.name = Some("a/b".into());
        let p = problems(&s, "x").join("\n");
        assert!(p.contains("'/'") && p.contains("at least 1"), "{p}");
        let mut s = spec(1, 1);
        s.name = Some("x".repeat(250));
        assert!(problems(&s, "x").join("").contains("250 characters, the limit is 249"));
    }

    #[test]
    fn config_keys_the_brokers_do_not_honour_are_refused() {
        let mut s = spec(1, 1);
        s.config.insert("segment.bytes".into(), "1048576".into());
        let p = problems(&s, "orders");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("[\"segment.bytes\"] is not a topic config the brokers honour"), "{p:?}");
        let mut s = spec(1, 1);
        s.config.insert("max.message.bytes".into(), "1".into());
        s.config.insert("durability".into(), "always".into());
        let p = problems(&s, "orders").join("\n");
        assert!(p.contains("max.message.bytes=1: must be between 64"), "{p}");
        assert!(p.contains("set spec.durability instead"), "{p}");
    }
}
