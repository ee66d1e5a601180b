//! The broker's domain service: topics and their partition logs, produce, fetch
//! (long poll), offsets, retention. Knows nothing of gRPC; `grpc` adapts it.
//!
//! - `topics`: the topic table: create, delete, alter, describe, the sync with the
//!   metadata store, and finding a partition's log.
//! - `data_path`: produce (acks, durability, leader epoch), fetch long poll, list
//!   offsets, retention runs, per-partition gauges.
//! - `idempotence`: producer ids and the idempotent producer's checks around appends.
//! - `replica`: what replication needs of the broker: leader state, the high watermark
//!   rule on the log, the acks=all wait, follower appends and truncation.

mod data_path;
mod idempotence;
mod replica;
mod topics;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use sluice_log::{DataDirLock, GroupCommit, LogConfig, LogStore, PartitionLog};
use tracing::info;

pub use self::{
    data_path::{Appended, DEFAULT_FETCH_MAX_BYTES, FETCH_MAX_BYTES_CEILING, FetchParams, MAX_FETCH_WAIT, OffsetQuery},
    replica::{DEFAULT_PRODUCE_TIMEOUT, HostedPartition},
    topics::{PartitionInfo, TopicInfo},
};
use crate::{
    config::{BrokerConfig, TopicConfig},
    error::{BrokerError, Result},
    metadata::{BrokerAddress, LocalMetadata, MetadataStore, TopicSpec},
    metrics::Metrics,
};

pub use sluice_core::Acks;

/// One open topic: its spec, its effective configuration, and the logs of the
/// partitions this broker hosts (all of them in standalone mode).
#[derive(Debug)]
struct Topic {
    spec: TopicSpec,
    config: TopicConfig,
    partitions: BTreeMap<u32, Arc<PartitionLog>>,
}

/// A running broker's state.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    /// The log database (also holds metadata, offsets and the broker's other state).
    db: sled::Db,
    store: Arc<LogStore>,
    metadata: Arc<dyn MetadataStore>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    group_commit: GroupCommit,
    /// Producer ids and per-partition producer state.
    idempotence: Arc<idempotence::Idempotence>,
    /// Follower progress of the partitions this broker leads (replication).
    leaders: crate::replication::Leaders,
    metrics: Arc<Metrics>,
    /// `true` once shutdown began: long polls return at once with what they have.
    stopping: tokio::sync::watch::Sender<bool>,
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
        let (store, lock) = sluice_log::open(&LogConfig {
            data_dir: config.data_dir.clone(),
            cache_capacity_bytes: config.cache_capacity_bytes,
            flush_interval: config.flush_interval,
            segment_bytes: config.segment_bytes,
            segment_ms: config.segment_ms,
            recover: config.recover,
        })?;
        let db = store.db().clone();
        let metadata: Arc<dyn MetadataStore> = match &config.metadata {
            Some(m) => m.clone(),
            None => {
                let address = config.advertised_address.clone().unwrap_or_else(|| config.listen.to_string());
                let me = BrokerAddress { id: config.broker_id, address, rack: String::new(), kafka_address: None };
                Arc::new(LocalMetadata::open(&db, me)?)
            }
        };
        let metrics = Arc::new(Metrics::new());
        let group_commit = GroupCommit::start(store.clone(), config.flush_interval, metrics.clone());
        let idempotence = Arc::new(idempotence::Idempotence::open(&db)?);
        let broker = Self {
            config,
            db,
            store,
            metadata,
            topics: RwLock::new(HashMap::new()),
            group_commit,
            idempotence,
            leaders: Default::default(),
            metrics,
            stopping: tokio::sync::watch::channel(false).0,
            _lock: lock,
        };
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

    /// The log database, for the broker's own trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Shutdown began: fetches waiting in their long poll return now with what they
    /// have, and later ones do not wait.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether shutdown began (long polls answer at once).
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops background work that holds the database (shutdown).
    pub async fn close(&self) {
        self.group_commit.stop().await;
    }

    /// Snapshots the producer state and flushes everything to disk (shutdown).
    pub async fn flush(&self) -> Result<()> {
        self.snapshot_producer_state()?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            store.flush_segments()?;
            store.db().flush()?;
            Ok(())
        })
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))??;
        Ok(())
    }
}
