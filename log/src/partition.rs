//! The log of one partition, stored in four sled trees:
//!
//! - `log`: base offset (big-endian u64) → stored batch (broker header + client batch).
//!   This tree is the truth; the others are derived and repaired from it on open.
//! - `idx`: base offset → record count, stored length and max timestamp (16 bytes), so
//!   retention, sizes and recovery never read batch payloads.
//! - `ts`: running max timestamp (order-preserving u64) → base offset of the first batch
//!   that reached it; a lookup by timestamp is one range scan.
//! - `meta`: `log_start` (offset below which records were deleted by retention).
//!
//! Offsets are assigned under a per-partition mutex that is held only for the inserts,
//! so appends to one partition are serialised in offset order and appends to different
//! partitions run in parallel. Inserts go to `log` first; sled recovers a prefix of
//! its operations after a crash, so at worst `idx`/`ts` miss the last entries, and
//! [`PartitionLog::open`] re-derives them.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use bytes::{Bytes, BytesMut};
use sluice_core::{StoredBatchHeader, batch::BatchInfo};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    retention::{self, BatchSummary, RetentionLimits},
    tree_name,
};
use crate::error::{BrokerError, Result};

pub(crate) const TREE_KINDS: [&str; 4] = ["log", "idx", "ts", "meta"];
const LOG_START_KEY: &[u8] = b"log_start";

/// Offsets of a partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start: u64,
    pub log_end: u64,
    pub high_watermark: u64,
}

/// Result of a read: stored batches back to back, and the offsets at read time.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub batches: Bytes,
    pub offsets: LogOffsets,
}

/// State changed by appends and retention, guarded by `PartitionLog::append_lock`.
#[derive(Debug)]
struct AppendState {
    log_end: u64,
    running_max_ts: i64,
}

/// The log of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    topic: String,
    partition: u32,
    log: sled::Tree,
    idx: sled::Tree,
    ts: sled::Tree,
    meta: sled::Tree,
    append_lock: Mutex<AppendState>,
    log_start: AtomicU64,
    size_bytes: AtomicU64,
    batch_count: AtomicU64,
    /// High watermark; readers wait on changes. On a single broker it equals the log end
    /// offset once the append (and, with durability=always, the flush) is done.
    high_watermark: watch::Sender<u64>,
}

