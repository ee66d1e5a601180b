//! The broker's domain service: topics and their partition logs, produce, fetch
//! (long poll), offsets, retention. Knows nothing of gRPC; `grpc` adapts it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use sluice_core::batch;
use tokio::time::timeout_at;
use tracing::{debug, info, warn};

use crate::{
    config::{BrokerConfig, Durability, TopicConfig},
    error::{BrokerError, Result},
    metadata::{BrokerAddress, LocalMetadata, MetadataStore, TopicSpec},
    metrics::{Metrics, PartitionLabels},
    storage::{self, DataDirLock, GroupCommit, LogOffsets, PartitionLog, ReadResult, retention::RetentionLimits},
};

pub use sluice_core::Acks;

/// What a successful append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub record_count: u32,
    pub append_time_ms: i64,
    pub log_start: u64,
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    Timestamp(i64),
}

/// A fetch request in domain terms.
#[derive(Debug, Clone)]
pub struct FetchParams {
    pub offset: i64,
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
}

/// One partition as DescribeTopic shows it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: u32,
    pub offsets: LogOffsets,
    pub size_bytes: u64,
    pub batch_count: u64,
}

/// One topic as DescribeTopic shows it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub spec: TopicSpec,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug)]
struct Topic {
    spec: TopicSpec,
    config: TopicConfig,
    /// The partitions this broker hosts (all of them in standalone mode).
    partitions: BTreeMap<u32, Arc<PartitionLog>>,
}

/// Default fetch size when a request says 0, and the ceiling for any request.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1024 * 1024;
pub const FETCH_MAX_BYTES_CEILING: usize = 32 * 1024 * 1024;
/// Longest long-poll a fetch may ask for.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// A running broker's state.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    db: sled::Db,
    metadata: Arc<dyn MetadataStore>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    group_commit: GroupCommit,
    metrics: Arc<Metrics>,
    _lock: DataDirLock,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn poisoned() -> BrokerError {
    BrokerError::Storage("topic table lock poisoned".into())
}

impl Broker {
    /// Opens the data directory and every topic in it. Must run inside a tokio runtime
    /// (it starts the group-commit task).
    pub fn open(config: BrokerConfig) -> Result<Self> {
        let (db, lock) = storage::open(&config)?;
        let metadata: Arc<dyn MetadataStore> = match &config.metadata {
            Some(m) => m.clone(),
            None => {
                let address = config.advertised_address.clone().unwrap_or_else(|| config.listen.to_string());
                let me = BrokerAddress { id: config.broker_id, address, rack: String::new() };
                Arc::new(LocalMetadata::open(&db, me)?)
            }
        };
        let metrics = Arc::new(Metrics::new());
        let group_commit = GroupCommit::start(db.clone(), metrics.clone());
        let broker =
            Self { config, db, metadata, topics: RwLock::new(HashMap::new()), group_commit, metrics, _lock: lock };
        for spec in broker.metadata.topics()? {
            let topic = broker.open_topic(spec)?;
            broker.topics.write().map_err(|_| poisoned())?.insert(topic.spec.name.clone(), topic);
        }
        let n = broker.topics.read().map_err(|_| poisoned())?.len();
        info!(data_dir = %broker.config.data_dir.display(), topics = n, "broker storage open");
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The metadata store (placement, leaders and brokers in Kubernetes mode).
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn open_topic(&self, spec: TopicSpec) -> Result<Arc<Topic>> {
        let config = self.config.topic_defaults.with_overrides(&spec.config)?;
        let hosted = self.metadata.hosted_partitions(&spec.name).unwrap_or_else(|| (0..spec.partitions).collect());
        let partitions = hosted
            .into_iter()
            .map(|p| Ok((p, Arc::new(PartitionLog::open(&self.db, &spec.name, p)?))))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Arc::new(Topic { spec, config, partitions }))
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .map_err(|_| poisoned())?
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<(Arc<Topic>, Arc<PartitionLog>)> {
        let t = self.topic(topic)?;
        let p = t.partitions.get(&partition).cloned().ok_or_else(|| BrokerError::UnknownPartition {
            topic: topic.to_string(),
            partition,
            count: t.spec.partitions,
        })?;
        Ok((t, p))
    }

    /// Creates a topic. `partitions == 0` takes the broker default.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        if let Some(why) = self.metadata.admin_refusal() {
            return Err(BrokerError::Unsupported(why));
        }
        sluice_core::topic::validate_user_topic_name(name)?;
        let partitions = if partitions == 0 { self.config.default_partitions } else { partitions };
        if partitions > 10_000 {
            return Err(BrokerError::InvalidRequest(format!(
                "{partitions} partitions is more than the limit of 10000"
            )));
        }
        if replication_factor > 1 {
            return Err(BrokerError::InvalidRequest(format!(
                "replication factor {replication_factor} is larger than the number of brokers (1 in standalone mode)"
            )));
        }
        // Validate config before anything is written.
        self.config.topic_defaults.with_overrides(&config)?;
        let spec = TopicSpec { name: name.to_string(), partitions, replication_factor: 1, config, internal: false };
        let mut topics = self.topics.write().map_err(|_| poisoned())?;
        if topics.contains_key(name) {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        self.metadata.create_topic(&spec)?;
        let topic = self.open_topic(spec)?;
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        info!(topic = name, partitions, "topic created");
        Ok(self.describe(&topic))
    }

