//! The broker's command line and environment (`sluice-broker --help`), turned into a
//! [`BrokerConfig`] and a [`Mode`]. Every flag has an environment variable; the names
//! the operator sets come from the broker–operator contract
//! (`sluice_crd::contract::env`), so the two sides cannot drift.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use sluice_crd::contract::{self, env};

use crate::{
    config::{BrokerConfig, Durability},
    connections::ConnectionLimits,
    error::{BrokerError, Result},
    server::Mode,
};

/// Runs a Sluice broker. In standalone mode it keeps topic metadata in its own data
/// directory and needs nothing else; in Kubernetes mode (`--standalone=false`) it hosts
/// the partitions that Topic resources of its Cluster place on it, and holds a Lease.
#[derive(Debug, Parser)]
#[command(name = "sluice-broker", version, about)]
pub struct Args {
    /// Run without Kubernetes, keeping topic metadata in the data directory.
    /// `false`: Kubernetes mode (topics from Topic resources, a broker Lease).
    #[arg(long, env = env::STANDALONE, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub standalone: bool,
    /// Kubernetes mode: name of the Cluster resource this broker belongs to.
    #[arg(long, env = env::CLUSTER)]
    pub cluster: Option<String>,
    /// Kubernetes mode: namespace of the Cluster (default: POD_NAMESPACE, else the
    /// pod's service-account namespace, else `default`).
    #[arg(long, env = env::NAMESPACE)]
    pub namespace: Option<String>,
    /// Kubernetes mode: the pod name `<cluster>-<ordinal>`; gives the broker id and the
    /// Lease holder identity.
    #[arg(long, env = env::POD_NAME)]
    pub pod_name: Option<String>,
    /// Kubernetes mode: the pod's namespace (downward API), used when --namespace is unset.
    #[arg(long, env = env::POD_NAMESPACE, hide = true)]
    pub pod_namespace: Option<String>,
    /// Kubernetes mode: duration of the broker Lease, in seconds (renewed every third).
    #[arg(long, env = env::LEASE_DURATION_SECONDS, default_value_t = 10)]
    pub lease_duration_seconds: u64,
    /// This broker's rack/zone (Kubernetes mode: put on its Lease as `sluice.dev/rack`;
    /// cluster mode: sent to the controller). Placement spreads replicas over racks.
    #[arg(long, env = env::RACK)]
    pub rack: Option<String>,
    /// Cluster mode: the controller of a local cluster (`sluice dev --brokers N`), HOST:PORT.
    /// The broker heartbeats to it, takes topics and leaders from it and forwards
    /// topic admin to it; give every broker its own --broker-id.
    #[arg(long, env = "SLUICE_CONTROLLER", value_name = "HOST:PORT")]
    pub controller: Option<String>,
    /// Directory for the log database; created if missing, locked while running.
    #[arg(long, env = env::DATA_DIR, default_value = "./sluice-data")]
    pub data_dir: PathBuf,
    /// Address for the gRPC API (produce, fetch, admin).
    #[arg(long, env = env::LISTEN, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Address for Prometheus metrics (/metrics) and a liveness check (/healthz);
    /// "off" disables it.
    #[arg(long, env = env::METRICS_LISTEN, default_value = "127.0.0.1:9644")]
    pub metrics_listen: String,
    /// Address clients should use to reach this broker (defaults to --listen).
    #[arg(long, env = env::ADVERTISED_ADDRESS)]
    pub advertised_address: Option<String>,
    /// Address for Kafka's wire protocol (Kafka clients and tools); "off" disables it.
    #[arg(long, env = env::KAFKA_LISTEN, default_value = "127.0.0.1:9093")]
    pub kafka_listen: String,
    /// HOST:PORT Kafka clients are told in Metadata (default: the host of
    /// --advertised-address, on Kubernetes the pod's DNS name, with the Kafka port).
    #[arg(long, env = "SLUICE_KAFKA_ADVERTISED_LISTENER")]
    pub kafka_advertised_listener: Option<String>,
    /// Largest Kafka request accepted, in bytes (Kafka's socket.request.max.bytes); a
    /// larger one closes its connection.
    #[arg(long, env = "SLUICE_KAFKA_MAX_REQUEST_BYTES", default_value_t = 104_857_600)]
    pub kafka_max_request_bytes: usize,
    /// Kafka's auto.create.topics.enable: a Kafka Metadata request for an unknown topic
    /// creates it with --default-partitions partitions (standalone mode only).
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub auto_create_topics: bool,
    /// Partitions of a topic created without a count (Kafka's num.partitions).
    #[arg(long, env = "SLUICE_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: u32,
    /// Broker id (Kubernetes mode: parsed from POD_NAME when not given; standalone: 0).
    #[arg(long, env = env::BROKER_ID)]
    pub broker_id: Option<i32>,
    /// Default durability for topics: "interval" (flush every --flush-interval-ms)
    /// or "always" (acknowledge only after a flush; concurrent requests share one).
    #[arg(long, env = env::DURABILITY, default_value = "interval")]
    pub durability: Durability,
    /// Flush period in "interval" durability, in milliseconds.
    #[arg(long, env = env::FLUSH_INTERVAL_MS, default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// Default retention.ms for topics (-1 keeps records forever).
    #[arg(long, env = env::RETENTION_MS, default_value_t = 604_800_000, allow_hyphen_values = true)]
    pub retention_ms: i64,
    /// Default retention.bytes per partition (-1 for no size limit).
    #[arg(long, env = env::RETENTION_BYTES, default_value_t = -1, allow_hyphen_values = true)]
    pub retention_bytes: i64,
    /// Default max.message.bytes: the largest batch a producer may send.
    #[arg(long, env = env::MAX_MESSAGE_BYTES, default_value_t = 1_048_588)]
    pub max_message_bytes: u32,
    /// How often retention runs, in milliseconds.
    #[arg(long, env = env::RETENTION_CHECK_INTERVAL_MS, default_value_t = 30_000)]
    pub retention_check_interval_ms: u64,
    /// Size at which a partition's segment file is rolled, in bytes (Kafka's
    /// log.segment.bytes). Retention deletes whole segments.
    #[arg(long, env = "SLUICE_SEGMENT_BYTES", default_value_t = sluice_log::DEFAULT_SEGMENT_BYTES)]
    pub segment_bytes: u64,
    /// Age at which a partition's segment file is rolled, in milliseconds (log.roll.ms).
    #[arg(long, env = "SLUICE_SEGMENT_MS", default_value_t = sluice_log::DEFAULT_SEGMENT_MS)]
    pub segment_ms: u64,
    /// Start even when a partition's segment files are damaged below their flushed
    /// checkpoint: truncate each such partition to its last valid batch and log what was
    /// dropped (without it the broker refuses to start and names the damage).
    #[arg(long, env = "SLUICE_RECOVER")]
    pub recover: bool,
    /// A follower not caught up to its leader's log end for this long, in milliseconds,
    /// is taken out of the ISR (Kafka's replica.lag.time.max.ms).
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000)]
    pub replica_lag_time_max_ms: u64,
    /// Page cache for the log database, in MiB.
    #[arg(long, env = env::CACHE_MB, default_value_t = 128)]
    pub cache_mb: u64,
    /// Partitions of the internal `__consumer_offsets` topic when it is first created.
    #[arg(long, env = env::OFFSETS_TOPIC_PARTITIONS, default_value_t = 8)]
    pub offsets_topic_partitions: u32,
    /// Longest interval between consumer-group heartbeats, in milliseconds (the
    /// broker asks for at most a third of a member's session timeout).
    #[arg(long, env = env::GROUP_HEARTBEAT_INTERVAL_MS, default_value_t = 3000)]
    pub group_heartbeat_interval_ms: u64,
    /// Shortest session timeout a consumer-group member may ask for, in milliseconds.
    #[arg(long, env = env::GROUP_MIN_SESSION_TIMEOUT_MS, default_value_t = 500)]
    pub group_min_session_timeout_ms: u64,
    /// Kafka's classic group protocol: how long the first join round of an empty group
    /// waits for more members, in milliseconds (group.initial.rebalance.delay.ms).
    #[arg(long, env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 3000)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Bound on shutdown after SIGTERM/SIGINT, in milliseconds: the broker stops
    /// accepting, answers long polls with what they have, gives connections half of this
    /// to finish (HTTP/2 GOAWAY), closes the rest, flushes and exits 0 within it.
    /// Kubernetes' grace period for broker pods is this plus a margin.
    #[arg(long, env = env::SHUTDOWN_TIMEOUT_MS, default_value_t = contract::DEFAULT_SHUTDOWN_TIMEOUT_MS)]
    pub shutdown_timeout_ms: u64,
    /// Close a client connection when nothing was received on it for this long, in
    /// milliseconds (HTTP/2 PING acknowledgements count); 0: never.
    /// Metric: sluice_connections_closed_total{reason="idle"}.
    #[arg(long, env = env::IDLE_CONNECTION_TIMEOUT_MS, default_value_t = 540_000)]
    pub idle_connection_timeout_ms: u64,
    /// Requests (HTTP/2 streams) one client connection may have open at once; clients
    /// queue the rest. With max.message.bytes it bounds a connection's request memory.
    #[arg(long, env = env::MAX_CONCURRENT_STREAMS, default_value_t = 64)]
    pub max_concurrent_streams: u32,
    /// Send an HTTP/2 PING on each connection this often, in milliseconds; 0: never.
    #[arg(long, env = env::HTTP2_KEEPALIVE_INTERVAL_MS, default_value_t = 30_000)]
    pub http2_keepalive_interval_ms: u64,
    /// Close a connection whose peer does not acknowledge a PING within this, in
    /// milliseconds.
    #[arg(long, env = env::HTTP2_KEEPALIVE_TIMEOUT_MS, default_value_t = 10_000)]
    pub http2_keepalive_timeout_ms: u64,
    /// TCP keepalive idle time on client sockets, in milliseconds; 0: off.
    #[arg(long, env = env::TCP_KEEPALIVE_MS, default_value_t = 60_000)]
    pub tcp_keepalive_ms: u64,
    /// Log format: "text" or "json". Filter with RUST_LOG (default: info).
    #[arg(long, env = env::LOG_FORMAT, default_value = "text")]
    pub log_format: String,
}