fn key(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

fn offset_of(key: &[u8]) -> Result<u64> {
    let a: [u8; 8] = key.try_into().map_err(|_| BrokerError::Storage("bad log key".into()))?;
    Ok(u64::from_be_bytes(a))
}

/// Maps an i64 timestamp to a u64 whose big-endian bytes sort like the timestamp.
fn ts_key(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn ts_of(key: &[u8]) -> Result<i64> {
    Ok((offset_of(key)? ^ (1 << 63)) as i64)
}

#[derive(Debug, Clone, Copy)]
struct IdxEntry {
    record_count: u32,
    stored_len: u32,
    max_ts: i64,
}

impl IdxEntry {
    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.record_count.to_le_bytes());
        b[4..8].copy_from_slice(&self.stored_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.max_ts.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 16 {
            return Err(BrokerError::Storage("bad index entry".into()));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[8..16]);
        Ok(Self {
            record_count: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            stored_len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            max_ts: i64::from_le_bytes(ts),
        })
    }

    fn of(h: &StoredBatchHeader) -> Self {
        Self { record_count: h.record_count, stored_len: h.stored_len() as u32, max_ts: h.max_timestamp_ms }
    }
}

impl PartitionLog {
    /// Opens (or creates) the partition's trees and recovers its offsets: log start from
    /// `meta`, log end from the last batch; repairs `idx`/`ts` from `log`; drops a last
    /// batch that fails its checks (it cannot have been acknowledged).
    pub fn open(db: &sled::Db, topic: &str, partition: u32) -> Result<Self> {
        let t = |kind| db.open_tree(tree_name(topic, partition, kind));
        let (log, idx, ts, meta) = (t("log")?, t("idx")?, t("ts")?, t("meta")?);

        // A torn or corrupt last batch is impossible with sled's atomic inserts, but the
        // check is cheap and keeps the promise "never expose a torn batch".
        while let Some((k, v)) = log.last()? {
            let ok = StoredBatchHeader::decode(&v).ok().filter(|h| {
                h.stored_len() == v.len()
                    && sluice_core::batch::validate(&v[StoredBatchHeader::LEN..], usize::MAX).is_ok()
            });
            if ok.is_some() {
                break;
            }
            warn!(topic, partition, offset = offset_of(&k)?, "dropping corrupt last batch");
            log.remove(k)?;
        }

        // Re-derive index entries the log has and the index lacks (crash between inserts),
        // and drop index entries beyond the log.
        let last_log = log.last()?.map(|(k, _)| offset_of(&k)).transpose()?;
        let last_idx = idx.last()?.map(|(k, _)| offset_of(&k)).transpose()?;
        if let Some(li) = last_idx
            && last_log.is_none_or(|ll| li > ll)
        {
            let from = last_log.map_or(0, |ll| ll + 1);
            for k in idx.range(key(from)..).keys() {
                idx.remove(k?)?;
            }
        }
        let repair_from = last_idx.map_or(0, |li| li + 1);
        let mut running_max_ts = ts.last()?.map(|(k, _)| ts_of(&k)).transpose()?.unwrap_or(i64::MIN);
        let mut repaired = 0;
        for item in log.range(key(repair_from)..) {
            let (k, v) = item?;
            let h = StoredBatchHeader::decode(&v)?;
            idx.insert(&k, &IdxEntry::of(&h).encode())?;
            if h.max_timestamp_ms > running_max_ts {
                running_max_ts = h.max_timestamp_ms;
                ts.insert(ts_key(running_max_ts), &k)?;
            }
            repaired += 1;
        }
        if repaired > 0 {
            info!(topic, partition, batches = repaired, "rebuilt index entries from the log");
        }

        let meta_start = match meta.get(LOG_START_KEY)? {
            Some(v) => offset_of(&v)?,
            None => 0,
        };
        let last_next = match log.last()? {
            Some((_, v)) => StoredBatchHeader::decode(&v)?.next_offset(),
            None => 0,
        };
        let log_end = last_next.max(meta_start);
        let log_start = meta_start;
        let (mut size, mut count) = (0u64, 0u64);
        for item in idx.iter() {
            let (k, v) = item?;
            let e = IdxEntry::decode(&v)?;
            if offset_of(&k)? + u64::from(e.record_count) <= log_start {
                // Retention recorded a new log start but crashed before deleting.
                log.remove(&k)?;
                idx.remove(&k)?;
                continue;
            }
            size += u64::from(e.stored_len);
            count += 1;
        }
        let (hw, _) = watch::channel(log_end);
        Ok(Self {
            topic: topic.to_string(),
            partition,
            log,
            idx,
            ts,
            meta,
            append_lock: Mutex::new(AppendState { log_end, running_max_ts }),
            log_start: AtomicU64::new(log_start),
            size_bytes: AtomicU64::new(size),
            batch_count: AtomicU64::new(count),
            high_watermark: hw,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    pub fn batch_count(&self) -> u64 {
        self.batch_count.load(Ordering::Relaxed)
    }

    pub fn offsets(&self) -> LogOffsets {
        let high_watermark = *self.high_watermark.borrow();
        let log_end = self.append_lock.lock().map(|s| s.log_end).unwrap_or(high_watermark);
        LogOffsets { log_start: self.log_start.load(Ordering::Acquire), log_end, high_watermark }
    }

    /// A receiver that sees every change of the high watermark (for long polls).
    pub fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// Appends a validated batch and returns its stored header (with the assigned base
    /// offset). The high watermark is not moved; call [`Self::advance_high_watermark`]
    /// once the batch is as durable as the topic requires.
    pub fn append(&self, batch: &[u8], info: BatchInfo, leader_epoch: i32, now_ms: i64) -> Result<StoredBatchHeader> {
        let mut value = BytesMut::with_capacity(StoredBatchHeader::LEN + batch.len());
        let mut state = self.append_lock.lock().map_err(|_| BrokerError::Storage("partition lock poisoned".into()))?;
        let header = StoredBatchHeader {
            base_offset: state.log_end,
            record_count: info.record_count,
            batch_len: batch.len() as u32,
            leader_epoch,
            max_timestamp_ms: info.max_timestamp_ms,
            append_time_ms: now_ms,
        };
        value.extend_from_slice(&header.encode());
        value.extend_from_slice(batch);
        let k = key(header.base_offset);
        self.log.insert(k, &value[..])?;
        self.idx.insert(k, &IdxEntry::of(&header).encode())?;
        if header.max_timestamp_ms > state.running_max_ts {
            state.running_max_ts = header.max_timestamp_ms;
            self.ts.insert(ts_key(header.max_timestamp_ms), &k)?;
        }
        state.log_end = header.next_offset();
        self.size_bytes.fetch_add(header.stored_len() as u64, Ordering::Relaxed);
        self.batch_count.fetch_add(1, Ordering::Relaxed);
        Ok(header)
    }

    /// Makes records below `offset` visible to consumers. Never moves backwards.
    pub fn advance_high_watermark(&self, offset: u64) {
        self.high_watermark.send_if_modified(|hw| {
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    /// Reads whole batches starting with the one that contains `offset`, stopping at the
    /// high watermark or once `max_bytes` is reached (the first batch always comes whole).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let offsets = self.offsets();
        let out_of_range = || BrokerError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start: offsets.log_start,
            high_watermark: offsets.high_watermark,
        };
        let offset = u64::try_from(offset).map_err(|_| out_of_range())?;
        if offset < offsets.log_start || offset > offsets.high_watermark {
            return Err(out_of_range());
        }
        let mut out = BytesMut::new();
        if offset == offsets.high_watermark {
            return Ok(ReadResult { batches: out.freeze(), offsets });
        }
        let start = match self.log.range(..=key(offset)).next_back() {
            Some(item) => item?.0,
            None => key(offset).as_ref().into(),
        };
        for item in self.log.range(start..) {
            let (_, v) = item?;
            let h = StoredBatchHeader::decode(&v)?;
            if h.next_offset() > offsets.high_watermark {
                break;
            }
            if h.next_offset() <= offset {
                continue;
            }
            if !out.is_empty() && out.len() + v.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&v);
            if out.len() >= max_bytes {
                break;
            }
        }
        Ok(ReadResult { batches: out.freeze(), offsets })
    }

    /// First offset whose record timestamp is at or after `ts_ms`, with that record's
    /// timestamp; `None` when no retained record is that recent.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>> {
        let offsets = self.offsets();
        let Some(item) = self.ts.range(ts_key(ts_ms)..).next() else {
            return Ok(None);
        };
        let base = offset_of(&item?.1)?.max(offsets.log_start);
        let start = match self.log.range(..=key(base)).next_back() {
            Some(item) => item?.0,
            None => key(base).as_ref().into(),
        };
        for item in self.log.range(start..) {
            let (_, v) = item?;
            let v = Bytes::copy_from_slice(&v);
            let h = StoredBatchHeader::decode(&v)?;
            if h.next_offset() > offsets.high_watermark {
                break;
            }
            if h.max_timestamp_ms < ts_ms {
                continue;
            }
            let batch = sluice_core::StoredBatch { header: h, batch: v.slice(StoredBatchHeader::LEN..) };
            for r in batch.records()? {
                let r = r?;
                if r.offset >= offsets.log_start && r.timestamp_ms >= ts_ms {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
        }
        Ok(None)
    }

    /// Applies retention: deletes whole batches from the head as `limits` require and
    /// advances the log start offset. Returns the number of batches deleted.
    pub fn apply_retention(&self, limits: RetentionLimits, now_ms: i64) -> Result<u64> {
        let hw = *self.high_watermark.borrow();
        let summaries = self.idx.iter().map_while(|item| {
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
        self.delete_before(new_start)
    }

    /// Deletes every batch that ends at or before `new_start`; records the new log start
    /// first so that a crash half-way is finished by the next open. Also used by the
    /// compaction of internal topics.
    pub fn delete_before(&self, new_start: u64) -> Result<u64> {
        if new_start <= self.log_start.load(Ordering::Acquire) {
            return Ok(0);
        }
        self.meta.insert(LOG_START_KEY, &key(new_start))?;
        self.log_start.store(new_start, Ordering::Release);
        let mut deleted = 0;
        for item in self.idx.range(..key(new_start)) {
            let (k, v) = item?;
            let e = IdxEntry::decode(&v)?;
            if offset_of(&k)? + u64::from(e.record_count) > new_start {
                break;
            }
            self.log.remove(&k)?;
            self.idx.remove(&k)?;
            self.size_bytes.fetch_sub(u64::from(e.stored_len), Ordering::Relaxed);
            self.batch_count.fetch_sub(1, Ordering::Relaxed);
            deleted += 1;
        }
        // Time index entries pointing below the new start are no longer useful, except
        // the last one, which still bounds lookups for later timestamps.
        let mut stale = Vec::new();
        for item in self.ts.iter() {
            let (k, v) = item?;
            if offset_of(&v)? >= new_start {
                break;
            }
            stale.push(k);
        }
        stale.pop();
        for k in stale {
            self.ts.remove(k)?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::BatchBuilder;

    fn batch(n: u32, ts: i64) -> (Bytes, BatchInfo) {
        let mut b = BatchBuilder::default();
        for i in 0..n {
            b.push(ts + i64::from(i), None, Some(format!("v{i}").as_bytes()), &[]);
        }
        let bytes = b.finish();
        let info = sluice_core::batch::validate(&bytes, usize::MAX).expect("valid");
        (bytes, info)
    }

    fn append(log: &PartitionLog, n: u32, ts: i64) -> StoredBatchHeader {
        let (b, info) = batch(n, ts);
        let h = log.append(&b, info, 0, ts).expect("append");
        log.advance_high_watermark(h.next_offset());
        h
    }

    fn db() -> sled::Db {
        sled::Config::new().temporary(true).open().expect("db")
    }

    #[test]
    fn offsets_are_dense_and_survive_reopen() {
        let db = db();
        let log = PartitionLog::open(&db, "t", 0).expect("open");
        assert_eq!(append(&log, 3, 10).base_offset, 0);
        assert_eq!(append(&log, 2, 20).base_offset, 3);
        drop(log);
        let log = PartitionLog::open(&db, "t", 0).expect("reopen");
        assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 5, high_watermark: 5 });
        assert_eq!(append(&log, 1, 30).base_offset, 5);
        assert_eq!(log.batch_count(), 3);
    }

    #[test]
    fn read_starts_at_containing_batch_and_respects_limits() {
        let db = db();
        let log = PartitionLog::open(&db, "t", 0).expect("open");
        for i in 0..5 {
            append(&log, 10, i * 100);
        }
        let r = log.read(15, 1).expect("read");
        let batches: Vec<_> = sluice_core::StoredBatches::new(r.batches).collect::<Result<_, _>>().expect("decode");
        assert_eq!(batches.len(), 1, "max_bytes=1 still returns one whole batch");
        assert_eq!(batches[0].header.base_offset, 10);
        let all = log.read(0, usize::MAX).expect("read all");
        assert_eq!(sluice_core::StoredBatches::new(all.batches).count(), 5);
        assert!(log.read(50, 100).expect("at end").batches.is_empty());
        assert!(matches!(log.read(51, 100), Err(BrokerError::OffsetOutOfRange { .. })));
        assert!(matches!(log.read(-1, 100), Err(BrokerError::OffsetOutOfRange { .. })));
    }

    #[test]
    fn unflushed_batches_are_invisible_until_high_watermark_moves() {
        let db = db();
        let log = PartitionLog::open(&db, "t", 0).expect("open");
        let (b, info) = batch(4, 0);
        log.append(&b, info, 0, 0).expect("append");
        assert_eq!(log.offsets().log_end, 4);
        assert_eq!(log.offsets().high_watermark, 0);
        assert!(log.read(0, 1000).expect("read").batches.is_empty());
        log.advance_high_watermark(4);
        assert!(!log.read(0, 1000).expect("read").batches.is_empty());
    }

    #[test]
    fn timestamp_lookup_finds_first_record_at_or_after() {
        let db = db();
        let log = PartitionLog::open(&db, "t", 0).expect("open");
        append(&log, 10, 1000); // offsets 0..10, ts 1000..1009
        append(&log, 10, 2000); // offsets 10..20, ts 2000..2009
        assert_eq!(log.offset_for_timestamp(0).expect("lookup"), Some((0, 1000)));
        assert_eq!(log.offset_for_timestamp(1005).expect("lookup"), Some((5, 1005)));
        assert_eq!(log.offset_for_timestamp(1500).expect("lookup"), Some((10, 2000)));
        assert_eq!(log.offset_for_timestamp(9999).expect("lookup"), None);
    }

    #[test]
    fn retention_advances_log_start_and_survives_reopen() {
        let db = db();
        let log = PartitionLog::open(&db, "t", 0).expect("open");
        for i in 0..4 {
            append(&log, 5, i * 1000);
        }
        let limits = RetentionLimits { retention_ms: Some(1500), retention_bytes: None };
        assert_eq!(log.apply_retention(limits, 3000).expect("retention"), 2);
        assert_eq!(log.offsets().log_start, 10);
        assert!(matches!(log.read(3, 100), Err(BrokerError::OffsetOutOfRange { log_start: 10, .. })));
        drop(log);
        let log = PartitionLog::open(&db, "t", 0).expect("reopen");
        assert_eq!(log.offsets().log_start, 10);
        assert_eq!(log.batch_count(), 2);
        // Everything deleted: offsets continue, never reused.
        let all = RetentionLimits { retention_ms: None, retention_bytes: Some(0) };
        log.apply_retention(all, 0).expect("retention");
        drop(log);
        let log = PartitionLog::open(&db, "t", 0).expect("reopen");
        assert_eq!(log.offsets().log_start, 20);
        assert_eq!(append(&log, 1, 0).base_offset, 20);
    }

    #[test]
    fn missing_index_entries_are_rebuilt_on_open() {
        let db = db();
        let log = PartitionLog::open(&db, "t", 0).expect("open");
        append(&log, 3, 10);
        append(&log, 3, 20);
        // Simulate a crash between the log insert and the index insert.
        log.idx.remove(key(3)).expect("remove");
        drop(log);
        let log = PartitionLog::open(&db, "t", 0).expect("reopen");
        assert_eq!(log.batch_count(), 2);
        assert_eq!(log.offsets().log_end, 6);
    }
}
