//! What [`super::PartitionLog::open`] does for a partition that holds data: lists its
//! segment files, finishes an interrupted truncation, checks the index against the
//! files below the recovery checkpoint, scans the segments from shortly before the
//! checkpoint (every batch checked), truncates a torn tail after the checkpoint, and
//! refuses damage at or below it, unless the store was opened with `--recover`, when
//! the partition is truncated to its last valid batch and what was dropped is logged.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::Ordering},
};

use tracing::{info, warn};

use super::{PartitionLog, index::ts_key, scan::scan};
use crate::{
    error::{LogError, Result},
    segment::{Segment, parse_name},
    storage::{
        CheckpointState, META_CHECKPOINT, META_LOG_START, META_TRUNCATE, PartitionId, key_tail, meta_key, pkey,
        remove_range, u64_of,
    },
};

/// How far before the checkpoint recovery re-checks batches (the tail is where damage
/// from a crash or a dying disk is most likely).
const VERIFY_WINDOW: u64 = 64 * 1024;

impl PartitionLog {
    pub(super) fn recover(&self, pid: u64) -> Result<()> {
        let checkpoint = self.stored_checkpoint(pid)?;
        let id =
            Arc::new(PartitionId { pid, state: Mutex::new(CheckpointState { generation: 0, written: checkpoint }) });
        let _ = self.id.set(id);
        *self.segments_write()? = self.load_segments()?;
        if let Some(v) = self.store.meta.get(meta_key(pid, META_TRUNCATE))? {
            let to = u64_of(&v)?;
            warn!(topic = %self.topic, partition = self.partition, offset = to, "finishing a truncation interrupted by a crash");
            self.finish_truncation(pid, to)?;
        }
        let checkpoint = self.stored_checkpoint(pid)?;
        let mut log_start = self.recorded_log_start(pid)?;
        let segments = self.segments_read()?.clone();
        self.drop_deleted_head(pid, &segments, log_start)?;
        let segments = self.segments_read()?.clone();
        let recover = self.store.recover;
        let damage = |what: String, fix: &str| {
            LogError::Damaged(format!(
                "{}: {what}; start the broker with --recover to {fix}, or restore the data directory from a backup \
                 (with replication, let this broker re-fetch the partition from the other replicas)",
                self.name()
            ))
        };
        let flushed = checkpoint.offset > log_start;
        if segments.is_empty() && flushed {
            let what = format!(
                "its directory {} holds no segment files, but offsets {log_start} to {} were flushed there",
                self.dir.display(),
                checkpoint.offset
            );
            if !recover {
                return Err(damage(what, "start the partition empty at that offset"));
            }
            warn!(partition = %self.name(), "--recover: {what}; the partition restarts empty");
        }
        // A head the broker did not delete is missing.
        if let Some(first) = segments.values().next()
            && first.base > log_start
        {
            let what = format!(
                "its first segment file {} starts at offset {}, but the log starts at offset {log_start}",
                first.path.display(),
                first.base
            );
            if !recover {
                return Err(damage(what, "start the partition at the first offset still stored"));
            }
            warn!(partition = %self.name(), dropped_records = first.base - log_start, "--recover: {what}; log start moved");
            log_start = first.base;
            self.store.meta.insert(meta_key(pid, META_LOG_START), &log_start.to_be_bytes())?;
        }
        let (seg, pos, offset) = self.scan_start(pid, &segments, checkpoint, log_start)?;
        let end = match seg {
            Some(seg) => scan(&segments, seg, pos, offset),
            None => super::scan::ScanEnd {
                segment: None,
                position: 0,
                offset: log_start,
                failure: None,
                batches: Vec::new(),
            },
        };
        let stored_end = self.store.idx.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).next_back();
        let dropped_bytes: u64 = segments
            .values()
            .map(|s| match end.segment {
                Some(b) if s.base < b => 0,
                Some(b) if s.base == b => s.len().saturating_sub(end.position),
                _ => s.len(),
            })
            .sum();
        if end.offset < checkpoint.offset && flushed && !segments.is_empty() {
            let what = match &end.failure {
                Some(f) => format!(
                    "{f}: the records from offset {} on are unreadable, but they were flushed up to offset {}",
                    end.offset, checkpoint.offset
                ),
                None => format!(
                    "its segment files end at offset {}, but they were flushed up to offset {}",
                    end.offset, checkpoint.offset
                ),
            };
            let fix = format!(
                "truncate it to its last valid batch (offset {}; {} records and {dropped_bytes} bytes are dropped)",
                end.offset,
                checkpoint.offset - end.offset
            );
            if !recover {
                return Err(damage(what, &fix));
            }
            warn!(partition = %self.name(), "--recover: {what}; truncating to offset {}", end.offset);
        } else if let Some(f) = &end.failure {
            warn!(partition = %self.name(), bytes = dropped_bytes, "torn tail after the last flushed batch: {f}; truncated");
        } else if dropped_bytes > 0 {
            warn!(partition = %self.name(), bytes = dropped_bytes, "truncated a torn tail");
        }
        self.cut_after_scan(pid, &end, &segments)?;
        if stored_end.is_none() && !end.batches.is_empty() {
            info!(partition = %self.name(), batches = end.batches.len(), "rebuilt the index from the segment files");
        }
        let mut log_end = end.offset.max(log_start);
        if let Some(base) = self.recount(pid)? {
            let what = format!("the segment file holding offsets from {base} is missing from {}", self.dir.display());
            if !recover {
                return Err(damage(
                    what,
                    &format!("truncate it to offset {base} ({} records are dropped)", log_end.saturating_sub(base)),
                ));
            }
            warn!(partition = %self.name(), "--recover: {what}; truncating to offset {base}");
            self.store.meta.insert(meta_key(pid, META_TRUNCATE), &base.to_be_bytes())?;
            self.finish_truncation(pid, base)?;
            log_end = base.max(log_start);
        }
        let running_max_ts = self.indexed_max_ts(pid)?;
        self.state.lock().map_err(|_| LogError::Storage("partition lock poisoned".into()))?.running_max_ts =
            running_max_ts;
        self.log_start.store(log_start, Ordering::Release);
        self.log_end.store(log_end, Ordering::Release);
        self.high_watermark.send_replace(log_end);
        // What was scanned may sit in the page cache only (a crash of the process, not
        // of the machine): flush it before recording it as flushed.
        if let Some(last) = self.segments_read()?.values().next_back().cloned() {
            last.sync().map_err(|e| LogError::io(&last.path, "cannot flush", &e))?;
            let cp = crate::storage::Checkpoint { offset: log_end, segment: last.base, position: last.len() };
            if cp != checkpoint {
                self.store.meta.insert(meta_key(pid, META_CHECKPOINT), &cp.encode())?;
            }
            if let Some(id) = self.id.get()
                && let Ok(mut s) = id.state.lock()
            {
                s.written = cp;
            }
        }
        Ok(())
    }

    /// The segment files in the partition's directory.
    fn load_segments(&self) -> Result<BTreeMap<u64, Arc<Segment>>> {
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(LogError::io(&self.dir, "cannot list", &e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io(&self.dir, "cannot list", &e))?;
            let name = entry.file_name();
            let Some(base) = parse_name(&name.to_string_lossy()) else {
                warn!(file = %entry.path().display(), "ignoring a file that is no segment");
                continue;
            };
            let s = Segment::open(entry.path(), base).map_err(|e| {
                LogError::Damaged(format!("{}: cannot open {}: {e}", self.name(), entry.path().display()))
            })?;
            out.insert(base, Arc::new(s));
        }
        Ok(out)
    }

    /// Unlinks segments that lie wholly below the log start (a deletion interrupted by a
    /// crash) and forgets index entries of segment files no longer there below it.
    fn drop_deleted_head(&self, pid: u64, segments: &BTreeMap<u64, Arc<Segment>>, log_start: u64) -> Result<()> {
        let bases: Vec<u64> = segments.keys().copied().collect();
        for w in bases.windows(2) {
            if w[1] <= log_start
                && let Some(s) = segments.get(&w[0])
            {
                std::fs::remove_file(&s.path).map_err(|e| LogError::io(&s.path, "cannot delete", &e))?;
                self.segments_write()?.remove(&w[0]);
            }
        }
        let first = self.segments_read()?.keys().next().copied().unwrap_or(log_start);
        remove_range(&self.store.idx, pkey(pid, 0), pkey(pid, first.min(log_start)), false)?;
        Ok(())
    }

    /// Where the scan starts: shortly before the checkpoint; at the first segment when
    /// the index has no entries (rebuild), with --recover, or without a checkpoint.
    fn scan_start(
        &self,
        pid: u64,
        segments: &BTreeMap<u64, Arc<Segment>>,
        checkpoint: crate::storage::Checkpoint,
        log_start: u64,
    ) -> Result<(Option<u64>, u64, u64)> {
        let Some(first) = segments.values().next() else { return Ok((None, 0, log_start)) };
        let from_first = (Some(first.base), 0, first.base);
        let indexed = self.store.idx.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).next().is_some();
        if self.store.recover
            || !indexed
            || checkpoint.offset <= first.base
            || !segments.contains_key(&checkpoint.segment)
        {
            return Ok(from_first);
        }
        let mut start = (Some(checkpoint.segment), checkpoint.position, checkpoint.offset);
        for item in self.store.idx.range(pkey(pid, checkpoint.segment)..pkey(pid, checkpoint.offset)).rev() {
            let (k, v) = item?;
            let e = super::index::IdxEntry::decode(&v)?;
            if e.segment != checkpoint.segment || u64::from(e.position) + VERIFY_WINDOW < checkpoint.position {
                break;
            }
            start = (Some(e.segment), u64::from(e.position), key_tail(&k)?);
        }
        Ok(start)
    }

    /// Makes the files and the index end where the scan ended: cuts the last valid
    /// segment, unlinks later ones, and re-indexes the scanned batches.
    fn cut_after_scan(
        &self,
        pid: u64,
        end: &super::scan::ScanEnd,
        segments: &BTreeMap<u64, Arc<Segment>>,
    ) -> Result<()> {
        for s in segments.values() {
            match end.segment {
                Some(b) if s.base < b => {}
                Some(b) if s.base == b => {
                    if s.len() != end.position {
                        s.truncate(end.position, end.offset)
                            .map_err(|e| LogError::io(&s.path, "cannot truncate", &e))?;
                    }
                }
                _ => {
                    std::fs::remove_file(&s.path).map_err(|e| LogError::io(&s.path, "cannot delete", &e))?;
                    self.segments_write()?.remove(&s.base);
                }
            }
        }
        remove_range(&self.store.idx, pkey(pid, end.offset), pkey(pid, u64::MAX), true)?;
        let from = end.batches.first().map_or(end.offset, |b| b.0);
        let mut stale = Vec::new();
        for item in self.store.ts.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).rev() {
            let (k, v) = item?;
            if u64_of(&v)? < from {
                break;
            }
            stale.push(k);
        }
        for k in stale {
            self.store.ts.remove(k)?;
        }
        let mut running = self.indexed_max_ts(pid)?;
        for (base, e) in &end.batches {
            self.store.idx.insert(pkey(pid, *base), &e.encode()[..])?;
            if e.max_ts > running {
                running = e.max_ts;
                self.store.ts.insert(pkey(pid, ts_key(running)), &base.to_be_bytes())?;
            }
        }
        Ok(())
    }
}
