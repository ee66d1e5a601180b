//! Producer state on disk: one snapshot per partition in the `producer_state` tree of the
//! broker's sled database (key: topic, a 0 byte, the partition big-endian; value: the log
//! offset the snapshot is valid up to, then the encoded state), and the recovery that
//! loads it and replays the log from that offset to the log end, so that batches appended
//! after the last snapshot (for example before a `kill -9`) are known again.

use bytes::Bytes;
use sluice_core::batch::Batches;

use super::ProducerStateManager;
use crate::{
    error::{LogError, Result},
    store::PartitionStore,
};

/// The tree holding every partition's snapshot.
pub const SNAPSHOT_TREE: &str = "producer_state";

/// Bytes read from the log per step of a rebuild.
const REBUILD_READ_BYTES: usize = 4 * 1024 * 1024;

fn key(topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 5);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Stores `state` as valid for the log below `log_end` (written to sled's cache; durable
/// at the next flush, like the log itself).
pub fn save(db: &sled::Db, topic: &str, partition: u32, state: &ProducerStateManager, log_end: u64) -> Result<()> {
    let mut v = Vec::with_capacity(8 + 64);
    v.extend_from_slice(&log_end.to_be_bytes());
    v.extend_from_slice(&state.encode());
    db.open_tree(SNAPSHOT_TREE)?.insert(key(topic, partition), v)?;
    Ok(())
}

/// Removes a partition's snapshot (the partition was deleted).
pub fn delete(db: &sled::Db, topic: &str, partition: u32) -> Result<()> {
    db.open_tree(SNAPSHOT_TREE)?.remove(key(topic, partition))?;
    Ok(())
}

/// How a partition's state was recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// The offset the snapshot was valid up to; `None` without a usable snapshot.
    pub snapshot_offset: Option<u64>,
    /// Batches read from the log after the snapshot.
    pub replayed_batches: u64,
}

/// Loads a partition's state: its snapshot, then every batch of `log` from the
/// snapshot's offset to the log end. A snapshot beyond the log end
/// (the log lost an unflushed tail the snapshot had seen) or unreadable is ignored and
/// the state is rebuilt from the whole log.
pub fn load(
    db: &sled::Db,
    topic: &str,
    partition: u32,
    log: &dyn PartitionStore,
) -> Result<(ProducerStateManager, Recovered)> {
    let offsets = log.offsets();
    let stored = db.open_tree(SNAPSHOT_TREE)?.get(key(topic, partition))?;
    let snapshot = stored.and_then(|v| {
        let offset = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let state = ProducerStateManager::decode(&v[8..]).ok()?;
        (offset <= offsets.log_end).then_some((offset, state))
    });
    let (mut state, snapshot_offset) = match snapshot {
        Some((offset, state)) => (state, Some(offset)),
        None => (ProducerStateManager::new(), None),
    };
    let mut at = snapshot_offset.unwrap_or(0).max(offsets.log_start);
    let mut replayed_batches = 0;
    // To the log end, not the high watermark: on a follower that just became leader,
    // batches above the old high watermark are in the log and their producers may retry.
    while at < log.log_end_offset() {
        let read = log.read_to_log_end(at as i64, REBUILD_READ_BYTES)?;
        if read.batches.is_empty() {
            break;
        }
        let mut next = at;
        for batch in Batches::new(Bytes::clone(&read.batches)) {
            let batch = batch.map_err(LogError::Batch)?;
            if batch.header.next_offset() <= at {
                continue;
            }
            state.replay(&batch.header);
            replayed_batches += 1;
            next = next.max(batch.header.next_offset());
        }
        if next == at {
            break;
        }
        at = next;
    }
    Ok((state, Recovered { snapshot_offset, replayed_batches }))
}
