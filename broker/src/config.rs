//! Broker settings and per-topic configuration (Kafka-style keys, broker defaults).

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use crate::error::BrokerError;

/// Largest `max.message.bytes` a topic may set; the gRPC message limit is derived from it.
pub const MAX_MESSAGE_BYTES_CEILING: u32 = 64 * 1024 * 1024;

/// When an acknowledged batch is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The log is flushed every `flush_interval` (Kafka's default behaviour: a produce
    /// is acknowledged once it is in the log, safe with replication).
    #[default]
    Interval,
    /// A produce is acknowledged only after the data is flushed to disk. Concurrent
    /// produce requests share one flush (group commit).
    Always,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Interval => "interval",
            Durability::Always => "always",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interval" => Ok(Self::Interval),
            "always" => Ok(Self::Always),
            other => Err(format!("durability must be 'interval' or 'always', not '{other}'")),
        }
    }
}

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
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: 1024 * 1024 + 12,
            durability: Durability::Interval,
        }
    }
}

/// Configuration keys a topic may override.
pub const TOPIC_CONFIG_KEYS: [&str; 4] = ["retention.ms", "retention.bytes", "max.message.bytes", "durability"];

impl TopicConfig {
    /// Applies overrides (`key -> value`) over `self`, refusing unknown keys and bad
    /// values with a message that names the key.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Self, BrokerError> {
        let mut c = self.clone();
        for (k, v) in overrides {
            let bad = |why: &str| BrokerError::InvalidConfig(format!("{k}={v}: {why}"));
            match k.as_str() {
                "retention.ms" => c.retention_ms = parse_limit(v).map_err(|e| bad(&e))?,
                "retention.bytes" => c.retention_bytes = parse_limit(v).map_err(|e| bad(&e))?,
                "max.message.bytes" => {
                    let n: u32 = v.parse().map_err(|_| bad("not a number"))?;
                    if !(64..=MAX_MESSAGE_BYTES_CEILING).contains(&n) {
                        return Err(bad(&format!("must be between 64 and {MAX_MESSAGE_BYTES_CEILING}")));
                    }
                    c.max_message_bytes = n;
                }
                "durability" => c.durability = v.parse().map_err(|e: String| bad(&e))?,
                _ => {
                    return Err(BrokerError::InvalidConfig(format!(
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
        ])
    }
}

/// `-1` means unlimited, as in Kafka.
fn parse_limit(v: &str) -> Result<Option<u64>, String> {
    match v.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => Ok(Some(n as u64)),
        _ => Err("expected a non-negative number or -1 for unlimited".into()),
    }
}

/// Everything a broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Broker id (0 in standalone mode).
    pub broker_id: i32,
    pub data_dir: PathBuf,
    /// gRPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Prometheus metrics and health over HTTP; `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Address given to clients in Metadata; defaults to the bound gRPC address.
    pub advertised_address: Option<String>,
    /// Defaults for topics that do not override a key.
    pub topic_defaults: TopicConfig,
    /// Default partition count for CreateTopic without one.
    pub default_partitions: u32,
    /// How often the log is flushed in `interval` durability.
    pub flush_interval: Duration,
    /// How often retention is applied.
    pub retention_check_interval: Duration,
    /// sled page cache size in bytes.
    pub cache_capacity_bytes: u64,
    /// The consumer-group coordinator.
    pub groups: crate::groups::GroupsConfig,
    /// Where topics come from; `None`: the broker's own store (standalone).
    pub metadata: Option<std::sync::Arc<dyn crate::metadata::MetadataStore>>,
}

impl BrokerConfig {
    /// Standalone defaults for a data directory, listening on `listen`.
    pub fn standalone(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            broker_id: 0,
            data_dir: data_dir.into(),
            listen,
            metrics_listen: None,
            advertised_address: None,
            topic_defaults: TopicConfig::default(),
            default_partitions: 1,
            flush_interval: Duration::from_millis(1000),
            retention_check_interval: Duration::from_secs(30),
            cache_capacity_bytes: 128 * 1024 * 1024,
            groups: crate::groups::GroupsConfig::default(),
            metadata: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
        let err = TopicConfig::default().with_overrides(&overrides(&[("durability", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("durability=maybe"), "{err}");
        let err = TopicConfig::default().with_overrides(&overrides(&[("retention.ms", "-5")])).unwrap_err();
        assert!(err.to_string().contains("retention.ms=-5"), "{err}");
    }
}
