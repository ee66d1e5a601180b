//! The index entry of one batch (`log/idx`) and the order-preserving timestamp keys of
//! the time index (`log/ts`).

use crate::error::{LogError, Result};

/// Maps an i64 timestamp to a u64 whose big-endian bytes sort like the timestamp.
pub(super) fn ts_key(ts: i64) -> u64 {
    (ts as u64) ^ (1 << 63)
}

pub(super) fn ts_of(k: u64) -> i64 {
    (k ^ (1 << 63)) as i64
}

/// What `log/idx` holds for one batch: where it is, and what retention, sizes and
/// truncation need without reading it (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdxEntry {
    /// Base offset of the segment holding the batch.
    pub segment: u64,
    pub position: u32,
    pub size: u32,
    pub record_count: u32,
    pub max_ts: i64,
}

impl IdxEntry {
    pub fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[0..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..12].copy_from_slice(&self.position.to_be_bytes());
        b[12..16].copy_from_slice(&self.size.to_be_bytes());
        b[16..20].copy_from_slice(&self.record_count.to_be_bytes());
        b[20..28].copy_from_slice(&self.max_ts.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let b: &[u8; 28] = b.try_into().map_err(|_| LogError::Storage("bad index entry".into()))?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut seg = [0u8; 8];
        seg.copy_from_slice(&b[0..8]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[20..28]);
        Ok(Self {
            segment: u64::from_be_bytes(seg),
            position: u32_at(8),
            size: u32_at(12),
            record_count: u32_at(16),
            max_ts: i64::from_be_bytes(ts),
        })
    }

    /// Position after the batch in its segment.
    pub fn end_position(&self) -> u64 {
        u64::from(self.position) + u64::from(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_keys_sort_like_timestamps() {
        let ts = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_key(w[0]).to_be_bytes() < ts_key(w[1]).to_be_bytes(), "{} vs {}", w[0], w[1]);
        }
        for t in ts {
            assert_eq!(ts_of(ts_key(t)), t);
        }
    }

    #[test]
    fn index_entries_round_trip_and_bad_ones_are_refused() {
        let e = IdxEntry { segment: 9, position: 77, size: 1234, record_count: 7, max_ts: -42 };
        assert_eq!(IdxEntry::decode(&e.encode()).expect("decode"), e);
        assert_eq!(e.end_position(), 77 + 1234);
        assert_eq!(IdxEntry::decode(&[0; 15]).expect_err("short").to_string(), "storage error: bad index entry");
    }
}
