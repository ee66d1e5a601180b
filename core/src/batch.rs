//! The client record batch: the unit a producer sends and a broker stores unchanged.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | magic, [`MAGIC`] |
//! | 1 | attributes (bits 0–2: compression; only 0 = none today) |
//! | 2..6 | record count (u32) |
//! | 6..14 | first timestamp, ms (i64) |
//! | 14..22 | max timestamp, ms (i64) |
//! | 22..26 | length of the records section (u32) |
//! | 26..30 | CRC-32C of bytes 0..26 followed by the records section |
//! | 30.. | records |
//!
//! Each record: varint length of the rest; zig-zag varint timestamp delta from the first
//! timestamp; varint offset delta; key and value each as varint (length + 1, 0 = null)
//! then the bytes; varint header count, then per header a varint key length, the UTF-8
//! key, and the value as for the record value.
//!
//! The broker runs [`validate`], which checks the header, the CRC and the record
//! framing (lengths only) without decoding any record.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    record::{Header, Record},
    varint,
};

/// Format version written in byte 0.
pub const MAGIC: u8 = 1;
/// Size of the batch header.
pub const HEADER_LEN: usize = 30;

const COUNT_AT: usize = 2;
const FIRST_TS_AT: usize = 6;
const MAX_TS_AT: usize = 14;
const RECORDS_LEN_AT: usize = 22;
const CRC_AT: usize = 26;

/// Why a batch was refused. The broker turns these into gRPC statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("empty batch: a batch must hold at least one record")]
    Empty,
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    #[error("record of {size} bytes exceeds max.message.bytes={max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("batch of {size} bytes exceeds max.message.bytes={max}")]
    BatchTooLarge { size: usize, max: usize },
}

fn corrupt(msg: impl Into<String>) -> BatchError {
    BatchError::Corrupt(msg.into())
}

/// What the broker learns from a valid batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&batch[..CRC_AT]), &batch[HEADER_LEN..])
}

/// Reads the header of a batch without checking the records. `None` if too short.
pub fn peek(batch: &[u8]) -> Option<BatchInfo> {
    (batch.len() >= HEADER_LEN).then(|| BatchInfo {
        record_count: u32_at(batch, COUNT_AT),
        first_timestamp_ms: i64_at(batch, FIRST_TS_AT),
        max_timestamp_ms: i64_at(batch, MAX_TS_AT),
    })
}

/// Checks a batch as received from a producer: size limit, header, CRC, and that the
/// records section holds exactly `record count` length-framed records. Records are
/// not decoded.
pub fn validate(batch: &[u8], max_message_bytes: usize) -> Result<BatchInfo, BatchError> {
    if batch.is_empty() {
        return Err(BatchError::Empty);
    }
    if batch.len() < HEADER_LEN {
        return Err(corrupt(format!("{} bytes is shorter than the {HEADER_LEN}-byte batch header", batch.len())));
    }
    if batch[0] != MAGIC {
        return Err(corrupt(format!("unknown magic byte {} (expected {MAGIC})", batch[0])));
    }
    if batch[1] & 0x07 != 0 {
        return Err(corrupt(format!("unsupported compression {}", batch[1] & 0x07)));
    }
    let info = peek(batch).ok_or_else(|| corrupt("short header"))?;
    if info.record_count == 0 {
        return Err(BatchError::Empty);
    }
    if batch.len() > max_message_bytes {
        return Err(if info.record_count == 1 {
            BatchError::RecordTooLarge { size: batch.len(), max: max_message_bytes }
        } else {
            BatchError::BatchTooLarge { size: batch.len(), max: max_message_bytes }
        });
    }
    let records_len = u32_at(batch, RECORDS_LEN_AT) as usize;
    if records_len != batch.len() - HEADER_LEN {
        return Err(corrupt(format!(
            "header says {records_len} bytes of records, batch carries {} (truncated?)",
            batch.len() - HEADER_LEN
        )));
    }
    let crc = u32_at(batch, CRC_AT);
    let actual = batch_crc(batch);
    if crc != actual {
        return Err(corrupt(format!("CRC mismatch: header {crc:#010x}, computed {actual:#010x}")));
    }
    if info.max_timestamp_ms < info.first_timestamp_ms {
        return Err(corrupt("max timestamp is before first timestamp"));
    }
    let mut pos = HEADER_LEN;
    let mut count: u64 = 0;
    while pos < batch.len() {
        let len =
            varint::get_u64(batch, &mut pos).ok_or_else(|| corrupt(format!("bad record length at byte {pos}")))?;
        let end = pos
            .checked_add(len as usize)
            .filter(|end| *end <= batch.len())
            .ok_or_else(|| corrupt(format!("record {count} overruns the batch")))?;
        pos = end;
        count += 1;
    }
    if count != u64::from(info.record_count) {
        return Err(corrupt(format!("header says {} records, batch holds {count}", info.record_count)));
    }
    Ok(info)
}

