//! The broker's header in front of every stored batch, and iteration over the stored
//! batches a fetch returns back to back.
//!
//! Stored header layout (little-endian, [`StoredBatchHeader::LEN`] = 40 bytes):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | base offset (u64) |
//! | 8..12 | record count (u32) |
//! | 12..16 | length of the client batch that follows (u32) |
//! | 16..20 | leader epoch at append (i32) |
//! | 20..28 | max timestamp, ms (i64) |
//! | 28..36 | log append time, ms (i64) |
//! | 36..40 | CRC-32C of bytes 0..36 |

use bytes::Bytes;

use crate::batch::{self, BatchError, Records};

/// The broker-owned header of a stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatchHeader {
    pub base_offset: u64,
    pub record_count: u32,
    pub batch_len: u32,
    pub leader_epoch: i32,
    pub max_timestamp_ms: i64,
    pub append_time_ms: i64,
}

impl StoredBatchHeader {
    pub const LEN: usize = 40;

    /// Offset after the last record of the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Total stored size: this header plus the client batch.
    pub fn stored_len(&self) -> usize {
        Self::LEN + self.batch_len as usize
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut h = [0u8; Self::LEN];
        h[0..8].copy_from_slice(&self.base_offset.to_le_bytes());
        h[8..12].copy_from_slice(&self.record_count.to_le_bytes());
        h[12..16].copy_from_slice(&self.batch_len.to_le_bytes());
        h[16..20].copy_from_slice(&self.leader_epoch.to_le_bytes());
        h[20..28].copy_from_slice(&self.max_timestamp_ms.to_le_bytes());
        h[28..36].copy_from_slice(&self.append_time_ms.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..36]);
        h[36..40].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and checks a header. Errors name what is wrong.
    pub fn decode(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < Self::LEN {
            return Err(BatchError::Corrupt(format!(
                "stored batch header truncated: {} of {} bytes",
                b.len(),
                Self::LEN
            )));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let crc = u32_at(36);
        if crc != crc32c::crc32c(&b[0..36]) {
            return Err(BatchError::Corrupt("stored batch header CRC mismatch".into()));
        }
        Ok(Self {
            base_offset: u64_at(0),
            record_count: u32_at(8),
            batch_len: u32_at(12),
            leader_epoch: u32_at(16) as i32,
            max_timestamp_ms: u64_at(20) as i64,
            append_time_ms: u64_at(28) as i64,
        })
    }
}

/// One stored batch: the broker header and the client's batch bytes.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub header: StoredBatchHeader,
    pub batch: Bytes,
}

impl StoredBatch {
    /// Decodes the records (offsets are absolute).
    pub fn records(&self) -> Result<Records, BatchError> {
        Records::new(self.batch.clone(), self.header.base_offset)
    }

    /// Checks the client batch (CRC and framing) as a consumer should before trusting it.
    pub fn verify(&self) -> Result<(), BatchError> {
        let info = batch::validate(&self.batch, usize::MAX)?;
        if info.record_count != self.header.record_count {
            return Err(BatchError::Corrupt(format!(
                "stored header says {} records, batch says {}",
                self.header.record_count, info.record_count
            )));
        }
        Ok(())
    }
}

/// Iterates over stored batches laid back to back, as in a fetch response.
#[derive(Debug)]
pub struct StoredBatches {
    buf: Bytes,
    pos: usize,
}

impl StoredBatches {
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }
}

impl Iterator for StoredBatches {
    type Item = Result<StoredBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let header = match StoredBatchHeader::decode(&self.buf[self.pos..]) {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        let start = self.pos + StoredBatchHeader::LEN;
        let end = start + header.batch_len as usize;
        if end > self.buf.len() {
            self.pos = self.buf.len();
            return Some(Err(BatchError::Corrupt("stored batch truncated".into())));
        }
        self.pos = end;
        Some(Ok(StoredBatch { header, batch: self.buf.slice(start..end) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchBuilder;

    #[test]
    fn header_round_trip_and_crc() {
        let h = StoredBatchHeader {
            base_offset: 42,
            record_count: 7,
            batch_len: 300,
            leader_epoch: 3,
            max_timestamp_ms: 1_700_000_000_000,
            append_time_ms: 1_700_000_000_123,
        };
        let mut bytes = h.encode();
        assert_eq!(StoredBatchHeader::decode(&bytes), Ok(h));
        bytes[3] ^= 1;
        assert!(StoredBatchHeader::decode(&bytes).is_err());
    }

    #[test]
    fn iterates_back_to_back_batches() {
        let mut buf = Vec::new();
        let mut base = 0;
        for n in [1u32, 5, 2] {
            let mut b = BatchBuilder::default();
            for i in 0..n {
                b.push(i64::from(i), None, Some(b"v"), &[]);
            }
            let batch = b.finish();
            let h = StoredBatchHeader {
                base_offset: base,
                record_count: n,
                batch_len: batch.len() as u32,
                leader_epoch: 0,
                max_timestamp_ms: 0,
                append_time_ms: 0,
            };
            buf.extend_from_slice(&h.encode());
            buf.extend_from_slice(&batch);
            base += u64::from(n);
        }
        let offsets: Vec<u64> = StoredBatches::new(Bytes::from(buf))
            .flat_map(|b| {
                let b = b.expect("batch");
                b.verify().expect("verify");
                b.records().expect("records").map(|r| r.expect("record").offset).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(offsets, (0..8).collect::<Vec<_>>());
    }
}
