//! Tests of the partition log over a temporary sled database and directory: offsets,
//! reads, visibility, timestamps, recovery, leader epochs, and the retention walk with a
//! fake clock (`now_ms` is passed in). Segments roll after every batch here, so
//! retention (which deletes whole segments) deletes single batches.

use bytes::Bytes;
use sluice_core::{BatchBuilder, BatchInfo, Batches};

use std::sync::Arc;

use super::PartitionLog;
use crate::{
    error::LogError,
    retention::RetentionLimits,
    storage::{LogStore, pkey},
    store::{AppendedBatch, LogOffsets, PartitionStore},
};

pub(super) fn batch(n: u32, ts: i64) -> (Bytes, BatchInfo) {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(ts + i64::from(i), None, Some(format!("v{i}").as_bytes()), &[]);
    }
    let bytes = b.finish().expect("finish");
    let info = sluice_core::batch::validate(&bytes, usize::MAX).expect("valid");
    (bytes, info)
}

/// Appends `n` records stamped `ts..ts+n` and makes them visible.
pub(super) fn append(log: &PartitionLog, n: u32, ts: i64) -> AppendedBatch {
    let (b, info) = batch(n, ts);
    let h = log.append(&b, info, 0).expect("append");
    log.advance_high_watermark(h.next_offset());
    h
}

/// A temporary store whose segments hold one batch each.
pub(super) struct TestStore {
    pub store: Arc<LogStore>,
    pub _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestStore {
    type Target = Arc<LogStore>;
    fn deref(&self) -> &Arc<LogStore> {
        &self.store
    }
}

pub(super) fn db() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    TestStore { store: LogStore::temporary(dir.path(), 1).expect("store"), _dir: dir }
}

/// Keys of a partition in a global tree.
pub(super) fn count(tree: &sled::Tree, log: &PartitionLog) -> usize {
    let pid = log.pid().expect("has data");
    tree.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).count()
}

/// Base offsets of the batches a read from `offset` returns.
pub(super) fn bases(log: &PartitionLog, offset: i64) -> Vec<u64> {
    let r = log.read(offset, usize::MAX).expect("read");
    Batches::new(r.batches).map(|b| b.expect("decode").header.first_offset()).collect()
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
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.high_watermark()), (0, 5, 5));
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
    let batches: Vec<_> = Batches::new(r.batches).collect::<Result<_, _>>().expect("decode");
    assert_eq!(batches.len(), 1, "max_bytes=1 still returns one whole batch");
    assert_eq!(batches[0].header.base_offset, 10);
    let all = log.read(0, usize::MAX).expect("read all");
    assert_eq!(Batches::new(all.batches).count(), 5);
    assert!(log.read(50, 100).expect("at end").batches.is_empty());
    assert!(matches!(log.read(51, 100), Err(LogError::OffsetOutOfRange { .. })));
    assert!(matches!(log.read(-1, 100), Err(LogError::OffsetOutOfRange { .. })));
    assert_eq!(
        log.read(51, 100).expect_err("beyond").to_string(),
        "offset 51 is out of range for t-0: valid offsets are 0 to 50"
    );
}

#[test]
fn unflushed_batches_are_invisible_until_high_watermark_moves() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    let (b, info) = batch(4, 0);
    log.append(&b, info, 0).expect("append");
    assert_eq!(log.offsets().log_end, 4);
    assert_eq!(log.offsets().high_watermark, 0);
    assert!(log.read(0, 1000).expect("read").batches.is_empty());
    log.advance_high_watermark(4);
    assert!(!log.read(0, 1000).expect("read").batches.is_empty());
}

#[test]
fn high_watermark_never_passes_the_log_end_nor_moves_back() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    append(&log, 4, 0);
    log.advance_high_watermark(100);
    assert_eq!(log.high_watermark(), 4);
    log.advance_high_watermark(2);
    assert_eq!(log.high_watermark(), 4);
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
    assert!(matches!(log.read(3, 100), Err(LogError::OffsetOutOfRange { log_start: 10, .. })));
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

