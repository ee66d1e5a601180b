//! Broker settings. Per-topic configuration (Kafka-style keys) is `sluice_core::topic`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use sluice_core::{
    Durability, TopicConfig,
    topic::{MAX_MESSAGE_BYTES_CEILING, TOPIC_CONFIG_KEYS},
};

/// Default of `--shutdown-timeout-ms`: well under Kubernetes' default grace period of
/// 30 s (the operator gives broker pods this plus a margin).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(sluice_crd::contract::DEFAULT_SHUTDOWN_TIMEOUT_MS);

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
    /// Segment files roll at this size (`--segment-bytes`).
    pub segment_bytes: u64,
    /// Segment files roll at this age (`--segment-ms`).
    pub segment_ms: u64,
    /// Truncate damaged partitions to their last valid batch at open instead of refusing
    /// to start (`--recover`).
    pub recover: bool,
    /// The consumer-group coordinator.
    pub groups: crate::groups::GroupsConfig,
    /// After SIGTERM (or [`crate::BrokerHandle::shutdown`]) the broker has exited, log
    /// flushed, within this, whatever clients do.
    pub shutdown_timeout: Duration,
    /// Limits on client connections: streams, idleness, keepalive.
    pub connections: crate::connections::ConnectionLimits,
    /// The Kafka-protocol listener; `None`: off.
    pub kafka: Option<crate::kafka::KafkaConfig>,
    /// Where topics come from; `None`: the broker's own store (standalone).
    pub metadata: Option<std::sync::Arc<dyn crate::metadata::MetadataStore>>,
    /// A follower not caught up to its leader's log end within this leaves the ISR
    /// (Kafka's `replica.lag.time.max.ms`, `--replica-lag-time-max-ms`).
    pub replica_lag_time_max: Duration,
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
            segment_bytes: sluice_log::DEFAULT_SEGMENT_BYTES,
            segment_ms: sluice_log::DEFAULT_SEGMENT_MS,
            recover: false,
            groups: crate::groups::GroupsConfig::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            connections: crate::connections::ConnectionLimits::default(),
            kafka: None,
            metadata: None,
            replica_lag_time_max: crate::replication::DEFAULT_REPLICA_LAG_TIME_MAX,
        }
    }
}
