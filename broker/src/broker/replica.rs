//! The broker's side of replication that needs its internals: whether a topic is
//! replicated, the leader state of a partition, the high watermark rule applied to the
//! log, the acks=all wait, and the follower's appends and truncations (which keep the
//! producer state in line with the log). The loops and the RPCs are in
//! `crate::replication`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use sluice_log::{PartitionLog, PartitionStore};
use tracing::debug;

use super::{Broker, Topic, poisoned};
use crate::{
    error::{BrokerError, Result},
    replication::leader::{LeaderPartition, lock},
};

/// Kafka's default `request.timeout.ms`: how long acks=all waits for the ISR when the
/// request names no timeout.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// A hosted partition, for the replication loops.
#[derive(Debug, Clone)]
pub struct HostedPartition {
    pub topic: String,
    /// The topic's partition count (what `placement` takes).
    pub partitions: u32,
    pub partition: u32,
    pub log: Arc<PartitionLog>,
    pub min_isr: u32,
}

impl Broker {
    /// Whether a topic's partitions are replicated: the metadata store replicates and
    /// the topic has more than one replica.
    pub(super) fn is_replicated(&self, t: &Topic) -> bool {
        t.spec.replication_factor > 1 && self.metadata.replicates()
    }

    /// The follower-progress table of the partitions this broker leads.
    pub fn leaders(&self) -> &crate::replication::Leaders {
        &self.leaders
    }

    /// Every partition of a replicated topic hosted here.
    pub fn replicated_partitions(&self) -> Result<Vec<HostedPartition>> {
        let topics = self.topics.read().map_err(|_| poisoned())?;
        let mut out = Vec::new();
        for t in topics.values().filter(|t| self.is_replicated(t)) {
            for (p, log) in &t.partitions {
                out.push(HostedPartition {
                    topic: t.spec.name.clone(),
                    partitions: t.spec.partitions,
                    partition: *p,
                    log: log.clone(),
                    min_isr: t.config.min_insync_replicas,
                });
            }
        }
        Ok(out)
    }

    /// A hosted partition's log, for the replication RPCs (no leadership check).
    pub fn replica_log(&self, topic: &str, partition: u32) -> Result<(u32, Arc<PartitionLog>)> {
        let (t, log) = self.partition(topic, partition)?;
        Ok((t.config.min_insync_replicas, log))
    }

    /// The leader state of a partition this broker leads, made from the metadata when
    /// this is its first use.
    pub(super) fn leader_partition(&self, t: &Topic, partition: u32) -> Result<Arc<Mutex<LeaderPartition>>> {
        if let Some(s) = self.leaders.get(&t.spec.name, partition) {
            return Ok(s);
        }
        let placement = self
            .metadata
            .placement(&t.spec.name, t.spec.partitions)
            .into_iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: t.spec.name.clone(),
                partition,
                count: t.spec.partitions,
            })?;
        Ok(self.leaders.refresh(&t.spec.name, &placement, t.config.min_insync_replicas, Instant::now()))
    }

    /// Applies the high watermark rule of a led partition to its log.
    pub fn update_high_watermark(&self, log: &PartitionLog, state: &LeaderPartition) {
        if let Some(hw) = state.high_watermark(self.config.broker_id, log.log_end_offset()) {
            log.advance_high_watermark(hw);
        }
    }

    /// acks=all on a replicated partition: refuses while the ISR is below
    /// `min.insync.replicas`.
    pub(super) fn check_in_sync(&self, topic: &str, partition: u32, state: &LeaderPartition) -> Result<()> {
        if state.enough_in_sync() {
            return Ok(());
        }
        Err(BrokerError::NotEnoughInSyncReplicas {
            topic: topic.to_string(),
            partition,
            isr: state.isr.clone(),
            min_isr: state.min_isr,
            appended: false,
        })
    }

    /// acks=all: waits until the high watermark passes `offset` (every ISR member has
    /// the batch), bounded by `timeout`; fails at once if this broker stops leading or
    /// the ISR falls below `min.insync.replicas` meanwhile.
    pub(super) async fn wait_committed(
        &self,
        topic: &str,
        partition: u32,
        log: &PartitionLog,
        state: &Mutex<LeaderPartition>,
        offset: u64,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut hw = log.watch_high_watermark();
        loop {
            if *hw.borrow_and_update() >= offset {
                return Ok(());
            }
            self.metadata.check_leader(topic, partition)?;
            {
                let s = lock(state);
                if !s.enough_in_sync() {
                    return Err(BrokerError::NotEnoughInSyncReplicas {
                        topic: topic.to_string(),
                        partition,
                        isr: s.isr.clone(),
                        min_isr: s.min_isr,
                        appended: true,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::ReplicationTimeout {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            // Leadership and the ISR are looked at again at least every 100 ms.
            let step = deadline.min(tokio::time::Instant::now() + Duration::from_millis(100));
            if let Ok(Err(_)) = tokio::time::timeout_at(step, hw.changed()).await {
                return Err(BrokerError::UnknownTopic(topic.to_string()));
            }
        }
    }

    /// A follower's append of batches fetched from its leader (blocking: call it off
    /// the async workers). Returns the number of batches.
    pub fn append_replica(&self, log: &PartitionLog, batches: &Bytes) -> Result<u64> {
        let n = self.idempotence.append_replica(log, batches)?;
        debug!(
            topic = log.topic(),
            partition = log.partition(),
            batches = n,
            log_end = log.log_end_offset(),
            "replica batches appended"
        );
        Ok(n)
    }

    /// A follower's truncation (blocking). Forgets the producer state, which the next
    /// load rebuilds from what is left of the log. Returns the new log end offset.
    pub fn truncate_replica(&self, log: &PartitionLog, offset: u64) -> Result<u64> {
        if offset >= log.log_end_offset() {
            return Ok(log.log_end_offset());
        }
        let end = log.truncate_to(offset)?;
        self.idempotence.reset(log.topic(), log.partition())?;
        Ok(end)
    }
}