    /// Creates an internal topic (name starting with `__`) if it does not exist yet;
    /// returns its partition count (an existing topic keeps its count).
    pub fn ensure_internal_topic(&self, name: &str, partitions: u32, config: BTreeMap<String, String>) -> Result<u32> {
        let mut topics = self.topics.write().map_err(|_| poisoned())?;
        if let Some(t) = topics.get(name) {
            return Ok(t.spec.partitions);
        }
        self.config.topic_defaults.with_overrides(&config)?;
        let spec = TopicSpec { name: name.to_string(), partitions, replication_factor: 1, config, internal: true };
        self.metadata.create_topic(&spec)?;
        let topic = self.open_topic(spec)?;
        topics.insert(name.to_string(), topic);
        info!(topic = name, partitions, "internal topic created");
        Ok(partitions)
    }

    /// Deletes every batch of a partition that ends at or before `offset` (compaction
    /// of internal topics). Returns the number of batches deleted.
    pub fn delete_before(&self, topic: &str, partition: u32, offset: u64) -> Result<u64> {
        let (_, log) = self.partition(topic, partition)?;
        log.delete_before(offset)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if let Some(why) = self.metadata.admin_refusal() {
            return Err(BrokerError::Unsupported(why));
        }
        if sluice_core::topic::is_internal(name) {
            return Err(BrokerError::InvalidRequest(format!("'{name}' is an internal topic and cannot be deleted")));
        }
        let topic = {
            let mut topics = self.topics.write().map_err(|_| poisoned())?;
            let topic = topics.remove(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
            self.metadata.delete_topic(name)?;
            topic
        };
        for p in topic.partitions.keys() {
            self.drop_partition(name, *p)?;
        }
        info!(topic = name, "topic deleted");
        Ok(())
    }

    fn drop_partition(&self, name: &str, partition: u32) -> Result<()> {
        storage::drop_partition(&self.db, name, partition)?;
        let labels = PartitionLabels { topic: name.to_string(), partition };
        self.metrics.partition_size_bytes.remove(&labels);
        self.metrics.partition_log_start.remove(&labels);
        self.metrics.partition_log_end.remove(&labels);
        self.metrics.partition_high_watermark.remove(&labels);
        Ok(())
    }

    /// Brings the open topics and partitions in line with the metadata store (Kubernetes
    /// mode, after each change the store sees): opens what this broker now hosts, applies
    /// config changes, and drops the data of topics and partitions it no longer hosts,
    /// including trees left over from before a restart.
    pub fn sync_with_metadata(&self) -> Result<()> {
        let wanted = self.metadata.topics()?;
        let mut topics = self.topics.write().map_err(|_| poisoned())?;
        let gone: Vec<String> = topics.keys().filter(|n| !wanted.iter().any(|w| &&w.name == n)).cloned().collect();
        for name in gone {
            if let Some(t) = topics.remove(&name) {
                for p in t.partitions.keys() {
                    self.drop_partition(&name, *p)?;
                }
                info!(topic = %name, "topic no longer exists: data dropped");
            }
        }
        for spec in wanted {
            let hosted: Vec<u32> =
                self.metadata.hosted_partitions(&spec.name).unwrap_or_else(|| (0..spec.partitions).collect());
            let config = match self.config.topic_defaults.with_overrides(&spec.config) {
                Ok(c) => c,
                Err(e) => {
                    warn!(topic = %spec.name, error = %e, "topic config refused; keeping the previous one");
                    topics.get(&spec.name).map_or_else(|| self.config.topic_defaults.clone(), |t| t.config.clone())
                }
            };
            let old = topics.get(&spec.name).cloned();
            if let Some(old) = &old
                && old.spec == spec
                && old.partitions.keys().copied().eq(hosted.iter().copied())
            {
                continue;
            }
            let mut partitions = BTreeMap::new();
            for p in &hosted {
                let log = match old.as_ref().and_then(|o| o.partitions.get(p)) {
                    Some(l) => l.clone(),
                    None => {
                        info!(topic = %spec.name, partition = p, "hosting partition");
                        Arc::new(PartitionLog::open(&self.db, &spec.name, *p)?)
                    }
                };
                partitions.insert(*p, log);
            }
            for p in old.iter().flat_map(|o| o.partitions.keys()) {
                if !partitions.contains_key(p) {
                    self.drop_partition(&spec.name, *p)?;
                    info!(topic = %spec.name, partition = p, "partition no longer hosted here: data dropped");
                }
            }
            if old.as_ref().is_some_and(|o| o.config != config) {
                info!(topic = %spec.name, "topic config changed");
            }
            topics.insert(spec.name.clone(), Arc::new(Topic { spec, config, partitions }));
        }
        // Trees of partitions nobody hosts any more (deleted while this broker was down).
        for tree in self.db.tree_names() {
            let Ok(name) = std::str::from_utf8(&tree) else { continue };
            let Some(rest) = name.strip_prefix("t/") else { continue };
            let Some((topic_partition, _kind)) = rest.rsplit_once('/') else { continue };
            let Some((topic, partition)) = topic_partition.rsplit_once('/') else { continue };
            let Ok(partition) = partition.parse::<u32>() else { continue };
            if !topics.get(topic).is_some_and(|t| t.partitions.contains_key(&partition)) {
                self.db.drop_tree(&tree)?;
                info!(tree = name, "dropped data of a partition this broker does not host");
            }
        }
        Ok(())
    }

    /// Changes topic configuration overrides; an empty value removes an override.
    pub fn alter_topic_config(&self, name: &str, set: BTreeMap<String, String>) -> Result<TopicInfo> {
        if let Some(why) = self.metadata.admin_refusal() {
            return Err(BrokerError::Unsupported(why));
        }
        let mut topics = self.topics.write().map_err(|_| poisoned())?;
        let old = topics.get(name).cloned().ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let mut spec = old.spec.clone();
        for (k, v) in set {
            if v.is_empty() {
                spec.config.remove(&k);
            } else {
                spec.config.insert(k, v);
            }
        }
        let config = self.config.topic_defaults.with_overrides(&spec.config)?;
        self.metadata.update_topic(&spec)?;
        let topic = Arc::new(Topic { spec, config, partitions: old.partitions.clone() });
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        info!(topic = name, "topic config changed");
        Ok(self.describe(&topic))
    }

    fn describe(&self, topic: &Topic) -> TopicInfo {
        TopicInfo {
            spec: topic.spec.clone(),
            config: topic.config.clone(),
            partitions: topic
                .partitions
                .values()
                .map(|p| PartitionInfo {
                    partition: p.partition(),
                    offsets: p.offsets(),
                    size_bytes: p.size_bytes(),
                    batch_count: p.batch_count(),
                })
                .collect(),
        }
    }

    /// Partition count of a topic, `None` when it does not exist.
    pub fn partition_count(&self, name: &str) -> Option<u32> {
        self.topics.read().ok()?.get(name).map(|t| t.spec.partitions)
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let topic = self.topic(name)?;
        Ok(self.describe(&topic))
    }

    /// Every topic (internal ones only when asked), sorted by name.
    pub fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicInfo>> {
        let topics: Vec<Arc<Topic>> = self.topics.read().map_err(|_| poisoned())?.values().cloned().collect();
        let mut out: Vec<TopicInfo> =
            topics.iter().filter(|t| include_internal || !t.spec.internal).map(|t| self.describe(t)).collect();
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    /// Validates and appends one batch; waits for durability as the topic requires.
    pub async fn produce(&self, topic: &str, partition: u32, acks: Acks, batch: Bytes) -> Result<Appended> {
        let started = Instant::now();
        self.metadata.check_leader(topic, partition)?;
        let (t, log) = self.partition(topic, partition)?;
        if acks == Acks::All && t.spec.replication_factor > 1 {
            // Without replication, "all in-sync replicas" would be a promise not kept.
            return Err(BrokerError::NotEnoughReplicas {
                topic: topic.to_string(),
                replication_factor: t.spec.replication_factor,
            });
        }
        let info = batch::validate(&batch, t.config.max_message_bytes as usize)?;
        let now = now_ms();
        let header = log.append(&batch, info, 0, now)?;
        let next = header.next_offset();
        match t.config.durability {
            Durability::Interval => log.advance_high_watermark(next),
            Durability::Always if acks == Acks::None => {
                // Nobody waits for the answer, but consumers must still see only
                // flushed data.
                let gc = self.group_commit.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    if gc.flushed().await.is_ok() {
                        log.advance_high_watermark(next);
                    }
                });
            }
            Durability::Always => {
                self.group_commit.flushed().await.map_err(BrokerError::Storage)?;
                log.advance_high_watermark(next);
            }
        }
        let labels = Metrics::topic(topic);
        self.metrics.produce_requests.get_or_create(&labels).inc();
        self.metrics.produce_records.get_or_create(&labels).inc_by(u64::from(info.record_count));
        self.metrics.produce_bytes.get_or_create(&labels).inc_by(batch.len() as u64);
        self.metrics
            .produce_latency
            .get_or_create(&crate::metrics::DurabilityLabels { durability: t.config.durability.as_str().to_string() })
            .observe(started.elapsed().as_secs_f64());
        debug!(topic, partition, base_offset = header.base_offset, records = info.record_count, "appended");
        Ok(Appended {
            base_offset: header.base_offset,
            record_count: info.record_count,
            append_time_ms: now,
            log_start: log.offsets().log_start,
        })
    }

