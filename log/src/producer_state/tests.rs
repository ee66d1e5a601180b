use sluice_core::{
    BatchBuilder, Compression,
    batch::{self, BatchHeader},
};

use super::{persist, *};
use crate::{PartitionLog, PartitionStore};

const PID: i64 = 7 << 40;

fn batch(epoch: i16, base_sequence: i32, records: u32) -> ProducerBatch {
    ProducerBatch { producer_id: PID, epoch, base_sequence, record_count: records }
}

/// A state holding batches of 2 records with sequences 0-1, 2-3, … at offsets 100, 102, …
fn with_batches(n: i32) -> ProducerStateManager {
    let mut s = ProducerStateManager::new();
    for i in 0..n {
        let b = batch(0, 2 * i, 2);
        assert_eq!(s.check(&b), Ok(Check::Append), "batch {i}");
        s.record(&b, 100 + 2 * i as u64, 1_000);
    }
    s
}

#[test]
fn each_of_the_last_five_batches_is_a_duplicate_with_its_original_offsets() {
    let s = with_batches(7);
    assert_eq!(s.entry(PID).map(|e| e.batches.len()), Some(MAX_CACHED_BATCHES));
    for i in 2..7 {
        let base = 100 + 2 * i as u64;
        assert_eq!(s.check(&batch(0, 2 * i, 2)), Ok(Check::Duplicate { base_offset: base, last_offset: base + 1 }));
    }
    // Older than the last five: Kafka refuses it as out of order.
    assert!(matches!(s.check(&batch(0, 2, 2)), Err(SequenceError::OutOfOrder { expected: 14, got: 2, .. })));
    // Same first sequence, different length: not a duplicate.
    assert!(matches!(s.check(&batch(0, 12, 1)), Err(SequenceError::OutOfOrder { .. })));
    assert_eq!(s.check(&batch(0, 14, 3)), Ok(Check::Append));
}

#[test]
fn a_gap_is_out_of_order_and_says_what_was_expected() {
    let s = with_batches(2);
    let err = s.check(&batch(0, 7, 1)).expect_err("gap");
    assert_eq!(err, SequenceError::OutOfOrder { producer_id: PID, epoch: 0, expected: 4, got: 7 });
    assert!(!err.is_fenced());
    assert!(err.to_string().starts_with(&format!(
        "producer {PID} (epoch 0) sent a batch starting at sequence 7, but the next sequence expected is 4"
    )));
}

#[test]
fn an_older_epoch_is_fenced_and_a_newer_one_starts_at_zero() {
    let mut s = with_batches(2);
    s.record(&batch(3, 0, 1), 200, 2_000);
    let fenced = s.check(&batch(2, 1, 1)).expect_err("fenced");
    assert_eq!(fenced, SequenceError::Fenced { producer_id: PID, epoch: 2, current: 3 });
    assert!(fenced.is_fenced());
    assert!(matches!(
        s.check(&batch(4, 5, 1)),
        Err(SequenceError::NewEpochNotAtZero { epoch: 4, current: 3, got: 5, .. })
    ));
    assert_eq!(s.check(&batch(4, 0, 1)), Ok(Check::Append));
    // The epoch bump forgot the old epoch's batches.
    let e = s.entry(PID).expect("entry");
    assert_eq!((e.epoch, e.batches.len()), (3, 1));
    assert_eq!(s.check(&batch(3, 1, 1)), Ok(Check::Append));
}

#[test]
fn an_unknown_producer_may_start_at_any_sequence_and_others_are_independent() {
    let s = with_batches(1);
    assert_eq!(
        s.check(&ProducerBatch { producer_id: PID + 1, epoch: 0, base_sequence: 42, record_count: 1 }),
        Ok(Check::Append)
    );
}

#[test]
fn sequences_wrap_at_i32_max() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    let b = batch(0, i32::MAX - 1, 3);
    // Sequences MAX-1, MAX, 0.
    assert_eq!(b.last_sequence(), 0);
    let mut s = ProducerStateManager::new();
    s.record(&b, 10, 1);
    assert_eq!(s.check(&batch(0, 1, 1)), Ok(Check::Append));
    assert!(s.check(&batch(0, 2, 1)).is_err());
    assert_eq!(s.check(&b), Ok(Check::Duplicate { base_offset: 10, last_offset: 12 }));
    let mut at_max = ProducerStateManager::new();
    at_max.record(&batch(0, i32::MAX, 1), 0, 1);
    assert_eq!(at_max.check(&batch(0, 0, 1)), Ok(Check::Append));
    assert!(at_max.check(&batch(0, 1, 1)).is_err());
}

