//! What [`super::PartitionLog::open`] repairs before the partition serves anything:
//! an interrupted truncation, a corrupt last batch, index entries the log has and the
//! index lacks (or the reverse), and batches retention recorded as deleted but did not
//! delete.

use tracing::{info, warn};

use super::keys::{IdxEntry, LOG_START_KEY, TRUNCATE_KEY, Trees, key, offset_of, stored_header, ts_key};
use crate::error::Result;

/// The in-memory state of a partition, as recovered from its trees.
#[derive(Debug)]
pub(super) struct Recovered {
    pub log_start: u64,
    pub log_end: u64,
    pub running_max_ts: i64,
    pub size_bytes: u64,
    pub batch_count: u64,
}

pub(super) fn recover(t: &Trees, topic: &str, partition: u32) -> Result<Recovered> {
    if let Some(v) = t.meta.get(TRUNCATE_KEY)? {
        let to = offset_of(&v)?;
        warn!(topic, partition, offset = to, "finishing a truncation interrupted by a crash");
        finish_truncation(t, to)?;
    }

    // A torn or corrupt last batch is impossible with sled's atomic inserts, but the
    // check is cheap and keeps the promise "never expose a torn batch".
    while let Some((k, v)) = t.log.last()? {
        let ok = sluice_core::batch::validate(&v, usize::MAX)
            .ok()
            .filter(|_| stored_header(&v).is_ok_and(|h| offset_of(&k).is_ok_and(|base| base == h.first_offset())));
        if ok.is_some() {
            break;
        }
        warn!(topic, partition, offset = offset_of(&k)?, "dropping corrupt last batch");
        t.log.remove(k)?;
    }

    // Re-derive index entries the log has and the index lacks (crash between inserts),
    // and drop index entries beyond the log.
    let last_log = t.log.last()?.map(|(k, _)| offset_of(&k)).transpose()?;
    let last_idx = t.idx.last()?.map(|(k, _)| offset_of(&k)).transpose()?;
    if let Some(li) = last_idx
        && last_log.is_none_or(|ll| li > ll)
    {
        let from = last_log.map_or(0, |ll| ll + 1);
        for k in t.idx.range(key(from)..).keys() {
            t.idx.remove(k?)?;
        }
    }
    let repair_from = last_idx.map_or(0, |li| li + 1);
    let mut running_max_ts = t.running_max_ts()?;
    let mut repaired = 0;
    for item in t.log.range(key(repair_from)..) {
        let (k, v) = item?;
        let h = stored_header(&v)?;
        t.idx.insert(&k, &IdxEntry::of_header(&h).encode())?;
        if h.max_timestamp > running_max_ts {
            running_max_ts = h.max_timestamp;
            t.ts.insert(ts_key(running_max_ts), &k)?;
        }
        repaired += 1;
    }
    if repaired > 0 {
        info!(topic, partition, batches = repaired, "rebuilt index entries from the log");
    }

    let log_start = t.recorded_log_start()?;
    let last_next = match t.log.last()? {
        Some((_, v)) => stored_header(&v)?.next_offset(),
        None => 0,
    };
    let log_end = last_next.max(log_start);
    let (mut size_bytes, mut batch_count) = (0u64, 0u64);
    for item in t.idx.iter() {
        let (k, v) = item?;
        let e = IdxEntry::decode(&v)?;
        if offset_of(&k)? + u64::from(e.record_count) <= log_start {
            // Retention recorded a new log start but crashed before deleting.
            t.log.remove(&k)?;
            t.idx.remove(&k)?;
            continue;
        }
        size_bytes += u64::from(e.stored_len);
        batch_count += 1;
    }
    Ok(Recovered { log_start, log_end, running_max_ts, size_bytes, batch_count })
}

/// Completes a truncation to `to` whose target is recorded in `meta`: removes every
/// batch from `to` on, lowers the log start when it was above, then forgets the target.
/// Used by the truncation itself and, after a crash, by recovery.
pub(super) fn finish_truncation(t: &Trees, to: u64) -> Result<(u64, u64)> {
    let removed = t.remove_from(to)?;
    if to < t.recorded_log_start()? {
        t.meta.insert(LOG_START_KEY, &key(to))?;
    }
    t.meta.remove(TRUNCATE_KEY)?;
    Ok(removed)
}
