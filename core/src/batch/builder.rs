//! [`BatchBuilder`]: accumulates records and encodes one RecordBatch v2, compressed with
//! the producer's codec. Producer-id fields carry Kafka's "no producer" values unless an
//! idempotent producer sets them ([`BatchBuilder::set_producer`]) before sealing.

use bytes::{Bytes, BytesMut};

use super::{
    ATTRIBUTES_AT, BatchError, CRC_AT, HEADER_LEN, LOG_OVERHEAD, MAGIC, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE, corrupt,
};
use crate::{
    compression::{self, Compression},
    record::Header,
    varint,
};

/// Accumulates records and encodes them into one batch.
#[derive(Debug)]
pub struct BatchBuilder {
    /// The header's place, then the uncompressed records.
    buf: BytesMut,
    compression: Compression,
    count: i32,
    base_ts: i64,
    max_ts: i64,
    /// producerId, producerEpoch, baseSequence (inside the CRC).
    producer: (i64, i16, i32),
    scratch: Vec<u8>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(16 * 1024)
    }
}

impl BatchBuilder {
    /// An uncompressed batch with room for `bytes` of records.
    pub fn with_capacity(bytes: usize) -> Self {
        Self::new(Compression::None, bytes)
    }

    /// A batch compressed with `compression`, with room for `bytes` of records.
    pub fn new(compression: Compression, bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(bytes + HEADER_LEN);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            compression,
            count: 0,
            base_ts: -1,
            max_ts: -1,
            producer: (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
            scratch: Vec::with_capacity(64),
        }
    }

    /// Marks the batch as written by idempotent producer `producer_id` at `epoch`, its
    /// first record carrying sequence `base_sequence` (Kafka's producerId, producerEpoch
    /// and baseSequence header fields).
    pub fn set_producer(&mut self, producer_id: i64, epoch: i16, base_sequence: i32) {
        self.producer = (producer_id, epoch, base_sequence);
    }

    /// Number of records appended so far.
    pub fn len(&self) -> u32 {
        self.count as u32
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The codec the batch is compressed with on [`Self::finish`].
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Size of the batch so far before compression, header included (what batch.size
    /// limits).
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Upper bound of the bytes a record adds to a batch (before compression).
    pub fn record_size(timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
        let _ = timestamp_ms;
        // Worst case for the deltas: a 10-byte timestamp delta and a 5-byte offset delta.
        let body = 1 + 10 + 5 + body_len(key, value, headers);
        5 + body
    }

    /// Appends a record; its offset delta is its position in the batch.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) {
        if self.count == 0 {
            self.base_ts = timestamp_ms;
            self.max_ts = timestamp_ms;
        }
        self.max_ts = self.max_ts.max(timestamp_ms);
        let s = &mut self.scratch;
        s.clear();
        s.push(0); // record attributes
        varint::put_i64(s, timestamp_ms.wrapping_sub(self.base_ts));
        varint::put_i64(s, i64::from(self.count));
        put_bytes(s, key);
        put_bytes(s, value);
        varint::put_i64(s, headers.len() as i64);
        for h in headers {
            put_bytes(s, Some(h.key.as_bytes()));
            put_bytes(s, h.value.as_deref());
        }
        let mut len = [0u8; 10];
        let n = varint::encode_i64(s.len() as i64, &mut len);
        self.buf.extend_from_slice(&len[..n]);
        self.buf.extend_from_slice(s);
        self.count += 1;
    }

    /// Finishes the batch: compresses the records and writes the header and CRC.
    pub fn finish(self) -> Result<Bytes, BatchError> {
        let mut buf = match self.compression {
            Compression::None => self.buf,
            codec => {
                let compressed = compression::compress(codec, &self.buf[HEADER_LEN..]).map_err(corrupt)?;
                let mut b = BytesMut::with_capacity(HEADER_LEN + compressed.len());
                b.resize(HEADER_LEN, 0);
                b.extend_from_slice(&compressed);
                b
            }
        };
        let batch_length = i32::try_from(buf.len() - LOG_OVERHEAD)
            .map_err(|_| corrupt(format!("a batch of {} bytes is too large to encode", buf.len())))?;
        let attributes = i16::from(self.compression.id());
        let h = &mut buf[..HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes());
        h[8..12].copy_from_slice(&batch_length.to_be_bytes());
        h[12..16].copy_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
        h[16] = MAGIC as u8;
        h[21..23].copy_from_slice(&attributes.to_be_bytes());
        h[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        h[27..35].copy_from_slice(&self.base_ts.to_be_bytes());
        h[35..43].copy_from_slice(&self.max_ts.to_be_bytes());
        let (producer_id, producer_epoch, base_sequence) = self.producer;
        h[43..51].copy_from_slice(&producer_id.to_be_bytes());
        h[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
        h[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        h[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

fn body_len(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let field = |b: Option<&[u8]>| b.map_or(1, |b| varint::len_i64(b.len() as i64) + b.len());
    let mut n = field(key) + field(value) + varint::len_i64(headers.len() as i64);
    for h in headers {
        n += field(Some(h.key.as_bytes())) + field(h.value.as_deref());
    }
    n
}

/// A nullable bytes field: zig-zag varint length (-1 = null), then the bytes.
fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint::put_i64(buf, -1),
        Some(b) => {
            varint::put_i64(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}