impl Args {
    /// The broker's configuration, its mode, and cluster mode's settings when
    /// `--controller` is given (refused together with Kubernetes mode).
    pub fn into_run_settings(self) -> Result<(BrokerConfig, Mode, Option<crate::cluster::ClusterSettings>)> {
        let controller = self.controller.clone().filter(|c| !c.is_empty());
        if controller.is_some() && !self.standalone {
            return Err(BrokerError::InvalidConfig(format!(
                "--controller (SLUICE_CONTROLLER) is for a local cluster; it cannot be combined with Kubernetes mode ({}=false)",
                env::STANDALONE
            )));
        }
        let rack = self.rack.clone().filter(|r| !r.is_empty());
        let (config, mode) = self.into_settings()?;
        let cluster = controller.map(|c| crate::cluster::ClusterSettings::new(&config, c, rack));
        Ok((config, mode, cluster))
    }

    /// The broker's configuration and mode from the parsed arguments.
    pub fn into_settings(self) -> Result<(BrokerConfig, Mode)> {
        let mode = self.mode()?;
        Ok((self.into_config()?, mode))
    }

    #[cfg(feature = "kubernetes")]
    fn mode(&self) -> Result<Mode> {
        if self.standalone {
            return Ok(Mode::Standalone);
        }
        let identity = crate::kubernetes::Identity {
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone().or_else(|| self.pod_namespace.clone()),
            pod_name: self.pod_name.clone(),
            broker_id: self.broker_id,
            advertised_address: self.advertised_address.clone().unwrap_or_else(|| self.listen.to_string()),
            rack: self.rack.clone(),
            lease_duration: Duration::from_secs(self.lease_duration_seconds.max(1)),
        };
        Ok(Mode::Kubernetes(identity.resolve()?))
    }