/// The retention walk over a real partition at several fake times: by time, by size,
/// never past the high watermark, across reopens.
#[test]
fn retention_walk_with_a_fake_clock() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    // Six batches of ten records; batch i is stamped i*1000 .. i*1000+9.
    for i in 0..6 {
        append(&log, 10, i * 1000);
    }
    let batch_size = log.size_bytes() / 6;
    assert_eq!(log.size_bytes(), batch_size * 6, "equal batches");
    let by_time = RetentionLimits { retention_ms: Some(2500), retention_bytes: None };

    // t=2000: the cutoff (-500) is older than every record.
    assert_eq!(log.apply_retention(by_time, 2000).expect("retention"), 0);
    assert_eq!(log.log_start_offset(), 0);
    // t=3600: cutoff 1100; batches 0 (max 9) and 1 (max 1009) are older.
    assert_eq!(log.apply_retention(by_time, 3600).expect("retention"), 2);
    assert_eq!((log.log_start_offset(), log.batch_count(), log.size_bytes()), (20, 4, 4 * batch_size));
    assert_eq!(bases(&log, 20), [20, 30, 40, 50]);

    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!((log.log_start_offset(), log.batch_count(), log.size_bytes()), (20, 4, 4 * batch_size));
    // The same time again deletes nothing more.
    assert_eq!(log.apply_retention(by_time, 3600).expect("retention"), 0);
    // t=4600: cutoff 2100: batch 2 (max 2009) goes.
    assert_eq!(log.apply_retention(by_time, 4600).expect("retention"), 1);
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), Some((30, 3000)));

    // By size: keep at least two batches' worth.
    let by_size = RetentionLimits { retention_ms: None, retention_bytes: Some(2 * batch_size) };
    assert_eq!(log.apply_retention(by_size, 0).expect("retention"), 1);
    assert_eq!((log.log_start_offset(), log.size_bytes()), (40, 2 * batch_size));

    // A batch not yet visible is never deleted, however old.
    let (b, info) = batch(10, 0);
    log.append(&b, info, 0).expect("append");
    let everything = RetentionLimits { retention_ms: Some(0), retention_bytes: Some(0) };
    assert_eq!(log.apply_retention(everything, 1_000_000).expect("retention"), 2);
    assert_eq!(log.offsets(), LogOffsets { log_start: 60, log_end: 70, high_watermark: 60 });
    assert_eq!(log.batch_count(), 1);

    // Reopened, the single broker's log is visible up to its end, so it may go too.
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.offsets(), LogOffsets { log_start: 60, log_end: 70, high_watermark: 70 });
    assert_eq!(log.apply_retention(everything, 1_000_000).expect("retention"), 1);
    assert_eq!((log.log_start_offset(), log.batch_count(), log.size_bytes()), (70, 0, 0));
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.offsets(), LogOffsets { log_start: 70, log_end: 70, high_watermark: 70 });
    assert_eq!(append(&log, 1, 5).base_offset, 70);
}

#[test]
fn deletion_beyond_the_high_watermark_is_refused() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    append(&log, 5, 0);
    let (b, info) = batch(5, 0);
    log.append(&b, info, 0).expect("append"); // 5..10, not visible
    let err = log.delete_records_before(6).expect_err("beyond the high watermark");
    assert_eq!(err.to_string(), "offset 6 is out of range for t-0: valid offsets are 0 to 5");
    assert_eq!(log.delete_records_before(5).expect("delete"), 1);
    assert_eq!(log.delete_records_before(3).expect("below the log start"), 0);
    assert_eq!(log.log_start_offset(), 5);
}

#[test]
fn missing_index_entries_are_rebuilt_on_open() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    append(&log, 3, 10);
    append(&log, 3, 20);
    // Simulate a crash before the index entry reached the disk.
    db.idx.remove(pkey(log.pid().expect("pid"), 3)).expect("remove");
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.batch_count(), 2);
    assert_eq!(log.offsets().log_end, 6);
}

#[test]
fn stored_batches_carry_the_leader_epoch() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    let (b, info) = batch(2, 0);
    assert_eq!(log.append(&b, info, 7).expect("append").leader_epoch, 7);
    let (b, info) = batch(2, 0);
    log.append(&b, info, 9).expect("append");
    log.advance_high_watermark(4);
    let epochs = |log: &PartitionLog| -> Vec<i32> {
        let r = log.read(0, usize::MAX).expect("read");
        Batches::new(r.batches).map(|b| b.expect("decode").header.partition_leader_epoch).collect()
    };
    assert_eq!(epochs(&log), [7, 9]);
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(epochs(&log), [7, 9]);
}
