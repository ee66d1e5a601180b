//! The idempotent producer on the broker side: producer ids (`InitProducerId`), and per
//! partition the producer state ([`ProducerStateManager`]) consulted and updated around
//! each append of a batch that carries a producer id, under one lock per partition so
//! that check, append and record are atomic. State is loaded on a partition's first
//! idempotent batch (snapshot plus replay of the log tail), snapshotted every
//! [`SNAPSHOT_EVERY`] appends and at flush (shutdown), and dropped with the partition.
//!
//! Producer ids are `broker id << 40 | counter`: unique across the cluster as long as
//! broker ids are, without asking a controller per id. The counter is persisted in
//! blocks of [`ID_BLOCK`]: the end of a block is flushed before any id of it is handed
//! out, and a restart continues after the last persisted block end.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use sluice_core::BatchInfo;
use sluice_log::{
    AppendedBatch, PartitionLog, PartitionStore,
    producer_state::{Check, PRODUCER_ID_EXPIRATION_MS, ProducerBatch, ProducerStateManager, persist},
};
use tracing::{debug, info};

use super::{Broker, now_ms};
use crate::{
    error::{BrokerError, Result},
    metrics::Metrics,
};

/// Ids handed out between two writes of the counter.
pub const ID_BLOCK: u64 = 1_000;
/// Bits of a producer id below the broker id.
const COUNTER_BITS: u32 = 40;
/// Idempotent appends to a partition between two snapshots of its producer state.
const SNAPSHOT_EVERY: u32 = 1_000;
/// The tree and key of the producer-id counter's persisted block end.
const ID_TREE: &str = "producer_ids";
const BLOCK_END_KEY: &[u8] = b"block_end";

/// Producer state of one partition and appends since its last snapshot.
#[derive(Debug)]
struct PartitionProducers {
    state: ProducerStateManager,
    since_snapshot: u32,
}

/// One partition's state, `None` until its first idempotent batch loads it.
type Slot = Arc<Mutex<Option<PartitionProducers>>>;

/// What an idempotent append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdempotentAppend {
    Appended(AppendedBatch),
    /// A retry of a stored batch: nothing appended.
    Duplicate {
        base_offset: u64,
        last_offset: u64,
    },
}

