//! Topic vocabulary shared by brokers, clients and the operator: Kafka's topic-name
//! rules, and the per-topic configuration keys with their typed values.
//!
//! The operator validates Topic resources with these same functions, so a key or name
//! it accepts is one every broker honours.

use std::collections::BTreeMap;

use crate::produce::Durability;

/// Longest Kafka topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Prefix reserved for the brokers' internal topics (for example committed offsets).
pub const INTERNAL_PREFIX: &str = "__";

/// Largest `max.message.bytes` a topic may set; the gRPC message limit is derived from it.
pub const MAX_MESSAGE_BYTES_CEILING: u32 = 64 * 1024 * 1024;

/// A topic name that breaks Kafka's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name '{name}': {reason}")]
pub struct InvalidTopicName {
    pub name: String,
    pub reason: String,
}

/// Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..` (they would
/// be path components in tooling that maps topics to files). Internal names (`__…`) are
/// valid names; whether a user may create one is the caller's rule
/// ([`is_internal`]).
pub fn validate_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    let invalid = |reason: String| InvalidTopicName { name: name.into(), reason };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid(format!("{} characters, the limit is {MAX_TOPIC_NAME_LEN}", name.len())));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed".into()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(invalid(format!("character {c:?} is not allowed (use letters, digits, '.', '_' and '-')")));
    }
    Ok(())
}

/// Whether `name` is reserved for the brokers' internal topics.
pub fn is_internal(name: &str) -> bool {
    name.starts_with(INTERNAL_PREFIX)
}

/// The rules for a topic a user creates: Kafka's name rules, and not an internal name.
/// The broker's CreateTopic and the operator's Topic validation both apply exactly this.
pub fn validate_user_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    validate_topic_name(name)?;
    if is_internal(name) {
        return Err(InvalidTopicName {
            name: name.into(),
            reason: format!("names starting with '{INTERNAL_PREFIX}' are reserved for internal topics"),
        });
    }
    Ok(())
}

/// A topic configuration key or value the brokers do not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTopicConfig(pub String);

/// Effective configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Delete batches whose newest record is older than this; `None` keeps them forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest batches while the partition stays at or above this size.
    pub retention_bytes: Option<u64>,
    /// Largest batch accepted (a single record larger than this is refused too).
    pub max_message_bytes: u32,
    pub durability: Durability,
    /// `acks=all` is refused, and the high watermark stops, while fewer replicas than
    /// this are in sync (Kafka's `min.insync.replicas`).
    pub min_insync_replicas: u32,
    /// Whether the controller may elect a leader outside the ISR (and the eligible
    /// replicas) when no in-sync replica is left, losing what only the ISR held
    /// (Kafka's `unclean.leader.election.enable`).
    pub unclean_leader_election: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: 1024 * 1024 + 12,
            durability: Durability::Interval,
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// Every configuration key a topic may set; anything else is refused, by the broker's
/// admin API and by the operator (as an `InvalidSpec` condition).
pub const TOPIC_CONFIG_KEYS: [&str; 7] = [
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "durability",
    "compression.type",
    MIN_INSYNC_REPLICAS,
    UNCLEAN_LEADER_ELECTION,
];

/// The key of [`TopicConfig::min_insync_replicas`].
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// The key of [`TopicConfig::unclean_leader_election`].
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// The one `compression.type` a topic may have: batches are stored as the producer
/// compressed them. Kafka's other values (a codec the broker recompresses to) are
/// refused until the broker can honour them.
pub const COMPRESSION_TYPE_PRODUCER: &str = "producer";

impl TopicConfig {
    /// Applies overrides (`key -> value`) over `self`, refusing unknown keys and bad
    /// values with a message that names the key.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Self, InvalidTopicConfig> {
        let mut c = self.clone();
        for (k, v) in overrides {
            let bad = |why: &str| InvalidTopicConfig(format!("{k}={v}: {why}"));
            match k.as_str() {
                "retention.ms" => c.retention_ms = parse_limit(v).map_err(|e| bad(&e))?,
                "retention.bytes" => c.retention_bytes = parse_limit(v).map_err(|e| bad(&e))?,
                "max.message.bytes" => {
                    let n: u32 = v.trim().parse().map_err(|_| bad("not a number"))?;
                    if !(64..=MAX_MESSAGE_BYTES_CEILING).contains(&n) {
                        return Err(bad(&format!("must be between 64 and {MAX_MESSAGE_BYTES_CEILING}")));
                    }
                    c.max_message_bytes = n;
                }
                "durability" => c.durability = v.trim().parse().map_err(|e: String| bad(&e))?,
                MIN_INSYNC_REPLICAS => {
                    c.min_insync_replicas = v
                        .trim()
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected a number of at least 1"))?;
                }
                UNCLEAN_LEADER_ELECTION => {
                    c.unclean_leader_election = v.trim().parse().map_err(|_| bad("expected true or false"))?;
                }
                "compression.type" if v.trim() == COMPRESSION_TYPE_PRODUCER => {}
                "compression.type" => {
                    return Err(bad("only 'producer' is supported: brokers store batches as the producer \
                         compressed them and never recompress (set the codec on the producer)"));
                }
                _ => {
                    return Err(InvalidTopicConfig(format!(
                        "unknown topic config key '{k}' (known: {})",
                        TOPIC_CONFIG_KEYS.join(", ")
                    )));
                }
            }
        }
        Ok(c)
    }

    /// The configuration as key/value strings, as `DescribeTopic` shows it.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let limit = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        BTreeMap::from([
            ("retention.ms".into(), limit(self.retention_ms)),
            ("retention.bytes".into(), limit(self.retention_bytes)),
            ("max.message.bytes".into(), self.max_message_bytes.to_string()),
            ("durability".into(), self.durability.as_str().into()),
            ("compression.type".into(), COMPRESSION_TYPE_PRODUCER.into()),
            (MIN_INSYNC_REPLICAS.into(), self.min_insync_replicas.to_string()),
            (UNCLEAN_LEADER_ELECTION.into(), self.unclean_leader_election.to_string()),
        ])
    }
}

