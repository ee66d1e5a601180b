//! The topic table: which topics and partitions this broker has open, kept in line
//! with the metadata store (admin calls in standalone mode, the Topic watch on
//! Kubernetes), and the lookup of a partition's log.

use std::{collections::BTreeMap, sync::Arc};

use sluice_log::{LogOffsets, PartitionLog, PartitionStore};
use tracing::{info, warn};

use super::{Broker, Topic, poisoned};
use crate::{
    config::TopicConfig,
    error::{BrokerError, Result},
    metadata::TopicSpec,
    metrics::PartitionLabels,
};

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

impl Broker {
    pub(super) fn open_topic(&self, spec: TopicSpec) -> Result<Arc<Topic>> {
        let config = self.config.topic_defaults.with_overrides(&spec.config)?;
        let hosted = self.metadata.hosted_partitions(&spec.name).unwrap_or_else(|| (0..spec.partitions).collect());
        let partitions = hosted
            .into_iter()
            .map(|p| Ok((p, Arc::new(PartitionLog::open(&self.store, &spec.name, p)?))))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Arc::new(Topic { spec, config, partitions }))
    }

    pub(super) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .map_err(|_| poisoned())?
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// The topic and the log of one of its partitions hosted here.
    pub(super) fn partition(&self, topic: &str, partition: u32) -> Result<(Arc<Topic>, Arc<PartitionLog>)> {
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
        // A replicating store (a cluster's controller) places the replicas; 0 takes its
        // default. Standalone: one copy.
        let replicates = self.metadata.replicates();
        if replication_factor > 1 && !replicates {
            return Err(BrokerError::InvalidRequest(format!(
                "replication factor {replication_factor} is larger than the number of brokers (1 in standalone mode)"
            )));
        }
        let replication_factor = if replicates { replication_factor } else { 1 };
        // Validate config before anything is written.
        self.config.topic_defaults.with_overrides(&config)?;
        let spec = TopicSpec { name: name.to_string(), partitions, replication_factor, config, internal: false };
        if replicates {
            if self.topics.read().map_err(|_| poisoned())?.contains_key(name) {
                return Err(BrokerError::TopicAlreadyExists(name.to_string()));
            }
            self.metadata.create_topic(&spec)?;
            info!(topic = name, partitions, "topic created");
            return self.applied(name);
        }
        let mut topics = self.topics.write().map_err(|_| poisoned())?;
        if topics.contains_key(name) {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        self.metadata.create_topic(&spec)?;
        // The store's answer (a controller decides the replication factor it was not given).
        let spec = self.metadata.topics()?.into_iter().find(|t| t.name == spec.name).unwrap_or(spec);
        let topic = self.open_topic(spec)?;
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        info!(topic = name, partitions, "topic created");
        Ok(self.describe(&topic))
    }

    /// Creates an internal topic (name starting with `__`) if it does not exist yet;
    /// returns its partition count (an existing topic keeps its count). Where internal
    /// topics belong to the cluster, the controller creates and places it (its default
    /// replication factor: 3, or every broker when fewer) and this broker opens the
    /// replicas it hosts.
    pub fn ensure_internal_topic(&self, name: &str, partitions: u32, config: BTreeMap<String, String>) -> Result<u32> {
        if self.metadata.shares_internal_topics() {
            if let Some(n) = self.partition_count(name) {
                return Ok(n);
            }
            self.config.topic_defaults.with_overrides(&config)?;
            let spec = TopicSpec { name: name.to_string(), partitions, replication_factor: 0, config, internal: true };
            match self.metadata.create_topic(&spec) {
                Ok(()) => info!(topic = name, partitions, "internal topic created by the controller"),
                // Another broker asked first.
                Err(BrokerError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            self.sync_with_metadata()?;
            return self.partition_count(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()));
        }
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

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if let Some(why) = self.metadata.admin_refusal() {
            return Err(BrokerError::Unsupported(why));
        }
        if sluice_core::topic::is_internal(name) {
            return Err(BrokerError::InvalidRequest(format!("'{name}' is an internal topic and cannot be deleted")));
        }
        if self.metadata.replicates() {
            if !self.topics.read().map_err(|_| poisoned())?.contains_key(name) {
                return Err(BrokerError::UnknownTopic(name.to_string()));
            }
            self.metadata.delete_topic(name)?;
            info!(topic = name, "topic deleted");
            return self.sync_with_metadata();
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
        sluice_log::drop_partition(&self.store, name, partition)?;
        self.idempotence.forget(name, partition)?;
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
                        Arc::new(PartitionLog::open(&self.store, &spec.name, *p)?)
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
        let hosted = |topic: &str, p: u32| topics.get(topic).is_some_and(|t| t.partitions.contains_key(&p));
        sluice_log::drop_unhosted_partitions(&self.store, hosted)?;
        Ok(())
    }

    /// Grows a topic to `count` partitions (Kafka's CreatePartitions; counts never
    /// shrink). Standalone only, as every admin change.
    pub fn create_partitions(&self, name: &str, count: u32) -> Result<TopicInfo> {
        if let Some(why) = self.metadata.admin_refusal() {
            return Err(BrokerError::Unsupported(why));
        }
        if sluice_core::topic::is_internal(name) {
            return Err(BrokerError::InvalidRequest(format!(
                "'{name}' is an internal topic; its partitions are fixed"
            )));
        }
        let mut topics = self.topics.write().map_err(|_| poisoned())?;
        let old = topics.get(name).cloned().ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        if count <= old.spec.partitions || count > 10_000 {
            return Err(BrokerError::InvalidRequest(format!(
                "topic '{name}' has {} partitions; the new count must be larger, and at most 10000 (asked: {count})",
                old.spec.partitions
            )));
        }
        let mut spec = old.spec.clone();
        spec.partitions = count;
        if self.metadata.replicates() {
            drop(topics);
            self.metadata.update_topic(&spec)?;
            info!(topic = name, partitions = count, "topic partitions added");
            return self.applied(name);
        }
        self.metadata.update_topic(&spec)?;
        let mut partitions = old.partitions.clone();
        for p in old.spec.partitions..count {
            partitions.insert(p, Arc::new(PartitionLog::open(&self.store, name, p)?));
        }
        let topic = Arc::new(Topic { spec, config: old.config.clone(), partitions });
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        info!(topic = name, partitions = count, "topic partitions added");
        Ok(self.describe(&topic))
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
        if self.metadata.replicates() {
            drop(topics);
            self.metadata.update_topic(&spec)?;
            info!(topic = name, "topic config changed");
            return self.applied(name);
        }
        self.metadata.update_topic(&spec)?;
        let topic = Arc::new(Topic { spec, config, partitions: old.partitions.clone() });
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        info!(topic = name, "topic config changed");
        Ok(self.describe(&topic))
    }

    /// After a change a replicating store (a cluster's controller) accepted: applied the
    /// way every metadata change is ([`Self::sync_with_metadata`]), then described. The
    /// controller call before it runs with no topics lock held: the replica fetchers and
    /// the metadata watch take that lock from the async workers, and holding it across
    /// a network call could park every worker, including the one that must read the
    /// controller's answer.
    fn applied(&self, name: &str) -> Result<TopicInfo> {
        self.sync_with_metadata()?;
        let topics = self.topics.read().map_err(|_| poisoned())?;
        let topic = topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        Ok(self.describe(topic))
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
}