/// The broker's idempotence state (a field of [`Broker`]).
#[derive(Debug)]
pub(super) struct Idempotence {
    db: sled::Db,
    partitions: Mutex<HashMap<(String, u32), Slot>>,
    /// Next counter value and the persisted end of its block.
    ids: tokio::sync::Mutex<(u64, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is only changed by complete, non-panicking steps.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Idempotence {
    pub(super) fn open(db: &sled::Db) -> Result<Self> {
        let block_end = match db.open_tree(ID_TREE)?.get(BLOCK_END_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref().try_into().map_err(|_| BrokerError::Storage("corrupt producer-id counter".into()))?,
            ),
            None => 0,
        };
        // Ids up to the persisted block end may have been handed out: start after it.
        Ok(Self {
            db: db.clone(),
            partitions: Mutex::new(HashMap::new()),
            ids: tokio::sync::Mutex::new((block_end, block_end)),
        })
    }

    fn slot(&self, topic: &str, partition: u32) -> Slot {
        lock(&self.partitions).entry((topic.to_string(), partition)).or_default().clone()
    }

    /// Checks `batch` against the partition's producer state and appends it unless it
    /// is a duplicate, all under the partition's lock.
    pub(super) fn append(
        &self,
        log: &PartitionLog,
        producer: ProducerBatch,
        batch: &[u8],
        info: BatchInfo,
        leader_epoch: i32,
        metrics: &Metrics,
    ) -> Result<IdempotentAppend> {
        let (topic, partition) = (log.topic(), log.partition());
        let slot = self.slot(topic, partition);
        let mut guard = lock(&slot);
        if guard.is_none() {
            let (state, recovered) = persist::load(&self.db, topic, partition, log)?;
            info!(topic, partition, producers = state.len(), snapshot_offset = ?recovered.snapshot_offset,
                  replayed_batches = recovered.replayed_batches, "producer state loaded");
            *guard = Some(PartitionProducers { state, since_snapshot: 0 });
        }
        let Some(p) = guard.as_mut() else { return Err(BrokerError::Storage("producer state missing".into())) };
        // Labels only on the rare paths: an accepted append allocates nothing for metrics.
        let labels = || Metrics::topic(topic);
        match p.state.check(&producer) {
            Ok(Check::Duplicate { base_offset, last_offset }) => {
                metrics.produce_duplicates.get_or_create(&labels()).inc();
                debug!(topic, partition, producer_id = producer.producer_id, base_offset, "duplicate batch");
                Ok(IdempotentAppend::Duplicate { base_offset, last_offset })
            }
            Ok(Check::Append) => {
                let stored = log.append(batch, info, leader_epoch)?;
                p.state.record(&producer, stored.base_offset, now_ms());
                p.since_snapshot += 1;
                if p.since_snapshot >= SNAPSHOT_EVERY {
                    snapshot(&self.db, log, p)?;
                }
                Ok(IdempotentAppend::Appended(stored))
            }
            Err(e) if e.is_fenced() => {
                metrics.produce_fenced.get_or_create(&labels()).inc();
                Err(BrokerError::ProducerFenced { topic: topic.into(), partition, reason: e.to_string() })
            }
            Err(e) => {
                metrics.produce_out_of_order.get_or_create(&labels()).inc();
                Err(BrokerError::OutOfOrderSequence { topic: topic.into(), partition, reason: e.to_string() })
            }
        }
    }

    /// A follower's append of its leader's batches (`batches`, back to back), under the
    /// partition's producer-state lock: each goes into the log as the leader wrote it,
    /// and into the producer state when it is loaded (otherwise the first idempotent
    /// batch after a leader change loads it from the log, to its end). Returns the
    /// batches appended.
    pub(super) fn append_replica(&self, log: &PartitionLog, batches: &bytes::Bytes) -> Result<u64> {
        let slot = self.slot(log.topic(), log.partition());
        let mut guard = lock(&slot);
        let mut n = 0;
        for batch in sluice_core::Batches::new(bytes::Bytes::clone(batches)) {
            let batch = batch.map_err(BrokerError::Batch)?;
            log.append_replica(&batch.bytes)?;
            if let Some(p) = guard.as_mut() {
                p.state.replay(&batch.header);
            }
            n += 1;
        }
        Ok(n)
    }

    /// A follower truncated its log: its producer state (in memory and its snapshot) may
    /// know batches that are gone; the next load rebuilds it from the log.
    pub(super) fn reset(&self, topic: &str, partition: u32) -> Result<()> {
        let slot = self.slot(topic, partition);
        *lock(&slot) = None;
        persist::delete(&self.db, topic, partition)?;
        Ok(())
    }

    /// Snapshots the state of every partition loaded so far (before a flush).
    pub(super) fn snapshot_all(&self, logs: &[Arc<PartitionLog>]) -> Result<()> {
        for log in logs {
            let Some(slot) = lock(&self.partitions).get(&(log.topic().to_string(), log.partition())).cloned() else {
                continue;
            };
            if let Some(p) = lock(&slot).as_mut() {
                snapshot(&self.db, log, p)?;
            }
        }
        Ok(())
    }

    /// Forgets a partition's state and its snapshot (the partition was dropped).
    pub(super) fn forget(&self, topic: &str, partition: u32) -> Result<()> {
        lock(&self.partitions).remove(&(topic.to_string(), partition));
        persist::delete(&self.db, topic, partition)?;
        Ok(())
    }

    /// A new producer id: `broker_id << 40 | counter`.
    async fn next_id(&self, broker_id: i32) -> Result<i64> {
        if !(0..1 << (63 - COUNTER_BITS)).contains(&broker_id) {
            return Err(BrokerError::InvalidConfig(format!(
                "broker id {broker_id} cannot issue producer ids: it must be between 0 and {}",
                (1i64 << (63 - COUNTER_BITS)) - 1
            )));
        }
        let mut ids = self.ids.lock().await;
        if ids.0 >= ids.1 {
            let end = ids.0 + ID_BLOCK;
            if end >= 1 << COUNTER_BITS {
                return Err(BrokerError::Storage(format!("broker {broker_id} has used up its producer ids")));
            }
            self.db.open_tree(ID_TREE)?.insert(BLOCK_END_KEY, &end.to_be_bytes())?;
            // Durable before any id of the block leaves the broker.
            self.db.flush_async().await?;
            ids.1 = end;
        }
        let counter = ids.0;
        ids.0 += 1;
        Ok((i64::from(broker_id) << COUNTER_BITS) | counter as i64)
    }
}

/// Writes a partition's snapshot, valid up to its log end (every idempotent append below
/// it is recorded: they all happen under the lock the caller holds). Expired producers
/// are dropped first.
fn snapshot(db: &sled::Db, log: &PartitionLog, p: &mut PartitionProducers) -> Result<()> {
    p.state.remove_expired(now_ms(), PRODUCER_ID_EXPIRATION_MS);
    persist::save(db, log.topic(), log.partition(), &p.state, log.log_end_offset())?;
    p.since_snapshot = 0;
    Ok(())
}

impl Broker {
    /// Kafka's InitProducerId without transactions: a new producer id with epoch 0.
    pub async fn init_producer_id(&self, transactional_id: Option<&str>) -> Result<(i64, i16)> {
        if let Some(id) = transactional_id {
            return Err(BrokerError::Unsupported(format!(
                "transactions are not supported yet (transactional_id '{id}'); leave transactional_id unset \
                 for an idempotent producer"
            )));
        }
        let id = self.idempotence.next_id(self.config.broker_id).await?;
        debug!(producer_id = id, "producer id issued");
        Ok((id, 0))
    }

    /// Snapshots the producer state of every partition (before a flush).
    pub(super) fn snapshot_producer_state(&self) -> Result<()> {
        let logs: Vec<Arc<PartitionLog>> = match self.topics.read() {
            Ok(t) => t.values().flat_map(|t| t.partitions.values().cloned()).collect(),
            Err(_) => return Err(super::poisoned()),
        };
        self.idempotence.snapshot_all(&logs)
    }
}