    /// Reads batches from `offset`; waits up to `max_wait` for `min_bytes` to be there.
    pub async fn fetch(&self, topic: &str, partition: u32, params: FetchParams) -> Result<ReadResult> {
        let started = Instant::now();
        self.metadata.check_leader(topic, partition)?;
        let (_, log) = self.partition(topic, partition)?;
        let max_bytes = match params.max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES,
            n => n.min(FETCH_MAX_BYTES_CEILING),
        };
        let deadline = tokio::time::Instant::now() + params.max_wait.min(MAX_FETCH_WAIT);
        let mut hw = log.watch_high_watermark();
        let result = loop {
            hw.borrow_and_update();
            let r = log.read(params.offset, max_bytes)?;
            if r.batches.len() >= params.min_bytes.max(1) || tokio::time::Instant::now() >= deadline {
                break r;
            }
            match timeout_at(deadline, hw.changed()).await {
                Ok(Ok(())) => continue,
                // The partition was deleted while we waited.
                Ok(Err(_)) => return Err(BrokerError::UnknownTopic(topic.to_string())),
                Err(_) => break log.read(params.offset, max_bytes)?,
            }
        };
        let labels = Metrics::topic(topic);
        self.metrics.fetch_requests.get_or_create(&labels).inc();
        self.metrics.fetch_bytes.get_or_create(&labels).inc_by(result.batches.len() as u64);
        self.metrics.fetch_latency.observe(started.elapsed().as_secs_f64());
        Ok(result)
    }

    /// Looks up an offset. For a timestamp later than every record, returns the high
    /// watermark and no timestamp (as Kafka does).
    pub fn list_offsets(&self, topic: &str, partition: u32, query: OffsetQuery) -> Result<(u64, Option<i64>)> {
        self.metadata.check_leader(topic, partition)?;
        let (_, log) = self.partition(topic, partition)?;
        let o = log.offsets();
        Ok(match query {
            OffsetQuery::Earliest => (o.log_start, None),
            OffsetQuery::Latest => (o.high_watermark, None),
            OffsetQuery::Timestamp(ts) => match log.offset_for_timestamp(ts)? {
                Some((off, ts)) => (off, Some(ts)),
                None => (o.high_watermark, None),
            },
        })
    }

    /// Applies retention to every partition once. Returns batches deleted.
    pub fn apply_retention(&self, now_ms: i64) -> u64 {
        let topics: Vec<Arc<Topic>> = match self.topics.read() {
            Ok(t) => t.values().cloned().collect(),
            Err(_) => return 0,
        };
        let mut total = 0;
        for t in topics {
            let limits =
                RetentionLimits { retention_ms: t.config.retention_ms, retention_bytes: t.config.retention_bytes };
            if limits.retention_ms.is_none() && limits.retention_bytes.is_none() {
                continue;
            }
            for p in t.partitions.values() {
                match p.apply_retention(limits, now_ms) {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(topic = %t.spec.name, partition = p.partition(), batches = n,
                              log_start = p.offsets().log_start, "retention deleted batches");
                        self.metrics.retention_deleted_batches.get_or_create(&Metrics::topic(&t.spec.name)).inc_by(n);
                        total += n;
                    }
                    Err(e) => warn!(topic = %t.spec.name, partition = p.partition(), error = %e, "retention failed"),
                }
            }
        }
        total
    }

    /// Refreshes per-partition gauges (called before each scrape).
    pub fn refresh_gauges(&self) {
        let Ok(topics) = self.topics.read() else { return };
        let mut n = 0;
        for t in topics.values() {
            for p in t.partitions.values() {
                n += 1;
                let l = PartitionLabels { topic: t.spec.name.clone(), partition: p.partition() };
                let o = p.offsets();
                self.metrics.partition_size_bytes.get_or_create(&l).set(p.size_bytes() as i64);
                self.metrics.partition_log_start.get_or_create(&l).set(o.log_start as i64);
                self.metrics.partition_log_end.get_or_create(&l).set(o.log_end as i64);
                self.metrics.partition_high_watermark.get_or_create(&l).set(o.high_watermark as i64);
            }
        }
        self.metrics.partitions.set(n);
    }

    /// Stops background work that holds the database (shutdown).
    pub async fn close(&self) {
        self.group_commit.stop().await;
    }

    /// Flushes everything to disk (shutdown).
    pub async fn flush(&self) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush()).await.map_err(|e| BrokerError::Storage(e.to_string()))??;
        Ok(())
    }
}
