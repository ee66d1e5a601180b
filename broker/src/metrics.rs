//! Prometheus metrics of the broker, served on the metrics listener at `/metrics`.
//!
//! Counters and latency histograms are updated on the request path; per-partition
//! gauges (size, offsets) are refreshed from the logs at scrape time, so they are exact
//! and cost nothing between scrapes.

use std::sync::Mutex;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurabilityLabels {
    pub durability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub rpc: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KafkaRequestLabels {
    pub api: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseReasonLabels {
    pub reason: String,
}

/// All broker metrics, registered once in [`Metrics::new`].
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub produce_records: Family<TopicLabels, Counter>,
    pub produce_bytes: Family<TopicLabels, Counter>,
    pub produce_requests: Family<TopicLabels, Counter>,
    pub produce_latency: Family<DurabilityLabels, Histogram>,
    pub fetch_requests: Family<TopicLabels, Counter>,
    pub fetch_bytes: Family<TopicLabels, Counter>,
    pub fetch_latency: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
    pub group_commit_requests: Histogram,
    pub retention_deleted_batches: Family<TopicLabels, Counter>,
    pub partition_size_bytes: Family<PartitionLabels, Gauge>,
    pub partition_log_start: Family<PartitionLabels, Gauge>,
    pub partition_log_end: Family<PartitionLabels, Gauge>,
    pub partition_high_watermark: Family<PartitionLabels, Gauge>,
    pub partitions: Gauge,
    /// 1 while the broker holds its Lease (Kubernetes mode).
    pub lease_held: Gauge,
    /// Consumer groups (refreshed at scrape time by the coordinator).
    pub group_lag: Family<GroupPartitionLabels, Gauge>,
    pub group_committed: Family<GroupPartitionLabels, Gauge>,
    pub group_members: Family<GroupLabels, Gauge>,
    /// Client connections open on the gRPC listener.
    pub connections_open: Gauge,
    /// 1 while the last write to the data directory failed for lack of space.
    pub disk_full: Gauge,
    /// Connections the broker closed, by reason (`idle`, `shutdown`).
    pub connections_closed: Family<CloseReasonLabels, Counter>,
    /// Idempotent producers: retried batches answered with their original offset, and
    /// batches refused for a sequence gap or a stale epoch.
    pub produce_duplicates: Family<TopicLabels, Counter>,
    pub produce_out_of_order: Family<TopicLabels, Counter>,
    pub produce_fenced: Family<TopicLabels, Counter>,
    /// Kafka-protocol requests answered, by API and error code (`NONE`: success).
    pub kafka_requests: Family<KafkaRequestLabels, Counter>,
    /// Connections open on the Kafka listener.
    pub kafka_connections_open: Gauge,
    /// Connections accepted on the Kafka listener.
    pub kafka_connections_accepted: Counter,
    /// Kafka connections closed for bad input (garbage, oversized, unknown API or version).
    pub kafka_connections_refused: Counter,
    /// Replication: ISR size of each partition this broker leads.
    pub isr_size: Family<PartitionLabels, Gauge>,
    /// Replication: partitions led here whose ISR is smaller than their replica list.
    pub under_replicated_partitions: Gauge,
    /// Replication: records between the leader's log end and this follower's.
    pub follower_lag_records: Family<PartitionLabels, Gauge>,
    /// Replication, follower side: ReplicaFetch requests sent and batch bytes received.
    pub replica_fetch_requests: Counter,
    pub replica_fetch_bytes: Counter,
    /// Replication, leader side: ReplicaFetch requests served and batch bytes sent.
    pub replica_fetch_served: Counter,
    pub replica_fetch_bytes_served: Counter,
    /// Replication: ISR changes accepted by the controller.
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~13 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("sluice")),
            produce_records: Family::default(),
            produce_bytes: Family::default(),
            produce_requests: Family::default(),
            produce_latency: Family::new_with_constructor(latency_histogram),
            fetch_requests: Family::default(),
            fetch_bytes: Family::default(),
            fetch_latency: latency_histogram(),
            errors: Family::default(),
            group_commit_requests: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1.0, 2.0, 12,
            )),
            retention_deleted_batches: Family::default(),
            partition_size_bytes: Family::default(),
            partition_log_start: Family::default(),
            partition_log_end: Family::default(),
            partition_high_watermark: Family::default(),
            partitions: Gauge::default(),
            lease_held: Gauge::default(),
            group_lag: Family::default(),
            group_committed: Family::default(),
            group_members: Family::default(),
            connections_open: Gauge::default(),
            disk_full: Gauge::default(),
            connections_closed: Family::default(),
            produce_duplicates: Family::default(),
            produce_out_of_order: Family::default(),
            produce_fenced: Family::default(),
            kafka_requests: Family::default(),
            kafka_connections_open: Gauge::default(),
            kafka_connections_accepted: Counter::default(),
            kafka_connections_refused: Counter::default(),
            isr_size: Family::default(),
            under_replicated_partitions: Gauge::default(),
            follower_lag_records: Family::default(),
            replica_fetch_requests: Counter::default(),
            replica_fetch_bytes: Counter::default(),
            replica_fetch_served: Counter::default(),
            replica_fetch_bytes_served: Counter::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register("produce_records", "Records appended", m.produce_records.clone());
            r.register("produce_bytes", "Batch bytes appended", m.produce_bytes.clone());
            r.register("produce_requests", "Produce requests handled", m.produce_requests.clone());
            r.register(
                "produce_latency_seconds",
                "Produce request time in the broker, by durability mode",
                m.produce_latency.clone(),
            );
            r.register("fetch_requests", "Fetch requests handled", m.fetch_requests.clone());
            r.register("fetch_bytes", "Bytes returned by fetches", m.fetch_bytes.clone());
            r.register(
                "fetch_latency_seconds",
                "Fetch request time in the broker, long-poll wait included",
                m.fetch_latency.clone(),
            );
            r.register("request_errors", "Requests that failed, by RPC and error code", m.errors.clone());
            r.register(
                "group_commit_requests",
                "Produce requests made durable by one flush (durability=always)",
                m.group_commit_requests.clone(),
            );
            r.register(
                "retention_deleted_batches",
                "Batches deleted by retention",
                m.retention_deleted_batches.clone(),
            );
            r.register("partition_size_bytes", "Stored bytes per partition", m.partition_size_bytes.clone());
            r.register("partition_log_start_offset", "Log start offset", m.partition_log_start.clone());
            r.register("partition_log_end_offset", "Log end offset", m.partition_log_end.clone());
            r.register(
                "partition_high_watermark",
                "High watermark (offset after the last visible record)",
                m.partition_high_watermark.clone(),
            );
            r.register("partitions", "Partitions hosted by this broker", m.partitions.clone());
            r.register(
                "broker_lease_held",
                "1 while the broker holds its Lease and may act as leader (Kubernetes mode)",
                m.lease_held.clone(),
            );
            r.register(
                "consumer_group_lag",
                "Records between a group's committed offset and the log end, per partition",
                m.group_lag.clone(),
            );
            r.register(
                "consumer_group_committed_offset",
                "A group's committed offset, per partition",
                m.group_committed.clone(),
            );
            r.register("consumer_group_members", "Live members of a consumer group", m.group_members.clone());
            r.register("connections_open", "Client connections open on the gRPC listener", m.connections_open.clone());
            r.register(
                "disk_full",
                "1 while writes to the data directory fail for lack of space (produce is refused, reads go on)",
                m.disk_full.clone(),
            );
            r.register(
                "connections_closed",
                "Connections the broker closed: idle longer than --idle-connection-timeout-ms, or still open at the end of shutdown's grace period",
                m.connections_closed.clone(),
            );
            r.register(
                "produce_duplicate_batches",
                "Retried batches of idempotent producers answered with their original offset, not stored again",
                m.produce_duplicates.clone(),
            );
            r.register(
                "produce_out_of_order_batches",
                "Batches of idempotent producers refused for a sequence gap (OUT_OF_ORDER_SEQUENCE)",
                m.produce_out_of_order.clone(),
            );
            r.register(
                "produce_fenced_batches",
                "Batches of idempotent producers refused for a stale producer epoch (INVALID_PRODUCER_EPOCH)",
                m.produce_fenced.clone(),
            );
            r.register(
                "kafka_requests",
                "Kafka-protocol requests, by API and Kafka error code (NONE: no error)",
                m.kafka_requests.clone(),
            );
            r.register(
                "kafka_connections_open",
                "Client connections open on the Kafka listener",
                m.kafka_connections_open.clone(),
            );
            r.register(
                "kafka_connections_accepted",
                "Connections accepted on the Kafka listener",
                m.kafka_connections_accepted.clone(),
            );
            r.register(
                "kafka_connections_refused",
                "Kafka connections closed for bad input: garbage, a request over --kafka-max-request-bytes, an unknown API or version",
                m.kafka_connections_refused.clone(),
            );
            r.register(
                "partition_isr_size",
                "In-sync replicas of each partition this broker leads",
                m.isr_size.clone(),
            );
            r.register(
                "under_replicated_partitions",
                "Partitions led by this broker whose ISR is smaller than their replica list",
                m.under_replicated_partitions.clone(),
            );
            r.register(
                "follower_lag_records",
                "Records between the leader's log end and this follower's, per partition followed here",
                m.follower_lag_records.clone(),
            );
            r.register(
                "replica_fetch_requests",
                "ReplicaFetch requests this broker sent as a follower (one per leader per round)",
                m.replica_fetch_requests.clone(),
            );
            r.register("replica_fetch_bytes", "Batch bytes this follower received", m.replica_fetch_bytes.clone());
            r.register(
                "replica_fetch_served",
                "ReplicaFetch requests this broker served as a leader",
                m.replica_fetch_served.clone(),
            );
            r.register(
                "replica_fetch_bytes_served",
                "Batch bytes this leader sent to followers",
                m.replica_fetch_bytes_served.clone(),
            );
            r.register("isr_shrinks", "ISR shrinks accepted by the controller", m.isr_shrinks.clone());
            r.register("isr_expands", "ISR expands accepted by the controller", m.isr_expands.clone());
        }
        m
    }

    pub fn topic(topic: &str) -> TopicLabels {
        TopicLabels { topic: topic.to_string() }
    }

    pub fn group_commit_batch(&self, waiters: usize) {
        self.group_commit_requests.observe(waiters as f64);
    }

    /// Renders the registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

/// Group-commit flushes are counted in `group_commit_requests`.
impl sluice_log::FlushObserver for Metrics {
    fn flushed(&self, waiters: usize) {
        self.group_commit_batch(waiters);
    }
}
