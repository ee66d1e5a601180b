//! [`PartitionLog`]: the log of one partition: its segment files in
//! `<data dir>/<topic>-<partition>/` (the truth), and its entries in the store's global
//! sled trees (index, time index, log start, recovery checkpoint; see
//! [`crate::storage`]), derived from the segments and rebuilt from them when missing.
//!
//! Offsets are assigned under a per-partition mutex held for the write and the index
//! insert, so appends to one partition are serialised in offset order and appends to
//! different partitions run in parallel; truncation and deletion take the same mutex
//! (as Kafka's log lock). Nothing is created on disk until the first append.
//!
//! - `index`: the index entry and timestamp keys.
//! - `recovery`: what `open` checks and repairs (torn tails, damage, the index).
//! - `scan`: the walk over segment files that recovery uses.
//! - `read`: reads and timestamp lookups.
//! - `write`: append and segment rolls.
//! - `epochs`: the leader-epoch history (epoch → start offset) and OffsetForLeaderEpoch.
//! - `delete`: truncation of the tail, deletion of the head (explicit or by retention).

mod delete;
mod epochs;
mod index;
mod read;
mod recovery;
mod scan;
mod write;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod truncate_tests;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use sluice_core::BatchInfo;
use tokio::sync::watch;

pub use self::epochs::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use crate::store::{AppendedBatch, LogOffsets, ReadResult};
use crate::{
    error::{LogError, Result},
    retention::RetentionLimits,
    segment::Segment,
    storage::{LogStore, PartitionId},
    store::PartitionStore,
};

/// State changed only under the partition lock.
#[derive(Debug)]
struct LockedState {
    /// Highest max timestamp of any batch appended so far (the last `ts` key).
    running_max_ts: i64,
    /// A truncation failed half-way; its target is recorded and the next open finishes
    /// it, so nothing may be appended (it would be truncated then).
    unfinished_truncation: bool,
}

/// The log of one partition. See the module documentation for its layout and
/// [`PartitionStore`] for the meaning of its offsets.
#[derive(Debug)]
pub struct PartitionLog {
    topic: String,
    partition: u32,
    store: Arc<LogStore>,
    dir: PathBuf,
    /// Set at the first append (or at open when the partition held data).
    id: OnceLock<Arc<PartitionId>>,
    /// The partition lock: held by appends, truncation and deletion (the only writers
    /// of `log_end`, `log_start` and the segment list).
    state: Mutex<LockedState>,
    /// Segments by base offset; readers take a clone of the one they need.
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    log_start: AtomicU64,
    log_end: AtomicU64,
    size_bytes: AtomicU64,
    batch_count: AtomicU64,
    /// High watermark; readers wait on changes. On a single broker it equals the log end
    /// offset once the append (and, with durability=always, the flush) is done.
    high_watermark: watch::Sender<u64>,
    /// The leader-epoch history (see `epochs`); changed under the partition lock.
    epochs: Mutex<epochs::EpochHistory>,
}

impl PartitionLog {
    /// Opens a partition: when it holds data, checks its segments against its
    /// checkpoint, truncates a torn tail, finishes an interrupted truncation, rebuilds
    /// missing index entries, and refuses damage (see `recovery`). The high watermark
    /// starts at the log end.
    pub fn open(store: &Arc<LogStore>, topic: &str, partition: u32) -> Result<Self> {
        let log = Self {
            topic: topic.to_string(),
            partition,
            store: store.clone(),
            dir: store.partition_dir(topic, partition),
            id: OnceLock::new(),
            state: Mutex::new(LockedState { running_max_ts: i64::MIN, unfinished_truncation: false }),
            segments: RwLock::new(BTreeMap::new()),
            log_start: AtomicU64::new(0),
            log_end: AtomicU64::new(0),
            size_bytes: AtomicU64::new(0),
            batch_count: AtomicU64::new(0),
            high_watermark: watch::channel(0).0,
            epochs: Mutex::new(epochs::EpochHistory::default()),
        };
        if let Some(pid) = store.find_pid(topic, partition)? {
            log.recover(pid)?;
            log.load_epochs(pid)?;
        }
        Ok(log)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Bytes stored in the partition's segment files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    /// Number of batches in the partition's segment files.
    pub fn batch_count(&self) -> u64 {
        self.batch_count.load(Ordering::Relaxed)
    }

    /// `<topic>-<partition>`, as messages name the partition.
    fn name(&self) -> String {
        LogStore::dir_name(&self.topic, self.partition)
    }

    /// Takes the partition lock; refuses while a failed truncation waits for a restart.
    fn lock(&self) -> Result<MutexGuard<'_, LockedState>> {
        let state = self.state.lock().map_err(|_| LogError::Storage("partition lock poisoned".into()))?;
        if state.unfinished_truncation {
            return Err(LogError::Storage(format!(
                "{} has an unfinished truncation; restart the broker to finish it",
                self.name()
            )));
        }
        Ok(state)
    }

    fn segments_read(&self) -> Result<std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<Segment>>>> {
        self.segments.read().map_err(|_| LogError::Storage("segment list lock poisoned".into()))
    }

    fn segments_write(&self) -> Result<std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<Segment>>>> {
        self.segments.write().map_err(|_| LogError::Storage("segment list lock poisoned".into()))
    }

    fn pid(&self) -> Option<u64> {
        self.id.get().map(|i| i.pid)
    }
}

impl PartitionStore for PartitionLog {
    fn log_start_offset(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }

    fn log_end_offset(&self) -> u64 {
        self.log_end.load(Ordering::Acquire)
    }

    fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    fn offsets(&self) -> LogOffsets {
        // The high watermark first: it is at most the log end read after it (a truncation
        // lowers the log end first, hence the `min`).
        let high_watermark = self.high_watermark();
        let log_end = self.log_end_offset();
        LogOffsets { log_start: self.log_start_offset(), log_end, high_watermark: high_watermark.min(log_end) }
    }

    fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    fn append(&self, batch: &[u8], info: BatchInfo, leader_epoch: i32) -> Result<AppendedBatch> {
        self.append_batch(batch, info, leader_epoch)
    }

    fn advance_high_watermark(&self, offset: u64) {
        self.high_watermark.send_if_modified(|hw| {
            let offset = offset.min(self.log_end.load(Ordering::Acquire));
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.read_from(offset, max_bytes, false)
    }

    fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.read_from(offset, max_bytes, true)
    }

    fn append_replica(&self, batch: &[u8]) -> Result<AppendedBatch> {
        self.append_replica_batch(batch)
    }

    fn latest_epoch(&self) -> Option<i32> {
        PartitionLog::latest_epoch(self)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64)> {
        PartitionLog::end_offset_for_epoch(self, epoch)
    }

    fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>> {
        self.lookup_timestamp(ts_ms)
    }

    fn truncate_to(&self, offset: u64) -> Result<u64> {
        self.truncate_suffix(offset)
    }

    fn delete_records_before(&self, offset: u64) -> Result<u64> {
        self.delete_prefix(offset)
    }

    fn apply_retention(&self, limits: RetentionLimits, now_ms: i64) -> Result<u64> {
        self.retain(limits, now_ms)
    }
}
