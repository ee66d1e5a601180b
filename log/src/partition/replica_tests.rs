//! Tests of what replication uses: the leader-epoch history (recorded at append,
//! truncated with the log, reloaded after a restart, dropped with the partition), the
//! follower's append of its leader's batches, and reads up to the log end.

use std::time::Duration;

use bytes::Bytes;
use sluice_core::Batches;

use super::{
    PartitionLog, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET,
    tests::{batch, count, db},
};
use crate::{
    db::{LogConfig, drop_partition, open},
    error::LogError,
    store::{LogOffsets, PartitionStore},
};

/// Appends `n` records as a leader at `epoch` (not made visible).
fn lead(log: &PartitionLog, n: u32, epoch: i32) -> u64 {
    let (b, info) = batch(n, 1000);
    log.append(&b, info, epoch).expect("append").next_offset()
}

/// Every stored batch, up to the log end.
fn all_batches(log: &PartitionLog) -> Vec<Bytes> {
    let r = log.read_to_log_end(log.log_start_offset() as i64, usize::MAX).expect("read");
    Batches::new(r.batches).map(|b| b.expect("decode").bytes).collect()
}

#[test]
fn epochs_are_recorded_when_a_new_epoch_appends_and_answer_kip_279() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0).expect("ask"), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
    lead(&log, 3, 1);
    lead(&log, 2, 1);
    lead(&log, 4, 3);
    assert_eq!(log.epoch_history().expect("history"), [(1, 0), (3, 5)]);
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.end_offset_for_epoch(0).expect("ask"), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
    assert_eq!(log.end_offset_for_epoch(1).expect("ask"), (1, 5));
    assert_eq!(log.end_offset_for_epoch(2).expect("ask"), (1, 5));
    assert_eq!(log.end_offset_for_epoch(3).expect("ask"), (3, 9));
    assert_eq!(log.end_offset_for_epoch(7).expect("ask"), (3, 9));
    // An older epoch than the log's latest is refused.
    let (b, info) = batch(1, 1000);
    assert!(matches!(log.append(&b, info, 2), Err(LogError::Replica(_))));
    assert_eq!(log.log_end_offset(), 9);
}

#[test]
fn truncation_removes_the_epochs_it_cuts_and_a_reopen_keeps_the_rest() {
    let db = db();
    let log = PartitionLog::open(&db, "t", 0).expect("open");
    lead(&log, 3, 1);
    lead(&log, 2, 2);
    lead(&log, 2, 4);
    assert_eq!(log.truncate_to(5).expect("truncate"), 5);
    assert_eq!(log.epoch_history().expect("history"), [(1, 0), (2, 3)]);
    assert_eq!(log.end_offset_for_epoch(4).expect("ask"), (2, 5));
    assert_eq!(log.truncate_to(3).expect("truncate"), 3);
    assert_eq!(log.epoch_history().expect("history"), [(1, 0)]);
    lead(&log, 1, 5);
    drop(log);
    let log = PartitionLog::open(&db, "t", 0).expect("reopen");
    assert_eq!(log.epoch_history().expect("history"), [(1, 0), (5, 3)]);
    assert_eq!(log.end_offset_for_epoch(4).expect("ask"), (1, 3));
    assert_eq!(count(&db.epochs, &log), 2);
}

#[test]
fn a_follower_stores_its_leaders_batches_byte_for_byte() {
    let db = db();
    let leader = PartitionLog::open(&db, "leader", 0).expect("open");
    lead(&leader, 3, 0);
    lead(&leader, 2, 2);
    let follower = PartitionLog::open(&db, "follower", 0).expect("open");
    for b in all_batches(&leader) {
        follower.append_replica(&b).expect("replica append");
    }
    assert_eq!(all_batches(&follower), all_batches(&leader));
    assert_eq!(follower.epoch_history().expect("history"), [(0, 0), (2, 3)]);
    // Appended, not committed: consumers see nothing until the high watermark moves.
    assert_eq!(follower.offsets(), LogOffsets { log_start: 0, log_end: 5, high_watermark: 0 });
    assert!(follower.read(0, usize::MAX).expect("read").batches.is_empty());
    assert_eq!(follower.read_to_log_end(3, usize::MAX).expect("read").batches, all_batches(&leader)[1]);
    follower.advance_high_watermark(5);
    assert_eq!(follower.read(0, usize::MAX).expect("read").batches.len(), leader.size_bytes() as usize);
}

#[test]
fn a_follower_refuses_gaps_older_epochs_and_damage() {
    let db = db();
    let leader = PartitionLog::open(&db, "leader", 0).expect("open");
    lead(&leader, 3, 4);
    lead(&leader, 2, 4);
    let batches = all_batches(&leader);
    let follower = PartitionLog::open(&db, "follower", 0).expect("open");
    let gap = follower.append_replica(&batches[1]).expect_err("gap");
    assert!(gap.to_string().contains("base offset 3 where 0 was expected"), "{gap}");
    let mut damaged = batches[0].to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let crc = follower.append_replica(&damaged).expect_err("crc");
    assert!(crc.to_string().contains("CRC mismatch"), "{crc}");
    follower.append_replica(&batches[0]).expect("append");
    // A batch at the right offset but stamped with an epoch older than the log's.
    let mut old = batches[1].to_vec();
    sluice_core::batch::set_partition_leader_epoch(&mut old, 3);
    assert!(matches!(follower.append_replica(&old), Err(LogError::Replica(_))));
    assert_eq!(follower.log_end_offset(), 3);
}

#[test]
fn epochs_survive_a_restart_and_lose_what_the_log_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        data_dir: dir.path().to_path_buf(),
        cache_capacity_bytes: 16 * 1024 * 1024,
        flush_interval: Duration::from_millis(100),
        segment_bytes: 1024 * 1024,
        segment_ms: u64::MAX,
        recover: false,
    };
    {
        let (store, _lock) = open(&config).expect("open");
        let log = PartitionLog::open(&store, "t", 0).expect("open");
        lead(&log, 3, 1);
        lead(&log, 2, 6);
        store.flush_segments().expect("flush");
        store.db().flush().expect("flush db");
    }
    let (store, _lock) = open(&config).expect("reopen");
    let log = PartitionLog::open(&store, "t", 0).expect("open");
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.epoch_history().expect("history"), [(1, 0), (6, 3)]);
    assert_eq!(log.end_offset_for_epoch(5).expect("ask"), (1, 3));
    // The epochs tree knows an epoch the segments lost (an unflushed tail): dropped at open.
    let pid = store.find_pid("t", 0).expect("pid").expect("has data");
    store.epochs.insert(crate::storage::pkey(pid, 9), &5u64.to_be_bytes()).expect("insert");
    drop(log);
    let log = PartitionLog::open(&store, "t", 0).expect("reopen");
    assert_eq!(log.epoch_history().expect("history"), [(1, 0), (6, 3)]);
    drop(log);
    drop_partition(&store, "t", 0).expect("drop");
    assert_eq!(store.epochs.len(), 0);
}
