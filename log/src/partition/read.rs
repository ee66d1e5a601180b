//! Reads: whole batches from an offset up to the high watermark (one positioned read of
//! consecutive batches of one segment, each checked before it is served), and the
//! lookup of the first offset at or after a timestamp.

use bytes::Bytes;
use sluice_core::batch::{Records, peek};

use super::{
    PartitionLog,
    index::{IdxEntry, ts_key},
};
use crate::{
    error::{LogError, Result},
    segment::check_batch,
    storage::{key_tail, pkey, u64_of},
    store::{PartitionStore, ReadResult},
};

/// Consecutive batches of one segment.
struct Run {
    segment: u64,
    start: u64,
    end: u64,
    batches: Vec<(u64, u32)>,
}

impl PartitionLog {
    /// [`PartitionStore::read`].
    /// `to_log_end`: up to the log end offset instead of the high watermark (followers).
    pub(super) fn read_from(&self, offset: i64, max_bytes: usize, to_log_end: bool) -> Result<ReadResult> {
        let offsets = self.offsets();
        let limit = if to_log_end { offsets.log_end } else { offsets.high_watermark };
        let out_of_range = || LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start: offsets.log_start,
            high_watermark: offsets.high_watermark,
        };
        let offset = u64::try_from(offset).map_err(|_| out_of_range())?;
        if offset < offsets.log_start || offset > limit {
            return Err(out_of_range());
        }
        let empty = ReadResult { batches: Bytes::new(), offsets };
        let Some(pid) = self.pid() else { return Ok(empty) };
        if offset == limit {
            return Ok(empty);
        }
        // The batch holding `offset`, then the ones after it in the same segment.
        let start = match self.store.idx.range(pkey(pid, 0)..=pkey(pid, offset)).next_back() {
            Some(item) => key_tail(&item?.0)?,
            None => offset,
        };
        // Runs of consecutive batches, one per segment: one positioned read each.
        let mut runs: Vec<Run> = Vec::new();
        let mut total = 0usize;
        for item in self.store.idx.range(pkey(pid, start)..=pkey(pid, u64::MAX)) {
            let (k, v) = item?;
            let (base, e) = (key_tail(&k)?, IdxEntry::decode(&v)?);
            if base + u64::from(e.record_count) > limit {
                break;
            }
            if base + u64::from(e.record_count) <= offset {
                continue;
            }
            if total > 0 && total + e.size as usize > max_bytes {
                break;
            }
            match runs.last_mut() {
                Some(r) if r.segment == e.segment && r.end == u64::from(e.position) => {
                    r.end = e.end_position();
                    r.batches.push((base, e.size));
                }
                _ => runs.push(Run {
                    segment: e.segment,
                    start: u64::from(e.position),
                    end: e.end_position(),
                    batches: vec![(base, e.size)],
                }),
            }
            total += e.size as usize;
            if total >= max_bytes {
                break;
            }
        }
        let mut buf = Vec::with_capacity(total);
        for run in runs {
            let segment = self.segments_read()?.get(&run.segment).cloned();
            let Some(segment) = segment else {
                // Deleted by retention or truncation since the index was read.
                break;
            };
            let bytes = segment
                .read_at(run.start, (run.end - run.start) as usize)
                .map_err(|e| self.damaged_read(&segment.path, run.start, &e.to_string()))?;
            let mut at = 0usize;
            for (base, size) in run.batches {
                let b = &bytes[at..at + size as usize];
                check_batch(b, base).map_err(|why| self.damaged_read(&segment.path, run.start + at as u64, &why))?;
                at += size as usize;
            }
            buf.extend_from_slice(&bytes);
        }
        Ok(ReadResult { batches: Bytes::from(buf), offsets })
    }

    fn damaged_read(&self, path: &std::path::Path, position: u64, why: &str) -> LogError {
        LogError::Damaged(format!(
            "{}: {} at byte {position}: {why}; the segment was damaged after it was written: stop the broker \
             and start it with --recover to truncate the partition to its last valid batch",
            self.name(),
            path.display()
        ))
    }

    /// [`PartitionStore::offset_for_timestamp`].
    pub(super) fn lookup_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>> {
        let Some(pid) = self.pid() else { return Ok(None) };
        let Some(item) = self.store.ts.range(pkey(pid, ts_key(ts_ms))..=pkey(pid, u64::MAX)).next() else {
            return Ok(None);
        };
        let mut offset = u64_of(&item?.1)?;
        loop {
            let offsets = self.offsets();
            offset = offset.max(offsets.log_start);
            if offset >= offsets.high_watermark {
                return Ok(None);
            }
            let r = self.read_from(offset as i64, 1, false)?;
            let Some(h) = peek(&r.batches) else { return Ok(None) };
            if h.max_timestamp_ms >= ts_ms {
                for rec in Records::new(r.batches.clone())? {
                    let rec = rec?;
                    if rec.offset >= offsets.log_start && rec.timestamp_ms >= ts_ms {
                        return Ok(Some((rec.offset, rec.timestamp_ms)));
                    }
                }
            }
            let next = sluice_core::BatchHeader::parse(&r.batches).map_or(offset + 1, |h| h.next_offset());
            offset = next.max(offset + 1);
        }
    }
}
