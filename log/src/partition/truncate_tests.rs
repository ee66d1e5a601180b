//! Tests of Kafka's truncate (`truncate_to`): what replication will call when a
//! follower's log diverged from its leader's.

use sluice_core::Batches;

use std::sync::Arc;

use super::{
    PartitionLog,
    tests::{append, bases, batch, count, db},
};
use crate::{
    error::LogError,
    retention::RetentionLimits,
    storage::{LogStore, META_TRUNCATE, meta_key, pkey},
    store::{LogOffsets, PartitionStore},
};

/// Batches [0,3), [3,5), [5,6), all visible.
fn three_batches(db: &Arc<LogStore>) -> PartitionLog {
    let log = PartitionLog::open(db, "t", 0).expect("open");
    append(&log, 3, 1000);
    append(&log, 2, 2000);
    append(&log, 1, 3000);
    log
}

#[test]
fn truncation_at_a_batch_boundary_removes_the_suffix_and_survives_reopen() {
    let db = db();
    let log = three_batches(&db);
    let first_size = {
        let r = log.read(0, 1).expect("read");
        r.batches.len() as u64
    };
    assert_eq!(log.truncate_to(3).expect("truncate"), 3);
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 3, high_watermark: 3 });
    assert_eq!((log.batch_count(), log.size_bytes()), (1, first_size));
    assert_eq!(bases(&log, 0), [0]);
    assert!(matches!(log.read(4, 100), Err(LogError::OffsetOutOfRange { high_watermark: 3, .. })));
    // The next append takes the truncated offsets again.
    assert_eq!(append(&log, 4, 4000).base_offset, 3);
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 7, high_watermark: 7 });
    assert_eq!(bases(&log, 0), [0, 3]);
    assert_eq!(log.batch_count(), 2);
}

#[test]
fn a_batch_holding_the_offset_goes_whole() {
    let db = db();
    let log = three_batches(&db);
    assert_eq!(log.truncate_to(4).expect("truncate"), 3);
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 3, high_watermark: 3 });
    assert_eq!(bases(&log, 0), [0]);
}

#[test]
fn truncation_at_or_beyond_the_log_end_changes_nothing() {
    let db = db();
    let log = three_batches(&db);
    assert_eq!(log.truncate_to(6).expect("truncate"), 6);
    assert_eq!(log.truncate_to(100).expect("truncate"), 6);
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 6, high_watermark: 6 });
    assert_eq!(log.batch_count(), 3);
}

#[test]
fn the_high_watermark_follows_the_log_end_down_only() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    append(&log, 3, 0); // [0,3) visible
    let (b, info) = batch(3, 0);
    log.append(&b, info, 0).expect("append"); // [3,6) not visible
    let (b, info) = batch(3, 0);
    log.append(&b, info, 0).expect("append"); // [6,9) not visible
    let mut hw = log.watch_high_watermark();
    hw.borrow_and_update();
    // Above the high watermark: it stays.
    assert_eq!(log.truncate_to(6).expect("truncate"), 6);
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 6, high_watermark: 3 });
    assert!(!hw.has_changed().expect("open"), "not lowered");
    // A promise to make 9 visible cannot go beyond the new log end.
    log.advance_high_watermark(9);
    assert_eq!(log.high_watermark(), 6);
    hw.borrow_and_update();
    // Below: lowered to the new log end, and waiters see it.
    assert_eq!(log.truncate_to(0).expect("truncate"), 0);
    assert!(hw.has_changed().expect("open"));
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 0, high_watermark: 0 });
    assert_eq!((log.batch_count(), log.size_bytes()), (0, 0));
}

