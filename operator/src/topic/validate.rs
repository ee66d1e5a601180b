//! Topic spec checks the API server cannot make (a 1.20 server has no CEL): the Kafka
//! name rules beyond the pattern, cross-field rules, and typed config values.

use sluice_crd::{CleanupPolicy, TopicSpec};

/// Longest Kafka topic name.
pub const MAX_NAME_LEN: usize = 249;
/// Prefix reserved for the brokers' internal topics.
pub const INTERNAL_PREFIX: &str = "__";
/// Config keys whose values must be integers ≥ -1 (-1: unlimited).
const INTEGER_KEYS: &[&str] = &["retention.ms", "retention.bytes", "max.message.bytes", "segment.bytes"];

/// The Kafka-style name of a topic: `spec.name`, else `metadata.name`.
pub fn topic_name<'a>(spec: &'a TopicSpec, metadata_name: &'a str) -> &'a str {
    spec.name.as_deref().unwrap_or(metadata_name)
}

/// Every problem with `spec`, as sentences a user can act on (empty: valid).
pub fn problems(spec: &TopicSpec, metadata_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let name = topic_name(spec, metadata_name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        out.push(format!("topic name {name:?} must have 1 to {MAX_NAME_LEN} characters"));
    } else if name == "." || name == ".." {
        out.push(format!("topic name {name:?} is not allowed"));
    } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        out.push(format!("topic name {name:?}: character {c:?} is not allowed (use letters, digits, '.', '_', '-')"));
    } else if name.starts_with(INTERNAL_PREFIX) {
        out.push(format!(
            "topic name {name:?}: names starting with {INTERNAL_PREFIX:?} are reserved for internal topics"
        ));
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
    for key in INTEGER_KEYS {
        if let Some(v) = spec.config.get(*key)
            && !v.trim().parse::<i64>().is_ok_and(|n| n >= -1)
        {
            out.push(format!("spec.config[{key:?}] is {v:?}, it must be an integer, -1 for unlimited"));
        }
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
        assert!(p.contains("reserved"), "{p}");
        assert!(p.contains("retention.ms"), "{p}");
        assert!(problems(&spec(1, 1), "..").join("").contains("not allowed"));
        let mut s = spec(0, 1);
        s.name = Some("a/b".into());
        let p = problems(&s, "x").join("\n");
        assert!(p.contains("'/'") && p.contains("at least 1"), "{p}");
    }
}