/// Accumulates records and encodes them into one batch.
#[derive(Debug)]
pub struct BatchBuilder {
    records: BytesMut,
    count: u32,
    first_ts: i64,
    max_ts: i64,
    scratch: Vec<u8>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(16 * 1024)
    }
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut records = BytesMut::with_capacity(bytes + HEADER_LEN);
        records.put_bytes(0, HEADER_LEN);
        Self { records, count: 0, first_ts: 0, max_ts: i64::MIN, scratch: Vec::with_capacity(64) }
    }

    /// Number of records appended so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size of the batch so far, header included.
    pub fn size_bytes(&self) -> usize {
        self.records.len()
    }

    /// Upper bound of the bytes a record adds to a batch.
    pub fn record_size(timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
        let _ = timestamp_ms;
        // Worst case for the deltas: a 10-byte timestamp delta and a 5-byte offset delta.
        let body = body_len(i64::MIN, u32::MAX, key, value, headers);
        varint::len_u64(body as u64) + body
    }

    /// Appends a record; its offset delta is its position in the batch.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) {
        if self.count == 0 {
            self.first_ts = timestamp_ms;
        }
        self.max_ts = self.max_ts.max(timestamp_ms);
        let s = &mut self.scratch;
        s.clear();
        varint::put_i64(s, timestamp_ms.wrapping_sub(self.first_ts));
        varint::put_u64(s, u64::from(self.count));
        put_opt_bytes(s, key);
        put_opt_bytes(s, value);
        varint::put_u64(s, headers.len() as u64);
        for h in headers {
            varint::put_u64(s, h.key.len() as u64);
            s.extend_from_slice(h.key.as_bytes());
            put_opt_bytes(s, h.value.as_deref());
        }
        let mut len = Vec::with_capacity(5);
        varint::put_u64(&mut len, s.len() as u64);
        self.records.extend_from_slice(&len);
        self.records.extend_from_slice(s);
        self.count += 1;
    }

    /// Finishes the batch: writes the header and CRC. Returns the encoded bytes.
    pub fn finish(mut self) -> Bytes {
        let records_len = (self.records.len() - HEADER_LEN) as u32;
        let max_ts = if self.count == 0 { self.first_ts } else { self.max_ts };
        let h = &mut self.records[..HEADER_LEN];
        h[0] = MAGIC;
        h[1] = 0;
        h[COUNT_AT..COUNT_AT + 4].copy_from_slice(&self.count.to_le_bytes());
        h[FIRST_TS_AT..FIRST_TS_AT + 8].copy_from_slice(&self.first_ts.to_le_bytes());
        h[MAX_TS_AT..MAX_TS_AT + 8].copy_from_slice(&max_ts.to_le_bytes());
        h[RECORDS_LEN_AT..RECORDS_LEN_AT + 4].copy_from_slice(&records_len.to_le_bytes());
        let crc = batch_crc(&self.records);
        self.records[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        self.records.freeze()
    }
}

