//! How a partition's trees are keyed: big-endian offsets (so keys sort by offset),
//! order-preserving timestamps, and the 16-byte index entry.

use sluice_core::BatchHeader;

use crate::{
    db::tree_name,
    error::{LogError, Result},
    store::AppendedBatch,
};

pub(crate) const TREE_KINDS: [&str; 4] = ["log", "idx", "ts", "meta"];
/// `meta` key: the log start offset.
pub(super) const LOG_START_KEY: &[u8] = b"log_start";
/// `meta` key: the target of a truncation in progress.
pub(super) const TRUNCATE_KEY: &[u8] = b"truncate_to";

/// The four trees of one partition (see the `partition` module documentation).
#[derive(Debug, Clone)]
pub(super) struct Trees {
    pub log: sled::Tree,
    pub idx: sled::Tree,
    pub ts: sled::Tree,
    pub meta: sled::Tree,
}

impl Trees {
    pub fn open(db: &sled::Db, topic: &str, partition: u32) -> Result<Self> {
        let t = |kind| db.open_tree(tree_name(topic, partition, kind));
        Ok(Self { log: t("log")?, idx: t("idx")?, ts: t("ts")?, meta: t("meta")? })
    }

    /// The log start offset recorded in `meta` (0 when none is).
    pub fn recorded_log_start(&self) -> Result<u64> {
        self.meta.get(LOG_START_KEY)?.map_or(Ok(0), |v| offset_of(&v))
    }

    /// The highest timestamp the time index knows, `i64::MIN` when it is empty.
    pub fn running_max_ts(&self) -> Result<i64> {
        Ok(self.ts.last()?.map(|(k, _)| ts_of(&k)).transpose()?.unwrap_or(i64::MIN))
    }

    /// Removes every batch whose base offset is at or after `from` from all trees (time
    /// index first: its entries point into the others). Returns the stored bytes and the
    /// number of batches removed, as the index knew them. Idempotent.
    pub fn remove_from(&self, from: u64) -> Result<(u64, u64)> {
        // Time-index values (base offsets) grow with their keys: stale ones are a suffix.
        let mut stale = Vec::new();
        for item in self.ts.iter().rev() {
            let (k, v) = item?;
            if offset_of(&v)? < from {
                break;
            }
            stale.push(k);
        }
        for k in stale {
            self.ts.remove(k)?;
        }
        let (mut bytes, mut batches) = (0, 0);
        for item in self.idx.range(key(from)..) {
            let (k, v) = item?;
            bytes += u64::from(IdxEntry::decode(&v)?.stored_len);
            batches += 1;
            self.idx.remove(k)?;
        }
        for k in self.log.range(key(from)..).keys() {
            self.log.remove(k?)?;
        }
        Ok((bytes, batches))
    }
}

pub(super) fn key(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

pub(super) fn offset_of(key: &[u8]) -> Result<u64> {
    let a: [u8; 8] = key.try_into().map_err(|_| LogError::Storage("bad log key".into()))?;
    Ok(u64::from_be_bytes(a))
}

/// Maps an i64 timestamp to a u64 whose big-endian bytes sort like the timestamp.
pub(super) fn ts_key(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

pub(super) fn ts_of(key: &[u8]) -> Result<i64> {
    Ok((offset_of(key)? ^ (1 << 63)) as i64)
}

/// What the `idx` tree holds for one batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdxEntry {
    pub record_count: u32,
    pub stored_len: u32,
    pub max_ts: i64,
}

impl IdxEntry {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.record_count.to_le_bytes());
        b[4..8].copy_from_slice(&self.stored_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.max_ts.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 16 {
            return Err(LogError::Storage("bad index entry".into()));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[8..16]);
        Ok(Self {
            record_count: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            stored_len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            max_ts: i64::from_le_bytes(ts),
        })
    }

    pub fn of(a: &AppendedBatch) -> Self {
        Self { record_count: a.record_count, stored_len: a.size_bytes, max_ts: a.max_timestamp_ms }
    }

    /// The entry of a stored batch, from its header (recovery re-derives the index).
    pub fn of_header(h: &BatchHeader) -> Self {
        Self { record_count: h.record_count.max(0) as u32, stored_len: h.size() as u32, max_ts: h.max_timestamp }
    }
}

/// The header of a batch stored in the `log` tree.
pub(super) fn stored_header(v: &[u8]) -> Result<BatchHeader> {
    BatchHeader::parse(v).ok_or_else(|| LogError::Storage(format!("stored batch of {} bytes has no header", v.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_keys_sort_like_timestamps() {
        let ts = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_key(w[0]) < ts_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        for t in ts {
            assert_eq!(ts_of(&ts_key(t)).expect("decode"), t);
        }
    }

    #[test]
    fn index_entries_round_trip_and_bad_ones_are_refused() {
        let e = IdxEntry { record_count: 7, stored_len: 1234, max_ts: -42 };
        let d = IdxEntry::decode(&e.encode()).expect("decode");
        assert_eq!((d.record_count, d.stored_len, d.max_ts), (7, 1234, -42));
        assert_eq!(IdxEntry::decode(&[0; 15]).expect_err("short").to_string(), "storage error: bad index entry");
        assert_eq!(offset_of(&[1, 2, 3]).expect_err("short").to_string(), "storage error: bad log key");
    }
}
