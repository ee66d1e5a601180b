//! The groups this broker coordinates: the [`Coordinator`], its settings, and opening
//! it (creating `__consumer_offsets`, replaying it into memory).
//!
//! Membership lives in memory ([`Group`]); committed offsets live in memory *and* as
//! records of `__consumer_offsets` (durability `always`: a commit is acknowledged only
//! once flushed). The jobs are split by file: membership, offsets, admin, gauges.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use sluice_groups::{ClassicGroup, CommittedOffsets, Group, TopicPartition};
use tracing::info;

use crate::{
    broker::Broker,
    error::{BrokerError, Result},
};

/// The internal topic that holds committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Largest batch the coordinator writes to the offsets topic (snapshots are split).
pub(super) const MAX_OFFSETS_BATCH: usize = 1024 * 1024;

/// Settings of the group coordinator.
#[derive(Debug, Clone)]
pub struct GroupsConfig {
    /// Partitions of `__consumer_offsets` when the broker creates it (an existing
    /// topic keeps its count).
    pub offsets_partitions: u32,
    /// Session timeout of members that do not ask for one.
    pub default_session_timeout: Duration,
    /// Range a member's session timeout is clamped to.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// Longest interval between heartbeats the coordinator asks for (it asks for at
    /// most a third of the session timeout).
    pub heartbeat_interval: Duration,
    /// Records an offsets partition takes before it is compacted.
    pub compact_after_records: u64,
    /// Classic protocol: how long the first join round of an empty group stays open
    /// for more members (Kafka's `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay: Duration,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            offsets_partitions: 8,
            default_session_timeout: Duration::from_secs(45),
            min_session_timeout: Duration::from_millis(500),
            max_session_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            compact_after_records: 10_000,
            initial_rebalance_delay: Duration::from_secs(3),
        }
    }
}

/// Everything the coordinator keeps in memory, under one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) groups: BTreeMap<String, Group>,
    /// Groups of Kafka's classic protocol (JoinGroup/SyncGroup).
    pub(super) classic: BTreeMap<String, ClassicGroup>,
    pub(super) offsets: CommittedOffsets,
}

/// The group coordinator of this broker.
#[derive(Debug)]
pub struct Coordinator {
    pub(super) broker: Arc<Broker>,
    pub(super) config: GroupsConfig,
    /// Partitions of `__consumer_offsets`.
    pub(super) partitions: u32,
    pub(super) state: Mutex<State>,
    /// Per offsets partition: serializes appends; holds records written since the last
    /// compaction.
    pub(super) append_locks: Vec<tokio::sync::Mutex<u64>>,
    /// Wakes classic joins and syncs waiting for their round after any change.
    pub(super) classic_changed: tokio::sync::Notify,
    /// Whether `__consumer_offsets` belongs to the cluster (see [`super::ownership`]):
    /// then this broker coordinates only the groups of the offsets partitions it leads.
    pub(super) shared: bool,
    /// Per offsets partition: the leader epoch at which this broker loaded it, while it
    /// coordinates its groups (always loaded where the topic is this broker's own).
    pub(super) loaded: Mutex<Vec<Option<i32>>>,
    /// Wakes the ownership loop (a request found its partition not loaded).
    pub(super) ownership_changed: tokio::sync::Notify,
}

fn poisoned() -> BrokerError {
    BrokerError::Storage("group state lock poisoned".into())
}

/// The configuration of `__consumer_offsets`: commits are acknowledged once flushed,
/// nothing expires by time or size (compaction keeps it small).
pub(super) fn offsets_topic_config() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("durability".to_string(), "always".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        ("max.message.bytes".to_string(), (2 * MAX_OFFSETS_BATCH).to_string()),
    ])
}

impl Coordinator {
    /// Opens the coordinator. Where `__consumer_offsets` is this broker's own, creates it
    /// if needed and replays it. Where it belongs to the cluster, it is created on the
    /// first group request and each partition is replayed when this broker becomes its
    /// leader ([`Self::sync_ownership`]).
    pub async fn open(broker: Arc<Broker>, config: GroupsConfig) -> Result<Arc<Self>> {
        let shared = broker.metadata().shares_internal_topics();
        let partitions = if shared {
            broker.partition_count(OFFSETS_TOPIC).unwrap_or(config.offsets_partitions.max(1))
        } else {
            broker.ensure_internal_topic(OFFSETS_TOPIC, config.offsets_partitions.max(1), offsets_topic_config())?
        };
        let c = Self {
            broker,
            config,
            partitions,
            state: Mutex::new(State::default()),
            append_locks: (0..partitions).map(|_| tokio::sync::Mutex::new(0)).collect(),
            classic_changed: tokio::sync::Notify::new(),
            shared,
            loaded: Mutex::new(vec![if shared { None } else { Some(0) }; partitions as usize]),
            ownership_changed: tokio::sync::Notify::new(),
        };
        if !shared {
            let started = Instant::now();
            let mut replayed = 0;
            for p in 0..partitions {
                let n = c.replay(p).await?;
                *c.append_locks[p as usize].lock().await = n;
                replayed += n;
            }
            let groups = c.lock()?.offsets.len();
            info!(
                records = replayed,
                groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "group offsets loaded"
            );
        }
        Ok(Arc::new(c))
    }

    pub(super) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| poisoned())
    }

    pub fn config(&self) -> &GroupsConfig {
        &self.config
    }

    /// Log start and high watermark of a partition from this broker's replica of it
    /// (in a cluster: whatever its role here); zeros for one not hosted here.
    pub(super) fn log_range(&self, tp: &TopicPartition) -> (u64, u64) {
        self.broker.local_offsets(&tp.topic, tp.partition).map_or((0, 0), |(start, hw, _)| (start, hw))
    }
}