fn body_len(ts_delta: i64, offset_delta: u32, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let opt = |b: Option<&[u8]>| b.map_or(1, |b| varint::len_u64(b.len() as u64 + 1) + b.len());
    let zig = ((ts_delta << 1) ^ (ts_delta >> 63)) as u64;
    let mut n = varint::len_u64(zig)
        + varint::len_u64(u64::from(offset_delta))
        + opt(key)
        + opt(value)
        + varint::len_u64(headers.len() as u64);
    for h in headers {
        n += varint::len_u64(h.key.len() as u64) + h.key.len() + opt(h.value.as_deref());
    }
    n
}

fn put_opt_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => buf.push(0),
        Some(b) => {
            varint::put_u64(buf, b.len() as u64 + 1);
            buf.extend_from_slice(b);
        }
    }
}

/// Decodes the records of a batch. `base_offset` is the offset the broker assigned to
/// the first record. The batch must have passed [`validate`] (the broker did that, and
/// [`crate::StoredBatches`] checks the CRC again on the consumer side).
#[derive(Debug)]
pub struct Records {
    batch: Bytes,
    pos: usize,
    base_offset: u64,
    first_ts: i64,
}

impl Records {
    pub fn new(batch: Bytes, base_offset: u64) -> Result<Self, BatchError> {
        let info = peek(&batch).ok_or_else(|| corrupt("short batch"))?;
        Ok(Self { batch, pos: HEADER_LEN, base_offset, first_ts: info.first_timestamp_ms })
    }

    fn decode_one(&mut self) -> Result<Record, BatchError> {
        let b = &self.batch;
        let bad = || corrupt("malformed record");
        let len = varint::get_u64(b, &mut self.pos).ok_or_else(bad)? as usize;
        let end = self.pos.checked_add(len).filter(|e| *e <= b.len()).ok_or_else(bad)?;
        let mut p = self.pos;
        let ts_delta = varint::get_i64(b, &mut p).ok_or_else(bad)?;
        let offset_delta = varint::get_u64(b, &mut p).ok_or_else(bad)?;
        let key = get_opt_bytes(b, &mut p, end).ok_or_else(bad)?;
        let value = get_opt_bytes(b, &mut p, end).ok_or_else(bad)?;
        let n_headers = varint::get_u64(b, &mut p).ok_or_else(bad)?;
        let mut headers = Vec::new();
        for _ in 0..n_headers {
            let klen = varint::get_u64(b, &mut p).ok_or_else(bad)? as usize;
            let kend = p.checked_add(klen).filter(|e| *e <= end).ok_or_else(bad)?;
            let key = std::str::from_utf8(&b[p..kend]).map_err(|_| bad())?.to_owned();
            p = kend;
            let value = get_opt_bytes(b, &mut p, end).ok_or_else(bad)?;
            headers.push(Header { key, value });
        }
        if p != end {
            return Err(bad());
        }
        self.pos = end;
        Ok(Record {
            offset: self.base_offset + offset_delta,
            timestamp_ms: self.first_ts.wrapping_add(ts_delta),
            key,
            value,
            headers,
        })
    }
}