#[test]
fn snapshots_round_trip_and_bad_ones_are_refused() {
    let mut s = with_batches(6);
    s.record(&ProducerBatch { producer_id: 3, epoch: 2, base_sequence: 0, record_count: 9 }, 500, 9);
    let bytes = s.encode();
    assert_eq!(ProducerStateManager::decode(&bytes), Ok(s.clone()));
    assert_eq!(ProducerStateManager::decode(&bytes[..bytes.len() - 1]), Err(SnapshotError::Truncated(bytes.len() - 8)));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(ProducerStateManager::decode(&longer), Err(SnapshotError::Trailing(1)));
    assert_eq!(ProducerStateManager::decode(&[9]), Err(SnapshotError::Version(9)));
    assert_eq!(ProducerStateManager::decode(&ProducerStateManager::new().encode()), Ok(ProducerStateManager::new()));
}

#[test]
fn silent_producers_expire() {
    let mut s = with_batches(1);
    s.record(&ProducerBatch { producer_id: 3, epoch: 0, base_sequence: 0, record_count: 1 }, 500, 5_000);
    assert_eq!(s.remove_expired(5_500, 1_000), 1);
    assert!(s.entry(PID).is_none() && s.entry(3).is_some());
}

/// A stored-form batch of `records` records from producer `pid` starting at `seq`.
fn encoded(pid: i64, epoch: i16, seq: i32, records: u32) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None, 256);
    for i in 0..records {
        b.push(1_000 + i64::from(i), None, Some(b"v"), &[]);
    }
    if pid >= 0 {
        b.set_producer(pid, epoch, seq);
    }
    b.finish().expect("finish").to_vec()
}

fn append(log: &PartitionLog, bytes: &[u8]) -> u64 {
    let info = batch::validate(bytes, 1 << 20).expect("valid");
    let stored = log.append(bytes, info, 0).expect("append");
    log.advance_high_watermark(stored.next_offset());
    stored.base_offset
}

#[test]
fn replay_rebuilds_the_state_from_stored_batches() {
    let mut expected = ProducerStateManager::new();
    let mut replayed = ProducerStateManager::new();
    let mut offset = 0u64;
    for (pid, epoch, seq, n) in
        [(PID, 0, 0, 2), (-1, -1, -1, 3), (PID, 0, 2, 1), (5, 1, 0, 4), (PID, 1, 0, 1), (PID, 0, 3, 1)]
    {
        let mut bytes = encoded(pid, epoch, seq, n);
        batch::set_base_offset(&mut bytes, offset);
        let h = BatchHeader::parse(&bytes).expect("header");
        replayed.replay(&h);
        // The stale epoch-0 batch after epoch 1 changes nothing.
        if pid >= 0 && !(pid == PID && epoch == 0 && seq == 3) {
            expected.record(
                &ProducerBatch { producer_id: pid, epoch, base_sequence: seq, record_count: n },
                offset,
                1_000,
            );
        }
        offset += u64::from(n);
    }
    let strip = |s: &ProducerStateManager| {
        let mut s = s.clone();
        s.producers.values_mut().for_each(|e| e.last_append_ms = 0);
        s
    };
    assert_eq!(strip(&replayed), strip(&expected));
}

#[test]
fn load_uses_the_snapshot_and_replays_the_tail_of_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::storage::LogStore::temporary(dir.path(), 1 << 20).expect("store");
    let db = store.db().clone();
    let log = PartitionLog::open(&store, "t", 0).expect("log");
    // Nothing stored: empty state, no snapshot.
    let (s, r) = persist::load(&db, "t", 0, &log).expect("load");
    assert!(s.is_empty());
    assert_eq!(r, persist::Recovered { snapshot_offset: None, replayed_batches: 0 });

    let mut state = ProducerStateManager::new();
    let first = encoded(PID, 0, 0, 3);
    let base = append(&log, &first);
    state.record(&batch(0, 0, 3), base, 1);
    persist::save(&db, "t", 0, &state, log.log_end_offset()).expect("save");
    // Appended after the snapshot: only the log knows them.
    append(&log, &encoded(-1, -1, -1, 2));
    let second = append(&log, &encoded(PID, 0, 3, 2));
    let (s, r) = persist::load(&db, "t", 0, &log).expect("load");
    assert_eq!(r, persist::Recovered { snapshot_offset: Some(3), replayed_batches: 2 });
    assert_eq!(s.check(&batch(0, 3, 2)), Ok(Check::Duplicate { base_offset: second, last_offset: second + 1 }));
    assert_eq!(s.check(&batch(0, 0, 3)), Ok(Check::Duplicate { base_offset: 0, last_offset: 2 }));
    assert_eq!(s.check(&batch(0, 5, 1)), Ok(Check::Append));

    // A snapshot ahead of the log (the log lost its tail) is ignored: rebuilt from the log.
    persist::save(&db, "t", 0, &ProducerStateManager::new(), 1_000).expect("save");
    let (s, r) = persist::load(&db, "t", 0, &log).expect("load");
    assert_eq!(r, persist::Recovered { snapshot_offset: None, replayed_batches: 3 });
    assert_eq!(s.check(&batch(0, 3, 2)), Ok(Check::Duplicate { base_offset: second, last_offset: second + 1 }));

    persist::delete(&db, "t", 0).expect("delete");
    let (_, r) = persist::load(&db, "t", 0, &log).expect("load");
    assert_eq!(r.snapshot_offset, None);
}
