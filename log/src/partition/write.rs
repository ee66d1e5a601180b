//! Appends, under the partition lock: the batch goes at the end of the active segment
//! (a new one is rolled at `segment.bytes` or `segment.ms`), then into the index; the
//! segment is marked for the next flush.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
};

use bytes::BytesMut;
use sluice_core::{BatchInfo, batch};

use super::{
    LockedState, PartitionLog,
    index::{IdxEntry, ts_key},
};
use crate::{
    error::{LogError, Result},
    segment::{Segment, check_batch},
    storage::{Checkpoint, PartitionId, pkey},
    store::AppendedBatch,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// [`crate::PartitionStore::append`].
    pub(super) fn append_batch(&self, batch: &[u8], info: BatchInfo, leader_epoch: i32) -> Result<AppendedBatch> {
        let mut value = BytesMut::from(batch);
        let size_bytes = u32::try_from(value.len())
            .map_err(|_| LogError::Storage(format!("a batch of {} bytes cannot be stored", value.len())))?;
        self.store.check_space(u64::from(size_bytes))?;
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
        self.write_locked(&mut state, &value, appended)
    }

    /// [`crate::PartitionStore::append_replica`].
    pub(super) fn append_replica_batch(&self, batch: &[u8]) -> Result<AppendedBatch> {
        let size_bytes = u32::try_from(batch.len())
            .map_err(|_| LogError::Storage(format!("a batch of {} bytes cannot be stored", batch.len())))?;
        self.store.check_space(u64::from(size_bytes))?;
        let mut state = self.lock()?;
        let log_end = self.log_end.load(Ordering::Acquire);
        let h = check_batch(batch, log_end).map_err(|why| LogError::Replica(format!("{}: {why}", self.name())))?;
        let appended = AppendedBatch {
            base_offset: log_end,
            record_count: h.record_count as u32,
            leader_epoch: h.partition_leader_epoch,
            max_timestamp_ms: h.max_timestamp,
            size_bytes,
        };
        self.write_locked(&mut state, batch, appended)
    }

    /// Writes a batch whose header is final at the log end, indexes it and records its
    /// epoch, under the partition lock.
    fn write_locked(&self, state: &mut LockedState, value: &[u8], appended: AppendedBatch) -> Result<AppendedBatch> {
        let id = self.ensure_id()?;
        self.note_epoch(id.pid, appended.leader_epoch, appended.base_offset)?;
        let mut dirs = Vec::new();
        let segment = self.active_segment(appended.base_offset, u64::from(appended.size_bytes), &mut dirs)?;
        let next = appended.next_offset();
        let position = segment
            .append(value, next, appended.max_timestamp_ms)
            .map_err(|e| LogError::io(&segment.path, "cannot write", &e))?;
        let entry = IdxEntry {
            segment: segment.base,
            position: position as u32,
            size: appended.size_bytes,
            record_count: appended.record_count,
            max_ts: appended.max_timestamp_ms,
        };
        let k = pkey(id.pid, appended.base_offset);
        if let Err(e) = self.store.idx.insert(k, &entry.encode()[..]) {
            // Not indexed: not stored. The next append overwrites the bytes.
            let _ = segment.truncate(position, appended.base_offset);
            return Err(e.into());
        }
        if appended.max_timestamp_ms > state.running_max_ts {
            state.running_max_ts = appended.max_timestamp_ms;
            self.store
                .ts
                .insert(pkey(id.pid, ts_key(appended.max_timestamp_ms)), &appended.base_offset.to_be_bytes())?;
        }
        self.log_end.store(next, Ordering::Release);
        self.size_bytes.fetch_add(u64::from(appended.size_bytes), Ordering::Relaxed);
        self.batch_count.fetch_add(1, Ordering::Relaxed);
        let generation = id.state.lock().map(|s| s.generation).unwrap_or(0);
        let checkpoint = Checkpoint { offset: next, segment: segment.base, position: segment.len() };
        self.store.mark_dirty(&id, generation, &segment, checkpoint, dirs);
        Ok(appended)
    }

    /// The partition's id, assigned (and its directory created) at the first append.
    fn ensure_id(&self) -> Result<Arc<PartitionId>> {
        if let Some(id) = self.id.get() {
            return Ok(id.clone());
        }
        let pid = match self.store.find_pid(&self.topic, self.partition)? {
            Some(pid) => pid,
            None => self.store.assign_pid(&self.topic, self.partition)?,
        };
        let id = Arc::new(PartitionId { pid, state: Default::default() });
        Ok(self.id.get_or_init(|| id).clone())
    }

    /// The segment the next batch (of `size` bytes, at `offset`) goes into, rolling a new
    /// one when the active one is full or old. New directory entries go into `dirs`.
    fn active_segment(&self, offset: u64, size: u64, dirs: &mut Vec<PathBuf>) -> Result<Arc<Segment>> {
        let now = now_ms();
        if let Some(s) = self.segments_read()?.values().next_back()
            && !(s.len() > 0
                && (s.len() + size > self.store.segment_bytes
                    || now.saturating_sub(s.created_ms) >= self.store.segment_ms.min(i64::MAX as u64) as i64))
        {
            return Ok(s.clone());
        }
        if !self.dir.exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| LogError::io(&self.dir, "cannot create", &e))?;
            dirs.push(self.store.data_dir().to_path_buf());
        }
        dirs.push(self.dir.clone());
        let segment = Arc::new(
            Segment::create(&self.dir, offset, now)
                .map_err(|e| LogError::io(&self.dir, "cannot create a segment in", &e))?,
        );
        let mut segments = self.segments_write()?;
        // An empty segment at the same base (a failed first write) is replaced.
        segments.insert(offset, segment.clone());
        Ok(segment)
    }
}