fn get_opt_bytes(b: &Bytes, p: &mut usize, end: usize) -> Option<Option<Bytes>> {
    let n = varint::get_u64(b, p)? as usize;
    if n == 0 {
        return Some(None);
    }
    let stop = p.checked_add(n - 1).filter(|e| *e <= end)?;
    let v = b.slice(*p..stop);
    *p = stop;
    Some(Some(v))
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.batch.len() {
            return None;
        }
        let r = self.decode_one();
        if r.is_err() {
            self.pos = self.batch.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u32) -> Bytes {
        let mut b = BatchBuilder::default();
        for i in 0..n {
            let key = format!("k{i}");
            let value = format!("value-{i}");
            let headers = if i % 2 == 0 {
                vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"x")) }]
            } else {
                vec![]
            };
            let k = (i % 3 != 0).then_some(key.as_bytes());
            b.push(1_000 + i64::from(i), k, Some(value.as_bytes()), &headers);
        }
        b.finish()
    }

    #[test]
    fn encode_validate_decode_round_trip() {
        let batch = sample(10);
        let info = validate(&batch, 1 << 20).expect("valid");
        assert_eq!(info.record_count, 10);
        assert_eq!(info.first_timestamp_ms, 1_000);
        assert_eq!(info.max_timestamp_ms, 1_009);
        let records: Vec<_> = Records::new(batch, 500).expect("header").collect::<Result<_, _>>().expect("decode");
        assert_eq!(records.len(), 10);
        assert_eq!(records[3].offset, 503);
        assert_eq!(records[3].timestamp_ms, 1_003);
        assert_eq!(records[3].key, None);
        assert_eq!(records[4].key.as_deref(), Some(&b"k4"[..]));
        assert_eq!(records[4].value.as_deref(), Some(&b"value-4"[..]));
        assert_eq!(records[4].headers[0].key, "h");
        assert!(records[5].headers.is_empty());
    }

    #[test]
    fn record_size_matches_encoding() {
        let mut b = BatchBuilder::default();
        let before = b.size_bytes();
        b.push(0, Some(b"key"), Some(&[7u8; 300]), &[]);
        let after = b.size_bytes();
        assert!(BatchBuilder::record_size(0, Some(b"key"), Some(&[7u8; 300]), &[]) >= after - before);
    }

    #[test]
    fn empty_batch_is_refused() {
        assert_eq!(validate(&[], 100), Err(BatchError::Empty));
        let empty = BatchBuilder::default().finish();
        assert_eq!(validate(&empty, 100), Err(BatchError::Empty));
    }

    #[test]
    fn crc_mismatch_is_corrupt() {
        let mut batch = sample(3).to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        let err = validate(&batch, 1 << 20).unwrap_err();
        assert!(matches!(&err, BatchError::Corrupt(m) if m.contains("CRC mismatch")), "{err}");
    }

    #[test]
    fn truncated_batch_is_corrupt() {
        let batch = sample(3);
        let err = validate(&batch[..batch.len() - 4], 1 << 20).unwrap_err();
        assert!(matches!(&err, BatchError::Corrupt(m) if m.contains("truncated")), "{err}");
        let err = validate(&batch[..10], 1 << 20).unwrap_err();
        assert!(matches!(&err, BatchError::Corrupt(m) if m.contains("shorter")), "{err}");
    }

    #[test]
    fn wrong_record_count_is_corrupt() {
        let mut batch = sample(3).to_vec();
        batch[COUNT_AT..COUNT_AT + 4].copy_from_slice(&4u32.to_le_bytes());
        let crc = batch_crc(&batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        let err = validate(&batch, 1 << 20).unwrap_err();
        assert!(matches!(&err, BatchError::Corrupt(m) if m.contains("header says 4 records")), "{err}");
    }

    #[test]
    fn size_limits_name_record_or_batch() {
        let mut one = BatchBuilder::default();
        one.push(0, None, Some(&[0u8; 200]), &[]);
        let one = one.finish();
        assert!(matches!(validate(&one, 100), Err(BatchError::RecordTooLarge { max: 100, .. })));
        let many = sample(50);
        assert!(matches!(validate(&many, 100), Err(BatchError::BatchTooLarge { max: 100, .. })));
    }

    #[test]
    fn bad_magic_is_corrupt() {
        let mut batch = sample(1).to_vec();
        batch[0] = 9;
        assert!(matches!(validate(&batch, 1 << 20), Err(BatchError::Corrupt(m)) if m.contains("magic")));
    }
}
