//! Tests of recovery against damaged segment files: a torn tail after the checkpoint is
//! truncated quietly, damage at or below it is refused with a message naming the file,
//! and `--recover` truncates to the last valid batch.

use std::sync::Arc;

use super::{
    PartitionLog,
    tests::{append, bases},
};
use crate::{
    error::LogError,
    segment::file_name,
    storage::LogStore,
    store::{LogOffsets, PartitionStore},
};

fn store(dir: &std::path::Path, recover: bool) -> Arc<LogStore> {
    let db = sled::Config::new().path(dir.join("db")).open().expect("db");
    Arc::new(LogStore::new(db, dir.to_path_buf(), 1 << 20, u64::MAX, recover).expect("store"))
}

/// A partition of five flushed batches of ten records; returns the segment file.
fn five_flushed(dir: &std::path::Path) -> std::path::PathBuf {
    let s = store(dir, false);
    let log = PartitionLog::open(&s, "t", 0).expect("open");
    for i in 0..5 {
        append(&log, 10, i * 100);
    }
    s.flush_segments().expect("flush");
    s.db().flush().expect("flush db");
    dir.join("t-0").join(file_name(0))
}

#[test]
fn a_torn_tail_after_the_checkpoint_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = five_flushed(dir.path());
    // Half a batch written after the last flush, then a crash.
    let mut bytes = std::fs::read(&seg).expect("read");
    let len = bytes.len();
    bytes.extend_from_within(..len / 10);
    std::fs::write(&seg, &bytes).expect("write");
    let s = store(dir.path(), false);
    let log = PartitionLog::open(&s, "t", 0).expect("open");
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 50, high_watermark: 50 });
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), len as u64);
    assert_eq!(bases(&log, 0), [0, 10, 20, 30, 40]);
}

#[test]
fn damage_below_the_checkpoint_is_refused_and_recover_truncates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = five_flushed(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = bytes.len() - 20;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&seg, &bytes).expect("write");
    let err = PartitionLog::open(&store(dir.path(), false), "t", 0).expect_err("damaged");
    assert!(matches!(err, LogError::Damaged(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("damaged log: t-0: {} at byte ", seg.display())), "{msg}");
    assert!(msg.contains("CRC mismatch"), "{msg}");
    assert!(
        msg.contains("the records from offset 40 on are unreadable, but they were flushed up to offset 50"),
        "{msg}"
    );
    assert!(
        msg.contains("start the broker with --recover to truncate it to its last valid batch (offset 40; 10 records"),
        "{msg}"
    );
    let log = PartitionLog::open(&store(dir.path(), true), "t", 0).expect("recover");
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 40, high_watermark: 40 });
    drop(log);
    // Recovered for good: a normal open accepts it, and appends continue at 40.
    let s = store(dir.path(), false);
    let log = PartitionLog::open(&s, "t", 0).expect("reopen");
    assert_eq!(append(&log, 1, 0).base_offset, 40);
}

#[test]
fn a_truncated_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = five_flushed(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.set_len(100).expect("truncate");
    let msg = PartitionLog::open(&store(dir.path(), false), "t", 0).expect_err("damaged").to_string();
    assert!(
        msg.contains("the records from offset 0 on are unreadable, but they were flushed up to offset 50"),
        "{msg}"
    );
}

#[test]
fn a_deleted_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = five_flushed(dir.path());
    std::fs::remove_file(&seg).expect("remove");
    let msg = PartitionLog::open(&store(dir.path(), false), "t", 0).expect_err("damaged").to_string();
    assert!(msg.contains("holds no segment files, but offsets 0 to 50 were flushed there"), "{msg}");
}

#[test]
fn a_lost_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    five_flushed(dir.path());
    let s = store(dir.path(), false);
    s.idx.clear().expect("clear");
    s.ts.clear().expect("clear");
    let log = PartitionLog::open(&s, "t", 0).expect("open");
    assert_eq!(log.offsets().log_end, 50);
    assert_eq!(log.batch_count(), 5);
    assert_eq!(bases(&log, 25), [20, 30, 40]);
    assert_eq!(log.offset_for_timestamp(305).expect("lookup"), Some((35, 305)));
}