#[test]
fn the_time_index_follows_the_truncation() {
    let db = db();
    let log = three_batches(&db); // ts 1000.., 2000.., 3000..
    log.truncate_to(3).expect("truncate");
    assert_eq!(log.offset_for_timestamp(1500).expect("lookup"), None, "the batch stamped 2000 is gone");
    // A new batch with older timestamps than the removed ones is found: the running
    // maximum went back with the truncation.
    append(&log, 2, 1500);
    assert_eq!(log.offset_for_timestamp(1500).expect("lookup"), Some((3, 1500)));
    assert_eq!(log.offset_for_timestamp(1501).expect("lookup"), Some((4, 1501)));
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.offset_for_timestamp(1501).expect("lookup"), Some((4, 1501)));
    assert_eq!(log.offset_for_timestamp(2000).expect("lookup"), None);
    let pid = log.pid().expect("pid");
    let ts: Vec<u64> = db
        .ts
        .range(pkey(pid, 0)..=pkey(pid, u64::MAX))
        .values()
        .map(|v| crate::storage::u64_of(&v.expect("ts")))
        .collect::<Result<_, _>>()
        .expect("decode");
    assert_eq!(ts, [0, 3], "time index: the batch at 0 (max 1002), then the one at 3 (max 1501)");
}

#[test]
fn truncation_below_the_log_start_restarts_the_log_there() {
    let db = db();
    let log = three_batches(&db);
    let all = RetentionLimits { retention_ms: None, retention_bytes: Some(0) };
    assert_eq!(log.apply_retention(all, 0).expect("retention"), 3);
    assert_eq!(log.log_start_offset(), 6);
    assert_eq!(log.truncate_to(2).expect("truncate"), 2);
    assert_eq!(log.offsets(), LogOffsets { log_start: 2, log_end: 2, high_watermark: 2 });
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.offsets(), LogOffsets { log_start: 2, log_end: 2, high_watermark: 2 });
    assert_eq!(append(&log, 1, 0).base_offset, 2);
}

#[test]
fn truncation_into_a_partly_deleted_batch_empties_the_log() {
    let db = db();
    let log = three_batches(&db);
    // The log start inside [3,5): the batch stays, offset 3 is gone.
    assert_eq!(log.delete_records_before(4).expect("delete"), 1);
    assert_eq!(log.truncate_to(4).expect("truncate"), 3);
    assert_eq!(log.offsets(), LogOffsets { log_start: 3, log_end: 3, high_watermark: 3 });
    assert_eq!(log.batch_count(), 0);
}

#[test]
fn a_truncation_interrupted_by_a_crash_is_finished_on_open() {
    let db = db();
    let log = three_batches(&db);
    // As if the broker died right after recording the target: nothing removed yet.
    let pid = log.pid().expect("pid");
    db.meta.insert(meta_key(pid, META_TRUNCATE), &3u64.to_be_bytes()).expect("insert");
    // ... and after removing only the time-index entry of the last batch.
    let last_ts = db.ts.range(pkey(pid, 0)..=pkey(pid, u64::MAX)).next_back().expect("ts").expect("an entry").0;
    db.ts.remove(last_ts).expect("remove");
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 3, high_watermark: 3 });
    assert_eq!(log.batch_count(), 1);
    assert_eq!(count(&db.idx, &log), 1);
    assert_eq!(db.meta.get(meta_key(pid, META_TRUNCATE)).expect("meta"), None, "target forgotten once done");
    let r = log.read(0, usize::MAX).expect("read");
    assert_eq!(Batches::new(r.batches).count(), 1);
    assert_eq!(log.offset_for_timestamp(1500).expect("lookup"), None);
}

#[test]
fn a_failed_truncation_blocks_writes_until_reopen() {
    let db = db();
    let log = three_batches(&db);
    log.state.lock().expect("lock").unfinished_truncation = true;
    let (b, info) = batch(1, 0);
    let err = log.append(&b, info, 0).expect_err("refused");
    assert_eq!(err.to_string(), "storage error: t-0 has an unfinished truncation; restart the broker to finish it");
    assert!(log.truncate_to(1).is_err());
    assert!(log.delete_records_before(1).is_err());
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(append(&log, 1, 0).base_offset, 6);
}
