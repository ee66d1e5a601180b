//! Prometheus metrics of the operator (reconciles, durations, failures, status writes,
//! leadership) and the small HTTP server that exposes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

/// A partition of a consumer group that has a `ConsumerGroup` resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub namespace: String,
    pub group: String,
    pub topic: String,
    pub partition: String,
}

/// A consumer group that has a `ConsumerGroup` resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub namespace: String,
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub status_writes: Family<ControllerLabels, Counter>,
    /// 1 while this process holds the `sluice-operator` Lease.
    pub leader: Gauge,
    /// `sluice_consumer_group_lag`: per partition of every group with a resource, as
    /// the operator last read it from the coordinator.
    pub group_lag: Family<GroupPartitionLabels, Gauge>,
    /// `sluice_consumer_group_total_lag`.
    pub group_total_lag: Family<GroupLabels, Gauge>,
    /// The partition series each group last had, to drop the ones that went away.
    group_series: std::sync::Mutex<std::collections::HashMap<GroupLabels, Vec<GroupPartitionLabels>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        // `sluice_operator_*` for the operator's own work; the consumer-group lag keeps the
        // broker's metric names (`sluice_consumer_group_lag`), so one query covers both.
        let mut root = Registry::with_prefix("sluice");
        let group_lag = Family::<GroupPartitionLabels, Gauge>::default();
        let group_total_lag = Family::<GroupLabels, Gauge>::default();
        root.register("consumer_group_lag", "Records behind the log end, per group partition", group_lag.clone());
        root.register("consumer_group_total_lag", "Records behind the log end, per group", group_total_lag.clone());
        let registry = root.sub_registry_with_prefix("operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let status_writes = Family::<ControllerLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by error kind", failures.clone());
        registry.register("reconcile_duration_seconds", "Reconcile durations", duration.clone());
        registry.register("status_writes", "Status subresource writes", status_writes.clone());
        registry.register("leader", "1 while this process is the active controller", leader.clone());
        Self {
            registry: root,
            reconciles,
            failures,
            duration,
            status_writes,
            leader,
            group_lag,
            group_total_lag,
            group_series: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts a reconcile; its duration is recorded when the returned guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&ControllerLabels { controller }).inc();
        ReconcileTimer { metrics: self, controller, start: Instant::now() }
    }

    pub fn failed(&self, controller: &'static str, error: &crate::Error) {
        self.failures.get_or_create(&ErrorLabels { controller, error: error.metric_label() }).inc();
    }

    pub fn status_written(&self, controller: &'static str) {
        self.status_writes.get_or_create(&ControllerLabels { controller }).inc();
    }

    /// Records the lag of a group's partitions (`None`: the group is gone or unreadable:
    /// its series are removed rather than left at stale values).
    pub fn group_lag(&self, namespace: &str, group: &str, partitions: Option<&[sluice_crd::PartitionLag]>) {
        let key = GroupLabels { namespace: namespace.to_string(), group: group.to_string() };
        let mut series = self.group_series.lock().unwrap_or_else(|p| p.into_inner());
        for old in series.remove(&key).unwrap_or_default() {
            self.group_lag.remove(&old);
        }
        let Some(partitions) = partitions else {
            self.group_total_lag.remove(&key);
            return;
        };
        let mut now = Vec::with_capacity(partitions.len());
        for p in partitions {
            let labels = GroupPartitionLabels {
                namespace: namespace.to_string(),
                group: group.to_string(),
                topic: p.topic.clone(),
                partition: p.partition.to_string(),
            };
            self.group_lag.get_or_create(&labels).set(p.lag);
            now.push(labels);
        }
        self.group_total_lag.get_or_create(&key).set(partitions.iter().map(|p| p.lag).sum());
        series.insert(key, now);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's duration on drop.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let labels = ControllerLabels { controller: self.controller };
        self.metrics.duration.get_or_create(&labels).observe(self.start.elapsed().as_secs_f64());
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> crate::Result<()> {
    let app = Router::new()
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.encode() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics server listening");
    axum::serve(listener, app).await?;
    Ok(())
}
