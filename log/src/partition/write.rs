//! Writes, all under the partition lock: append at the log end, truncation of the tail,
//! deletion of the head (explicit or by retention).

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use sluice_core::{BatchInfo, batch};
use tracing::info;

use super::{
    PartitionLog,
    keys::{IdxEntry, LOG_START_KEY, TRUNCATE_KEY, key, offset_of, ts_key},
    recovery::finish_truncation,
};
use crate::{
    error::{LogError, Result},
    retention::{self, BatchSummary, RetentionLimits},
    store::{AppendedBatch, PartitionStore},
};

impl PartitionLog {
    /// [`PartitionStore::append`].
    pub(super) fn append_batch(&self, batch: &[u8], info: BatchInfo, leader_epoch: i32) -> Result<AppendedBatch> {
        let mut value = BytesMut::from(batch);
        let size_bytes = u32::try_from(value.len())
            .map_err(|_| LogError::Storage(format!("a batch of {} bytes cannot be stored", value.len())))?;
        let mut state = self.lock()?;
        let appended = AppendedBatch {
            base_offset: self.log_end.load(Ordering::Acquire),
            record_count: info.record_count,
            leader_epoch,
            max_timestamp_ms: info.max_timestamp_ms,
            size_bytes,
        };
        // Both lie outside the batch CRC: the producer's bytes are otherwise unchanged.
        batch::set_base_offset(&mut value, appended.base_offset);
        batch::set_partition_leader_epoch(&mut value, leader_epoch);
        let k = key(appended.base_offset);
        self.trees.log.insert(k, &value[..])?;
        self.trees.idx.insert(k, &IdxEntry::of(&appended).encode())?;
        if appended.max_timestamp_ms > state.running_max_ts {
            state.running_max_ts = appended.max_timestamp_ms;
            self.trees.ts.insert(ts_key(appended.max_timestamp_ms), &k)?;
        }
        self.log_end.store(appended.next_offset(), Ordering::Release);
        self.size_bytes.fetch_add(u64::from(size_bytes), Ordering::Relaxed);
        self.batch_count.fetch_add(1, Ordering::Relaxed);
        Ok(appended)
    }

    /// [`PartitionStore::truncate_to`]. Records the target first, so that a crash (or a
    /// failure) half-way is finished by the next open.
    pub(super) fn truncate_suffix(&self, offset: u64) -> Result<u64> {
        let mut state = self.lock()?;
        let log_end = self.log_end.load(Ordering::Acquire);
        if offset >= log_end {
            return Ok(log_end);
        }
        // The batch holding `offset` goes whole: the log then ends at its base.
        let new_end = match self.trees.idx.range(..=key(offset)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                let base = offset_of(&k)?;
                if base + u64::from(IdxEntry::decode(&v)?.record_count) > offset { base } else { offset }
            }
            None => offset,
        };
        self.trees.meta.insert(TRUNCATE_KEY, &key(new_end))?;
        let (bytes, batches) = match finish_truncation(&self.trees, new_end) {
            Ok(removed) => removed,
            Err(e) => {
                state.unfinished_truncation = true;
                return Err(e);
            }
        };
        state.running_max_ts = self.trees.running_max_ts()?;
        self.log_end.store(new_end, Ordering::Release);
        if new_end < self.log_start.load(Ordering::Acquire) {
            self.log_start.store(new_end, Ordering::Release);
        }
        self.size_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.batch_count.fetch_sub(batches, Ordering::Relaxed);
        self.high_watermark.send_if_modified(|hw| {
            let lowered = *hw > new_end;
            if lowered {
                *hw = new_end;
            }
            lowered
        });
        info!(topic = %self.topic, partition = self.partition, from = log_end, to = new_end, batches,
              "log truncated");
        Ok(new_end)
    }

    /// [`PartitionStore::delete_records_before`]. Records the new log start first so
    /// that a crash half-way is finished by the next open.
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
        self.trees.meta.insert(LOG_START_KEY, &key(new_start))?;
        self.log_start.store(new_start, Ordering::Release);
        let mut deleted = 0;
        for item in self.trees.idx.range(..key(new_start)) {
            let (k, v) = item?;
            let e = IdxEntry::decode(&v)?;
            if offset_of(&k)? + u64::from(e.record_count) > new_start {
                break;
            }
            self.trees.log.remove(&k)?;
            self.trees.idx.remove(&k)?;
            self.size_bytes.fetch_sub(u64::from(e.stored_len), Ordering::Relaxed);
            self.batch_count.fetch_sub(1, Ordering::Relaxed);
            deleted += 1;
        }
        // Time index entries pointing below the new start are no longer useful, except
        // the last one, which still bounds lookups for later timestamps.
        let mut stale = Vec::new();
        for item in self.trees.ts.iter() {
            let (k, v) = item?;
            if offset_of(&v)? >= new_start {
                break;
            }
            stale.push(k);
        }
        stale.pop();
        for k in stale {
            self.trees.ts.remove(k)?;
        }
        Ok(deleted)
    }

    /// [`PartitionStore::apply_retention`].
    pub(super) fn retain(&self, limits: RetentionLimits, now_ms: i64) -> Result<u64> {
        let hw = self.high_watermark();
        let summaries = self.trees.idx.iter().map_while(|item| {
            let (k, v) = item.ok()?;
            let base = offset_of(&k).ok()?;
            let e = IdxEntry::decode(&v).ok()?;
            let next = base + u64::from(e.record_count);
            // Never delete what consumers cannot see yet.
            (next <= hw).then_some(BatchSummary {
                base_offset: base,
                next_offset: next,
                stored_len: u64::from(e.stored_len),
                max_timestamp_ms: e.max_ts,
            })
        });
        let Some(new_start) = retention::plan(summaries, self.size_bytes(), now_ms, limits) else {
            return Ok(0);
        };
        self.delete_prefix(new_start)
    }
}