    #[cfg(not(feature = "kubernetes"))]
    fn mode(&self) -> Result<Mode> {
        if self.standalone {
            return Ok(Mode::Standalone);
        }
        Err(BrokerError::InvalidConfig(format!(
            "{}=false asks for Kubernetes mode, but this sluice-broker was built without the `kubernetes` feature",
            env::STANDALONE
        )))
    }

    fn into_config(self) -> Result<BrokerConfig> {
        let mut c = BrokerConfig::standalone(self.data_dir, self.listen);
        c.broker_id = self.broker_id.unwrap_or(0);
        c.metrics_listen = match self.metrics_listen.as_str() {
            "off" | "" => None,
            a => Some(a.parse().map_err(|_| {
                BrokerError::InvalidConfig(format!("--metrics-listen {a:?} is not HOST:PORT (or \"off\")"))
            })?),
        };
        c.advertised_address = self.advertised_address;
        c.default_partitions = self.default_partitions.max(1);
        c.kafka = match self.kafka_listen.as_str() {
            "off" | "" => None,
            a => {
                let listen = a.parse().map_err(|_| {
                    BrokerError::InvalidConfig(format!("--kafka-listen {a:?} is not HOST:PORT (or \"off\")"))
                })?;
                let mut k = crate::kafka::KafkaConfig::new(listen);
                k.advertised = self.kafka_advertised_listener;
                k.max_request_bytes = self.kafka_max_request_bytes.max(1024);
                k.auto_create_topics = self.auto_create_topics;
                Some(k)
            }
        };
        c.flush_interval = Duration::from_millis(self.flush_interval_ms.max(1));
        c.retention_check_interval = Duration::from_millis(self.retention_check_interval_ms.max(10));
        c.cache_capacity_bytes = self.cache_mb * 1024 * 1024;
        c.segment_bytes = self.segment_bytes.max(1);
        c.segment_ms = self.segment_ms.max(1);
        c.recover = self.recover;
        c.groups.offsets_partitions = self.offsets_topic_partitions.max(1);
        c.groups.heartbeat_interval = Duration::from_millis(self.group_heartbeat_interval_ms.max(10));
        c.groups.min_session_timeout = Duration::from_millis(self.group_min_session_timeout_ms.max(10));
        c.groups.initial_rebalance_delay = Duration::from_millis(self.group_initial_rebalance_delay_ms);
        c.shutdown_timeout = Duration::from_millis(self.shutdown_timeout_ms.max(100));
        c.replica_lag_time_max = Duration::from_millis(self.replica_lag_time_max_ms.max(1));
        let off_if_zero = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        c.connections = ConnectionLimits {
            max_concurrent_streams: self.max_concurrent_streams.max(1),
            idle_timeout: off_if_zero(self.idle_connection_timeout_ms),
            http2_keepalive_interval: off_if_zero(self.http2_keepalive_interval_ms),
            http2_keepalive_timeout: Duration::from_millis(self.http2_keepalive_timeout_ms.max(1)),
            tcp_keepalive: off_if_zero(self.tcp_keepalive_ms),
        };
        let overrides = BTreeMap::from([
            ("durability".to_string(), self.durability.as_str().to_string()),
            ("retention.ms".to_string(), self.retention_ms.to_string()),
            ("retention.bytes".to_string(), self.retention_bytes.to_string()),
            ("max.message.bytes".to_string(), self.max_message_bytes.to_string()),
        ]);
        c.topic_defaults = c
            .topic_defaults
            .with_overrides(&overrides)
            .map_err(|e| BrokerError::InvalidConfig(format!("invalid broker defaults: {e}")))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("sluice-broker").chain(args.iter().copied())).expect("valid arguments")
    }

    #[test]
    fn standalone_defaults_become_the_config() {
        let (config, mode) = parse(&["--retention-ms", "-1", "--durability", "always", "--metrics-listen", "off"])
            .into_settings()
            .expect("valid");
        assert!(matches!(mode, Mode::Standalone));
        assert_eq!(config.topic_defaults.retention_ms, None);
        assert_eq!(config.topic_defaults.durability, Durability::Always);
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.broker_id, 0);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.connections, ConnectionLimits::default(), "the flags' defaults are the library's");
        assert_eq!(config.replica_lag_time_max, Duration::from_secs(30));
    }

    #[test]
    fn connection_limits_come_from_their_flags_and_zero_turns_them_off() {
        let (config, _) = parse(&[
            "--shutdown-timeout-ms",
            "3000",
            "--idle-connection-timeout-ms",
            "0",
            "--max-concurrent-streams",
            "8",
            "--http2-keepalive-interval-ms",
            "0",
            "--tcp-keepalive-ms",
            "0",
        ])
        .into_settings()
        .expect("valid");
        assert_eq!(config.shutdown_timeout, Duration::from_secs(3));
        let l = config.connections;
        assert_eq!(
            (l.max_concurrent_streams, l.idle_timeout, l.http2_keepalive_interval, l.tcp_keepalive),
            (8, None, None, None)
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag() {
        let err = parse(&["--metrics-listen", "nowhere"]).into_settings().unwrap_err().to_string();
        assert!(err.contains("--metrics-listen \"nowhere\""), "{err}");
        let err = parse(&["--max-message-bytes", "10"]).into_settings().unwrap_err().to_string();
        assert!(err.contains("max.message.bytes=10"), "{err}");
    }

    #[test]
    fn a_controller_address_selects_cluster_mode() {
        let args = ["--controller", "127.0.0.1:7000", "--broker-id", "2", "--listen", "127.0.0.1:7102"];
        let more = ["--kafka-listen", "127.0.0.1:7202", "--rack", "a"];
        let all: Vec<&str> = args.iter().chain(more.iter()).copied().collect();
        let (config, mode, cluster) = parse(&all).into_run_settings().expect("valid");
        assert!(matches!(mode, Mode::Standalone));
        assert_eq!(config.broker_id, 2);
        let s = cluster.expect("cluster mode");
        assert_eq!(
            (s.controller.as_str(), s.broker_id, s.grpc_address.as_str()),
            ("127.0.0.1:7000", 2, "127.0.0.1:7102")
        );
        assert_eq!((s.kafka_address.as_deref(), s.rack.as_deref()), (Some("127.0.0.1:7202"), Some("a")));
        assert!(parse(&[]).into_run_settings().expect("valid").2.is_none());
        let err = parse(&["--controller", "x:1", "--standalone=false"]).into_run_settings().unwrap_err();
        assert!(err.to_string().contains("cannot be combined with Kubernetes mode"), "{err}");
    }

    #[cfg(feature = "kubernetes")]
    #[test]
    fn kubernetes_mode_needs_a_cluster_and_an_identity() {
        let err = parse(&["--standalone=false"]).into_settings().unwrap_err().to_string();
        assert!(err.contains(env::CLUSTER), "{err}");
        let err = parse(&["--standalone=false", "--cluster", "dev"]).into_settings().unwrap_err().to_string();
        assert!(err.contains(env::POD_NAME), "{err}");
        let err = parse(&["--standalone=false", "--cluster", "dev", "--pod-name", "dev-x"])
            .into_settings()
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not 'dev-<ordinal>'"), "{err}");
        let (_, mode) = parse(&["--standalone=false", "--cluster", "dev", "--pod-name", "dev-2", "--namespace", "ns"])
            .into_settings()
            .expect("valid");
        let Mode::Kubernetes(s) = mode else { panic!("Kubernetes mode expected") };
        assert_eq!((s.broker_id, s.namespace.as_str(), s.identity.as_str()), (2, "ns", "dev-2"));
        assert_eq!(s.renew_every, Duration::from_secs(10) / 3);
    }
}
