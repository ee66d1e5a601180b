//! The leader-epoch history of a partition (Kafka's `LeaderEpochFileCache`): for every
//! leader epoch that wrote into the log, the offset of its first batch. Kept in the
//! `log/epochs` tree (partition id + epoch → start offset) and in memory; an entry is
//! added when a batch with a newer partition leader epoch is appended, removed when a
//! truncation removes its first batch, and dropped with the partition. At open, entries
//! at or beyond the recovered log end (a lost unflushed tail) are removed.
//!
//! It answers OffsetForLeaderEpoch with KIP-279's semantics: for an epoch, the largest
//! known epoch at or below it and that epoch's end offset (the start of the next epoch,
//! or the log end for the latest one).

use std::sync::atomic::Ordering;

use super::PartitionLog;
use crate::{
    error::{LogError, Result},
    storage::{key_tail, pkey, u64_of},
};

/// Kafka's `UNDEFINED_EPOCH`: no epoch is known.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Epochs and their start offsets, both ascending.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct EpochHistory {
    pub entries: Vec<(i32, u64)>,
}

impl EpochHistory {
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// KIP-279: the largest epoch `<= epoch` and its end offset (`log_end` for the
    /// latest); `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` when every known epoch is
    /// newer, or none is known.
    pub fn end_offset_for(&self, epoch: i32, log_end: u64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if epoch < 0 {
            return undefined;
        }
        let n = self.entries.partition_point(|e| e.0 <= epoch);
        if n == 0 {
            return undefined;
        }
        let end = self.entries.get(n).map_or(log_end, |next| next.1);
        (self.entries[n - 1].0, end as i64)
    }
}

impl PartitionLog {
    fn epochs_lock(&self) -> Result<std::sync::MutexGuard<'_, EpochHistory>> {
        self.epochs.lock().map_err(|_| LogError::Storage("epoch history lock poisoned".into()))
    }

    /// The newest leader epoch that wrote into the log; `None` for an empty history.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs_lock().ok()?.latest()
    }

    /// OffsetForLeaderEpoch (KIP-279): the largest epoch `<= epoch` this log knows and
    /// its end offset; `(-1, -1)` when the log knows no such epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64)> {
        let h = self.epochs_lock()?;
        Ok(h.end_offset_for(epoch, self.log_end.load(Ordering::Acquire)))
    }

    /// The whole history, oldest first (for tests and diagnostics).
    pub fn epoch_history(&self) -> Result<Vec<(i32, u64)>> {
        Ok(self.epochs_lock()?.entries.clone())
    }

    /// Loads the history at open and removes entries the recovered log no longer holds.
    pub(super) fn load_epochs(&self, pid: u64) -> Result<()> {
        let log_end = self.log_end.load(Ordering::Acquire);
        let mut entries = Vec::new();
        for item in self.store.epochs.range(pkey(pid, 0)..=pkey(pid, u64::MAX)) {
            let (k, v) = item?;
            let (epoch, start) = (key_tail(&k)?, u64_of(&v)?);
            let epoch = i32::try_from(epoch).map_err(|_| LogError::Storage("bad leader epoch key".into()))?;
            let in_order = entries.last().is_none_or(|&(_, s)| start >= s);
            if start >= log_end || !in_order {
                self.store.epochs.remove(k)?;
            } else {
                entries.push((epoch, start));
            }
        }
        *self.epochs_lock()? = EpochHistory { entries };
        Ok(())
    }

    /// Called under the partition lock before a batch of `epoch` is written at `start`:
    /// records the epoch when it is newer than the latest. Refuses an older one (an
    /// epoch never goes backwards inside a log).
    pub(super) fn note_epoch(&self, pid: u64, epoch: i32, start: u64) -> Result<()> {
        if epoch < 0 {
            return Ok(());
        }
        let mut h = self.epochs_lock()?;
        match h.latest() {
            Some(latest) if epoch == latest => Ok(()),
            Some(latest) if epoch < latest => Err(LogError::Replica(format!(
                "{}: a batch of leader epoch {epoch} at offset {start}, but the log already holds epoch {latest}",
                self.name()
            ))),
            _ => {
                self.store.epochs.insert(pkey(pid, epoch as u64), &start.to_be_bytes())?;
                h.entries.push((epoch, start));
                Ok(())
            }
        }
    }

    /// After a truncation to `log_end`: forgets the epochs that started at or after it.
    pub(super) fn truncate_epochs(&self, pid: u64, log_end: u64) -> Result<()> {
        let mut h = self.epochs_lock()?;
        while let Some(&(epoch, start)) = h.entries.last() {
            if start < log_end {
                break;
            }
            self.store.epochs.remove(pkey(pid, epoch as u64))?;
            h.entries.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kip_279() {
        let h = EpochHistory { entries: vec![(1, 0), (3, 10), (4, 25)] };
        assert_eq!(h.end_offset_for(0, 40), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(h.end_offset_for(-1, 40), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(h.end_offset_for(1, 40), (1, 10));
        // Epoch 2 never wrote: the largest below it is 1, which ended at 10.
        assert_eq!(h.end_offset_for(2, 40), (1, 10));
        assert_eq!(h.end_offset_for(3, 40), (3, 25));
        assert_eq!(h.end_offset_for(4, 40), (4, 40));
        assert_eq!(h.end_offset_for(9, 40), (4, 40));
        assert_eq!(EpochHistory::default().end_offset_for(3, 0), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(h.latest(), Some(4));
    }
}
