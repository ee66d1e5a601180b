//! [`Batches`]: iteration over RecordBatches laid back to back, as a fetch returns them
//! (and as a Kafka log segment stores them), each framed by its batchLength.

use bytes::Bytes;

use super::{BatchError, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC, Records, compute_crc, corrupt};

/// One batch of a fetch: its decoded header and its bytes (header included).
#[derive(Debug, Clone)]
pub struct Batch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

impl Batch {
    /// Decodes the records (offsets are absolute).
    pub fn records(&self) -> Result<Records, BatchError> {
        Records::new(self.bytes.clone())
    }

    /// What a consumer checks before trusting a batch (Kafka's `check.crcs`): magic,
    /// CRC, and that the offset range agrees with the record count.
    pub fn verify(&self) -> Result<(), BatchError> {
        let h = &self.header;
        if h.magic != MAGIC {
            return Err(corrupt(format!("unknown magic byte {} (expected {MAGIC})", h.magic)));
        }
        let actual = compute_crc(&self.bytes);
        if h.crc != actual {
            return Err(corrupt(format!("CRC mismatch: header {:#010x}, computed {actual:#010x}", h.crc)));
        }
        if h.record_count < 1 || h.last_offset_delta != h.record_count - 1 {
            return Err(corrupt(format!(
                "lastOffsetDelta {} does not match the record count {}",
                h.last_offset_delta, h.record_count
            )));
        }
        Ok(())
    }
}

/// Iterates over batches laid back to back. A batch that does not fit ends the
/// iteration with an error.
#[derive(Debug)]
pub struct Batches {
    buf: Bytes,
    pos: usize,
}

impl Batches {
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    fn next_batch(&mut self) -> Result<Batch, BatchError> {
        let at = self.pos;
        let rest = &self.buf[at..];
        let h = BatchHeader::parse(rest)
            .ok_or_else(|| corrupt(format!("batch at byte {at} truncated: {} bytes left", rest.len())))?;
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || h.size() > rest.len() {
            return Err(corrupt(format!(
                "batch at byte {at} has batchLength {} but {} bytes are left",
                h.batch_length,
                rest.len() - LOG_OVERHEAD
            )));
        }
        let end = at + h.size();
        self.pos = end;
        Ok(Batch { header: h, bytes: self.buf.slice(at..end) })
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let b = self.next_batch();
        if b.is_err() {
            self.pos = self.buf.len();
        }
        Some(b)
    }
}
