//! `sluice-broker`: runs one Sluice broker.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;
use sluice_broker::{BrokerConfig, Durability, kubernetes::KubeSettings};

/// Runs a Sluice broker. In standalone mode it keeps topic metadata in its own data
/// directory and needs nothing else; in Kubernetes mode (`--standalone=false`) it hosts
/// the partitions that Topic resources of its Cluster place on it, and holds a Lease.
#[derive(Debug, Parser)]
#[command(name = "sluice-broker", version, about)]
struct Args {
    /// Run without Kubernetes, keeping topic metadata in the data directory.
    /// `false`: Kubernetes mode (topics from Topic resources, a broker Lease).
    #[arg(long, env = "SLUICE_STANDALONE", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    standalone: bool,
    /// Kubernetes mode: name of the Cluster resource this broker belongs to.
    #[arg(long, env = "SLUICE_CLUSTER")]
    cluster: Option<String>,
    /// Kubernetes mode: namespace of the Cluster (default: the pod's namespace, else the
    /// client configuration's).
    #[arg(long, env = "SLUICE_NAMESPACE")]
    namespace: Option<String>,
    /// Kubernetes mode: the pod name `<cluster>-<ordinal>`; gives the broker id and the
    /// Lease holder identity.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Kubernetes mode: duration of the broker Lease, in seconds (renewed every third).
    #[arg(long, env = "SLUICE_LEASE_DURATION_SECONDS", default_value_t = 10)]
    lease_duration_seconds: u64,
    /// Kubernetes mode: this broker's rack/zone, put on its Lease as `sluice.dev/rack`.
    #[arg(long, env = "SLUICE_RACK")]
    rack: Option<String>,
    /// Directory for the log database; created if missing, locked while running.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// Address for the gRPC API (produce, fetch, admin).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Address for Prometheus metrics (/metrics) and a liveness check (/healthz);
    /// "off" disables it.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:9644")]
    metrics_listen: String,
    /// Address clients should use to reach this broker (defaults to --listen).
    #[arg(long, env = "SLUICE_ADVERTISED_ADDRESS")]
    advertised_address: Option<String>,
    /// Broker id (Kubernetes mode: parsed from POD_NAME when not given; standalone: 0).
    #[arg(long, env = "SLUICE_BROKER_ID")]
    broker_id: Option<i32>,
    /// Default durability for topics: "interval" (flush every --flush-interval-ms)
    /// or "always" (acknowledge only after a flush; concurrent requests share one).
    #[arg(long, env = "SLUICE_DURABILITY", default_value = "interval")]
    durability: Durability,
    /// Flush period in "interval" durability, in milliseconds.
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    flush_interval_ms: u64,
    /// Default retention.ms for topics (-1 keeps records forever).
    #[arg(long, env = "SLUICE_RETENTION_MS", default_value_t = 604_800_000, allow_hyphen_values = true)]
    retention_ms: i64,
    /// Default retention.bytes per partition (-1 for no size limit).
    #[arg(long, env = "SLUICE_RETENTION_BYTES", default_value_t = -1, allow_hyphen_values = true)]
    retention_bytes: i64,
    /// Default max.message.bytes: the largest batch a producer may send.
    #[arg(long, env = "SLUICE_MAX_MESSAGE_BYTES", default_value_t = 1_048_588)]
    max_message_bytes: u32,
    /// How often retention runs, in milliseconds.
    #[arg(long, env = "SLUICE_RETENTION_CHECK_INTERVAL_MS", default_value_t = 30_000)]
    retention_check_interval_ms: u64,
    /// Page cache for the log database, in MiB.
    #[arg(long, env = "SLUICE_CACHE_MB", default_value_t = 128)]
    cache_mb: u64,
    /// Partitions of the internal `__consumer_offsets` topic when it is first created.
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_PARTITIONS", default_value_t = 8)]
    offsets_topic_partitions: u32,
    /// Longest interval between consumer-group heartbeats, in milliseconds (the
    /// broker asks for at most a third of a member's session timeout).
    #[arg(long, env = "SLUICE_GROUP_HEARTBEAT_INTERVAL_MS", default_value_t = 3000)]
    group_heartbeat_interval_ms: u64,
    /// Shortest session timeout a consumer-group member may ask for, in milliseconds.
    #[arg(long, env = "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS", default_value_t = 500)]
    group_min_session_timeout_ms: u64,
    /// Log format: "text" or "json". Filter with RUST_LOG (default: info).
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

impl Args {
    /// Who this broker is in its Kubernetes cluster (`None` in standalone mode).
    fn kube_settings(&self) -> anyhow::Result<Option<KubeSettings>> {
        if self.standalone {
            return Ok(None);
        }
        let Some(cluster) = self.cluster.clone().filter(|c| !c.is_empty()) else {
            bail!("Kubernetes mode (SLUICE_STANDALONE=false) needs the Cluster name: set SLUICE_CLUSTER or --cluster");
        };
        // SLUICE_NAMESPACE, else POD_NAMESPACE (downward API), else the pod's own.
        let namespace =
            match self.namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).filter(|n| !n.is_empty()) {
                Some(n) => n,
                None => std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "default".to_string()),
            };
        let broker_id = match (self.broker_id, self.pod_name.as_deref()) {
            (Some(id), _) => id,
            (None, Some(pod)) => KubeSettings::id_from_pod_name(&cluster, pod).with_context(|| {
                format!(
                    "POD_NAME {pod:?} is not '{cluster}-<ordinal>': cannot tell the broker id (or pass --broker-id)"
                )
            })?,
            (None, None) => {
                bail!("Kubernetes mode needs the broker id: set POD_NAME (<cluster>-<ordinal>) or --broker-id")
            }
        };
        let identity = self.pod_name.clone().unwrap_or_else(|| format!("{cluster}-{broker_id}"));
        let advertised_address = self.advertised_address.clone().unwrap_or_else(|| self.listen.to_string());
        let lease_duration = Duration::from_secs(self.lease_duration_seconds.max(1));
        Ok(Some(KubeSettings {
            cluster,
            namespace,
            broker_id,
            identity,
            advertised_address,
            rack: self.rack.clone().filter(|r| !r.is_empty()),
            lease_duration,
            renew_every: (lease_duration / 3).max(Duration::from_millis(200)),
        }))
    }

    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let mut c = BrokerConfig::standalone(self.data_dir, self.listen);
        c.broker_id = self.broker_id.unwrap_or(0);
        c.metrics_listen = match self.metrics_listen.as_str() {
            "off" | "" => None,
            a => Some(a.parse().with_context(|| format!("--metrics-listen {a:?} is not HOST:PORT"))?),
        };
        c.advertised_address = self.advertised_address;
        c.flush_interval = Duration::from_millis(self.flush_interval_ms.max(1));
        c.retention_check_interval = Duration::from_millis(self.retention_check_interval_ms.max(10));
        c.cache_capacity_bytes = self.cache_mb * 1024 * 1024;
        c.groups.offsets_partitions = self.offsets_topic_partitions.max(1);
        c.groups.heartbeat_interval = Duration::from_millis(self.group_heartbeat_interval_ms.max(10));
        c.groups.min_session_timeout = Duration::from_millis(self.group_min_session_timeout_ms.max(10));
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("durability".to_string(), self.durability.as_str().to_string());
        overrides.insert("retention.ms".to_string(), self.retention_ms.to_string());
        overrides.insert("retention.bytes".to_string(), self.retention_bytes.to_string());
        overrides.insert("max.message.bytes".to_string(), self.max_message_bytes.to_string());
        c.topic_defaults = c.topic_defaults.with_overrides(&overrides).context("invalid broker defaults")?;
        Ok(c)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sluice_broker::telemetry::init(&args.log_format);
    let kube = args.kube_settings()?;
    let config = args.into_config()?;
    match kube {
        None => sluice_broker::run_until_signal(config).await.context("broker failed"),
        Some(settings) => sluice_broker::kubernetes::run_until_signal(config, settings).await.context("broker failed"),
    }
}
