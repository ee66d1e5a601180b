//! Deletions, all under the partition lock: truncation of the tail (the segment holding
//! the new end is cut, later ones unlinked), deletion of the head (explicit or by
//! retention: whole segments are unlinked; the log start may sit inside the first one).
//!
//! Each records its intent in the database and flushes it before touching a file, so
//! that after a crash the next open finishes it instead of taking it for damage.

use std::sync::{Arc, atomic::Ordering};

use tracing::info;

use super::{
    PartitionLog,
    index::{IdxEntry, ts_of},
};
use crate::{
    error::{LogError, Result},
    retention::{self, BatchSummary, RetentionLimits},
    segment::Segment,
    storage::{Checkpoint, META_LOG_START, META_TRUNCATE, key_tail, meta_key, pkey, remove_range, u64_of},
    store::PartitionStore,
};

impl PartitionLog {
    /// [`PartitionStore::truncate_to`].
    pub(super) fn truncate_suffix(&self, offset: u64) -> Result<u64> {
        let mut state = self.lock()?;
        let log_end = self.log_end.load(Ordering::Acquire);
        let Some(id) = self.id.get().cloned() else { return Ok(log_end) };
        if offset >= log_end {
            return Ok(log_end);
        }
        let pid = id.pid;
        // The batch holding `offset` goes whole: the log then ends at its base.
        let new_end = match self.store.idx.range(pkey(pid, 0)..=pkey(pid, offset)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                let base = key_tail(&k)?;
                if base + u64::from(IdxEntry::decode(&v)?.record_count) > offset { base } else { offset }
            }
            None => offset,
        };
        {
            let mut c = id.state.lock().map_err(|_| LogError::Storage("checkpoint lock poisoned".into()))?;
            c.generation += 1;
            if c.written.offset > new_end || self.stored_checkpoint(pid)?.offset > new_end {
                let cp = self.position_of(pid, new_end)?;
                self.store.meta.insert(meta_key(pid, crate::storage::META_CHECKPOINT), &cp.encode())?;
                c.written = cp;
            }
        }
        self.store.meta.insert(meta_key(pid, META_TRUNCATE), &new_end.to_be_bytes())?;
        self.store.flush_db()?;
        let batches_before = self.batch_count();
        if let Err(e) = self.finish_truncation(pid, new_end) {
            state.unfinished_truncation = true;
            return Err(e);
        }
        state.running_max_ts = self.indexed_max_ts(pid)?;
        self.truncate_epochs(pid, new_end)?;
        self.log_end.store(new_end, Ordering::Release);
        if new_end < self.log_start.load(Ordering::Acquire) {
            self.log_start.store(new_end, Ordering::Release);
        }
        self.high_watermark.send_if_modified(|hw| {
            let lowered = *hw > new_end;
            if lowered {
                *hw = new_end;
            }
            lowered
        });
        info!(topic = %self.topic, partition = self.partition, from = log_end, to = new_end,
              batches = batches_before.saturating_sub(self.batch_count()), "log truncated");
        Ok(new_end)
    }

    /// The recovery checkpoint recorded in the database (zero when none is).
    pub(super) fn stored_checkpoint(&self, pid: u64) -> Result<Checkpoint> {
        self.store
            .meta
            .get(meta_key(pid, crate::storage::META_CHECKPOINT))?
            .map_or(Ok(Checkpoint::default()), |v| Checkpoint::decode(&v))
    }

    /// Where the batch starting at `offset` is (or would be written), as a checkpoint.
    pub(super) fn position_of(&self, pid: u64, offset: u64) -> Result<Checkpoint> {
        if let Some(v) = self.store.idx.get(pkey(pid, offset))? {
            let e = IdxEntry::decode(&v)?;
            return Ok(Checkpoint { offset, segment: e.segment, position: u64::from(e.position) });
        }
        Ok(match self.segments_read()?.values().next_back() {
            Some(s) if s.end_offset() == offset => Checkpoint { offset, segment: s.base, position: s.len() },
            _ => Checkpoint { offset, segment: offset, position: 0 },
        })
    }

    /// The highest timestamp the time index knows, `i64::MIN` when it is empty.
    pub(super) fn indexed_max_ts(&self, pid: u64) -> Result<i64> {
        match self.store.ts.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).next_back() {
            Some(item) => Ok(ts_of(key_tail(&item?.0)?)),
            None => Ok(i64::MIN),
        }
    }

    /// Completes a truncation to `to` recorded in the database: unlinks the segments
    /// starting at or after it, cuts the one holding it, removes their index entries,
    /// lowers the log start if it was above (the log restarts there), then forgets the
    /// target. Idempotent; used by the truncation itself and by recovery.
    pub(super) fn finish_truncation(&self, pid: u64, to: u64) -> Result<()> {
        let recorded_start = self.recorded_log_start(pid)?;
        let cut_at = self.store.idx.get(pkey(pid, to))?.map(|v| IdxEntry::decode(&v)).transpose()?;
        {
            let mut segments = self.segments_write()?;
            let doomed: Vec<u64> = segments.keys().copied().filter(|b| *b >= to || to < recorded_start).collect();
            for base in doomed {
                if let Some(s) = segments.remove(&base) {
                    unlink(&s)?;
                }
            }
            if let Some(e) = cut_at
                && let Some(s) = segments.get(&e.segment)
            {
                s.truncate(u64::from(e.position), to).map_err(|err| LogError::io(&s.path, "cannot truncate", &err))?;
            }
        }
        self.store.forget_dirty(pid, to);
        remove_range(&self.store.idx, pkey(pid, to), pkey(pid, u64::MAX), true)?;
        if to < recorded_start {
            remove_range(&self.store.idx, pkey(pid, 0), pkey(pid, u64::MAX), true)?;
            self.store.meta.insert(meta_key(pid, META_LOG_START), &to.to_be_bytes())?;
        }
        // Time-index values (base offsets) grow with their keys: stale ones are a suffix.
        let mut stale = Vec::new();
        for item in self.store.ts.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).rev() {
            let (k, v) = item?;
            if u64_of(&v)? < to && to >= recorded_start {
                break;
            }
            stale.push(k);
        }
        for k in stale {
            self.store.ts.remove(k)?;
        }
        self.store.meta.remove(meta_key(pid, META_TRUNCATE))?;
        self.recount(pid).map(|_| ())
    }

    /// The log start offset recorded in the database (0 when none is).
    pub(super) fn recorded_log_start(&self, pid: u64) -> Result<u64> {
        self.store.meta.get(meta_key(pid, META_LOG_START))?.map_or(Ok(0), |v| u64_of(&v))
    }

    /// Recomputes the per-segment and partition counters from the index. Returns the
    /// lowest base offset at or above the log start whose segment file is missing.
    pub(super) fn recount(&self, pid: u64) -> Result<Option<u64>> {
        let log_start = self.recorded_log_start(pid)?;
        let mut missing = None;
        let segments = self.segments_read()?;
        for s in segments.values() {
            s.reset_counts();
        }
        let mut batches = 0;
        for item in self.store.idx.range(pkey(pid, 0)..=pkey(pid, u64::MAX)) {
            let (k, v) = item?;
            let e = IdxEntry::decode(&v)?;
            let base = key_tail(&k)?;
            match segments.get(&e.segment) {
                Some(s) => {
                    s.account(base + u64::from(e.record_count), e.max_ts);
                    batches += 1;
                }
                None if base + u64::from(e.record_count) > log_start => {
                    missing = Some(missing.map_or(base, |m: u64| m.min(base)));
                }
                None => {}
            }
        }
        self.batch_count.store(batches, Ordering::Relaxed);
        self.size_bytes.store(segments.values().map(|s| s.len()).sum(), Ordering::Relaxed);
        Ok(missing)
    }

    /// [`PartitionStore::delete_records_before`]: advances the log start and unlinks the
    /// segments that end at or before it.
    pub(super) fn delete_prefix(&self, new_start: u64) -> Result<u64> {
        let _state = self.lock()?;
        let log_start = self.log_start.load(Ordering::Acquire);
        if new_start <= log_start {
            return Ok(0);
        }
        let high_watermark = self.high_watermark();
        if new_start > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: new_start.min(i64::MAX as u64) as i64,
                log_start,
                high_watermark,
            });
        }
        let Some(pid) = self.pid() else { return Ok(0) };
        let doomed: Vec<Arc<Segment>> = self
            .segments_read()?
            .values()
            .filter(|s| s.batch_count() > 0 && s.end_offset() <= new_start)
            .cloned()
            .collect();
        self.store.meta.insert(meta_key(pid, META_LOG_START), &new_start.to_be_bytes())?;
        if !doomed.is_empty() {
            self.store.flush_db()?;
        }
        self.log_start.store(new_start, Ordering::Release);
        let mut deleted = 0;
        for s in doomed {
            self.segments_write()?.remove(&s.base);
            self.store.forget_dirty_segment(pid, s.base);
            unlink(&s)?;
            remove_range(&self.store.idx, pkey(pid, s.base), pkey(pid, s.end_offset()), false)?;
            self.size_bytes.fetch_sub(s.len().min(self.size_bytes()), Ordering::Relaxed);
            self.batch_count.fetch_sub(s.batch_count().min(self.batch_count()), Ordering::Relaxed);
            deleted += s.batch_count();
        }
        // Time index entries pointing below the new start are no longer useful, except
        // the last one, which still bounds lookups for later timestamps.
        let mut stale = Vec::new();
        for item in self.store.ts.range(pkey(pid, 0)..=pkey(pid, u64::MAX)) {
            let (k, v) = item?;
            if u64_of(&v)? >= new_start {
                break;
            }
            stale.push(k);
        }
        stale.pop();
        for k in stale {
            self.store.ts.remove(k)?;
        }
        Ok(deleted)
    }

    /// [`PartitionStore::apply_retention`]: whole segments, oldest first, never one
    /// holding a record consumers cannot see yet.
    pub(super) fn retain(&self, limits: RetentionLimits, now_ms: i64) -> Result<u64> {
        let hw = self.high_watermark();
        let summaries: Vec<BatchSummary> = self
            .segments_read()?
            .values()
            .filter(|s| s.batch_count() > 0)
            .map_while(|s| {
                (s.end_offset() <= hw).then(|| BatchSummary {
                    base_offset: s.base,
                    next_offset: s.end_offset(),
                    stored_len: s.len(),
                    max_timestamp_ms: s.max_timestamp(),
                })
            })
            .collect();
        let Some(new_start) = retention::plan(summaries.into_iter(), self.size_bytes(), now_ms, limits) else {
            return Ok(0);
        };
        self.delete_prefix(new_start)
    }
}

/// Removes a segment file (already gone is fine: a crash may have come after it).
fn unlink(s: &Segment) -> Result<()> {
    match std::fs::remove_file(&s.path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(&s.path, "cannot delete", &e)),
    }
}
