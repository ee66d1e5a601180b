//! [`PartitionLog`]: the log of one partition, stored in four sled trees:
//!
//! - `log`: base offset (big-endian u64) → the batch, a Kafka RecordBatch v2 as the
//!   producer encoded it with its base offset and leader epoch written in. This tree is
//!   the truth; the others are derived and repaired from it on open.
//! - `idx`: base offset → record count, stored length and max timestamp (16 bytes), so
//!   retention, sizes, truncation and recovery never read batch payloads.
//! - `ts`: running max timestamp (order-preserving u64) → base offset of the first batch
//!   that reached it; a lookup by timestamp is one range scan.
//! - `meta`: `log_start` (offset below which records were deleted) and, while a
//!   truncation runs, `truncate_to` (its target, so a crash half-way is finished on open).
//!
//! Offsets are assigned under a per-partition mutex that is held only for the inserts,
//! so appends to one partition are serialised in offset order and appends to different
//! partitions run in parallel; truncation and deletion take the same mutex (as Kafka's
//! log lock). Inserts go to `log` first; sled recovers a prefix of its operations after
//! a crash, so at worst `idx`/`ts` miss the last entries, and [`PartitionLog::open`]
//! re-derives them.
//!
//! - `keys`: key encodings, index entries and the four trees.
//! - `recovery`: what `open` repairs.
//! - `read`: reads and timestamp lookups.
//! - `write`: append, truncation, deletion, retention.

mod keys;
mod read;
mod recovery;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod truncate_tests;

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

use sluice_core::BatchInfo;
use tokio::sync::watch;

pub(crate) use keys::TREE_KINDS;
use keys::Trees;

pub use crate::store::{AppendedBatch, LogOffsets, ReadResult};
use crate::{
    error::{LogError, Result},
    retention::RetentionLimits,
    store::PartitionStore,
};

/// State changed only under the partition lock.
#[derive(Debug)]
struct LockedState {
    /// Highest max timestamp of any batch appended so far (the last `ts` key).
    running_max_ts: i64,
    /// A truncation failed half-way; its target is recorded in `meta` and the next open
    /// finishes it, so nothing may be appended (it would be truncated then).
    unfinished_truncation: bool,
}

/// The log of one partition over sled. See the module documentation for its layout and
/// [`PartitionStore`] for the meaning of its offsets.
#[derive(Debug)]
pub struct PartitionLog {
    topic: String,
    partition: u32,
    trees: Trees,
    /// The partition lock: held by appends, truncation and deletion (the only writers
    /// of `log_end` and `log_start`).
    state: Mutex<LockedState>,
    log_start: AtomicU64,
    log_end: AtomicU64,
    size_bytes: AtomicU64,
    batch_count: AtomicU64,
    /// High watermark; readers wait on changes. On a single broker it equals the log end
    /// offset once the append (and, with durability=always, the flush) is done.
    high_watermark: watch::Sender<u64>,
}

impl PartitionLog {
    /// Opens (or creates) the partition's trees and recovers its offsets: finishes an
    /// interrupted truncation, takes the log start from `meta` and the log end from the
    /// last batch, repairs `idx`/`ts` from `log`, and drops a last batch that fails its
    /// checks (it cannot have been acknowledged). The high watermark starts at the log end.
    pub fn open(db: &sled::Db, topic: &str, partition: u32) -> Result<Self> {
        let trees = Trees::open(db, topic, partition)?;
        let r = recovery::recover(&trees, topic, partition)?;
        let (hw, _) = watch::channel(r.log_end);
        Ok(Self {
            topic: topic.to_string(),
            partition,
            trees,
            state: Mutex::new(LockedState { running_max_ts: r.running_max_ts, unfinished_truncation: false }),
            log_start: AtomicU64::new(r.log_start),
            log_end: AtomicU64::new(r.log_end),
            size_bytes: AtomicU64::new(r.size_bytes),
            batch_count: AtomicU64::new(r.batch_count),
            high_watermark: hw,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Bytes stored of the retained batches.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    /// Number of retained batches.
    pub fn batch_count(&self) -> u64 {
        self.batch_count.load(Ordering::Relaxed)
    }

    /// Takes the partition lock; refuses while a failed truncation waits for a restart.
    fn lock(&self) -> Result<MutexGuard<'_, LockedState>> {
        let state = self.state.lock().map_err(|_| LogError::Storage("partition lock poisoned".into()))?;
        if state.unfinished_truncation {
            return Err(LogError::Storage(format!(
                "{}-{} has an unfinished truncation; restart the broker to finish it",
                self.topic, self.partition
            )));
        }
        Ok(state)
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
        self.read_from(offset, max_bytes)
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