/// `-1` means unlimited, as in Kafka.
fn parse_limit(v: &str) -> Result<Option<u64>, String> {
    match v.trim().parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => Ok(Some(n as u64)),
        _ => Err("expected a non-negative number or -1 for unlimited".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn accepts_kafka_names() {
        for ok in ["a", "orders", "orders.v2", "my_topic-1", "__consumer_offsets", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        assert!(is_internal("__consumer_offsets") && !is_internal("orders"));
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        for (bad, why) in [
            ("", "empty"),
            (".", "not allowed"),
            ("..", "not allowed"),
            ("a/b", "'/'"),
            ("héllo", "'é'"),
            ("has space", "' '"),
        ] {
            let err = validate_topic_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let err = validate_user_topic_name("__consumer_offsets").unwrap_err().to_string();
        assert!(err.contains("reserved for internal topics"), "{err}");
        assert!(validate_topic_name(&"x".repeat(250)).unwrap_err().to_string().contains("250 characters"));
    }

    #[test]
    fn overrides_apply_and_unlimited_is_minus_one() {
        let c = TopicConfig::default()
            .with_overrides(&overrides(&[
                ("retention.ms", "-1"),
                ("retention.bytes", "1000"),
                ("durability", "always"),
            ]))
            .expect("valid");
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(1000));
        assert_eq!(c.durability, Durability::Always);
        assert_eq!(c.to_map()["retention.ms"], "-1");
    }

    #[test]
    fn bad_keys_and_values_name_the_key() {
        let err = TopicConfig::default().with_overrides(&overrides(&[("colour", "red")])).unwrap_err();
        assert!(err.to_string().contains("unknown topic config key 'colour'"), "{err}");
        let err = TopicConfig::default().with_overrides(&overrides(&[("segment.bytes", "1048576")])).unwrap_err();
        assert!(err.to_string().contains("unknown topic config key 'segment.bytes'"), "{err}");
        let err = TopicConfig::default().with_overrides(&overrides(&[("durability", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("durability=maybe"), "{err}");
        let err = TopicConfig::default().with_overrides(&overrides(&[("retention.ms", "-5")])).unwrap_err();
        assert!(err.to_string().contains("retention.ms=-5"), "{err}");
        let err = TopicConfig::default().with_overrides(&overrides(&[("max.message.bytes", "10")])).unwrap_err();
        assert!(err.to_string().contains("between 64 and"), "{err}");
        let err = TopicConfig::default().with_overrides(&overrides(&[("min.insync.replicas", "0")])).unwrap_err();
        assert!(err.to_string().contains("min.insync.replicas=0: expected a number of at least 1"), "{err}");
        let err = TopicConfig::default()
            .with_overrides(&overrides(&[("unclean.leader.election.enable", "yes")]))
            .unwrap_err();
        assert!(err.to_string().contains("expected true or false"), "{err}");
    }

    #[test]
    fn replication_keys_parse() {
        let c = TopicConfig::default()
            .with_overrides(&overrides(&[("min.insync.replicas", "2"), ("unclean.leader.election.enable", "true")]))
            .expect("valid");
        assert_eq!((c.min_insync_replicas, c.unclean_leader_election), (2, true));
        assert_eq!(c.to_map()["min.insync.replicas"], "2");
    }

    #[test]
    fn compression_type_is_producer_only() {
        let c = TopicConfig::default().with_overrides(&overrides(&[("compression.type", "producer")])).expect("valid");
        assert_eq!(c.to_map()["compression.type"], "producer");
        let err = TopicConfig::default().with_overrides(&overrides(&[("compression.type", "zstd")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "compression.type=zstd: only 'producer' is supported: brokers store batches as the producer \
             compressed them and never recompress (set the codec on the producer)"
        );
    }
}
