//! [`Records`]: decodes the records of one batch (decompressing it first when it is
//! compressed). Keys, values and header values are slices of one buffer, not copies.

use bytes::Bytes;

use super::{
    BatchError, BatchHeader, HEADER_LEN, corrupt,
    record::{Headers, read_record},
};
use crate::{
    compression::{self, Compression, MAX_UNCOMPRESSED_BYTES},
    record::{Header, Record},
};

/// The records of a batch, with absolute offsets (baseOffset + offsetDelta) and
/// timestamps (baseTimestamp + timestampDelta, or the batch's maxTimestamp when the
/// broker set log append time).
#[derive(Debug)]
pub struct Records {
    data: Bytes,
    pos: usize,
    base_offset: u64,
    base_ts: i64,
    append_ts: Option<i64>,
    index: i32,
    count: i32,
}

impl Records {
    /// Prepares decoding of a whole batch (header included); decompresses the records.
    pub fn new(batch: Bytes) -> Result<Self, BatchError> {
        let h = BatchHeader::parse(&batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
        let end = h.size().min(batch.len());
        let payload = batch.slice(HEADER_LEN.min(end)..end);
        let data = match h.compression() {
            Some(Compression::None) => payload,
            Some(codec) => compression::decompress(codec, &payload, MAX_UNCOMPRESSED_BYTES)
                .map(Bytes::from)
                .map_err(|e| corrupt(format!("the {codec} payload does not decompress: {e}")))?,
            None => return Err(corrupt(format!("unknown compression codec {}", h.attributes & 0x07))),
        };
        Ok(Self {
            data,
            pos: 0,
            base_offset: h.first_offset(),
            base_ts: h.base_timestamp,
            append_ts: h.log_append_time().then_some(h.max_timestamp),
            index: 0,
            count: h.record_count.max(0),
        })
    }

    fn decode_one(&mut self) -> Result<Record, BatchError> {
        let i = self.index;
        let v = read_record(&self.data, self.pos).map_err(|e| corrupt(format!("record {i}: {e}")))?;
        let slice = |r: Option<std::ops::Range<usize>>| r.map(|r| self.data.slice(r));
        let mut headers = Vec::with_capacity(v.header_count as usize);
        for h in Headers::new(&self.data, &v) {
            let (k, value) = h.ok_or_else(|| corrupt(format!("record {i}: malformed header")))?;
            let key = std::str::from_utf8(&self.data[k])
                .map_err(|_| corrupt(format!("record {i}: header key is not UTF-8")))?
                .to_owned();
            headers.push(Header { key, value: slice(value) });
        }
        let offset_delta =
            u64::try_from(v.offset_delta).map_err(|_| corrupt(format!("record {i}: negative offset delta")))?;
        self.pos = v.end;
        Ok(Record {
            offset: self.base_offset + offset_delta,
            timestamp_ms: self.append_ts.unwrap_or(self.base_ts.wrapping_add(v.timestamp_delta)),
            key: slice(v.key),
            value: slice(v.value),
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            if self.pos < self.data.len() {
                self.pos = self.data.len();
                return Some(Err(corrupt(format!("bytes after the last of {} records", self.count))));
            }
            return None;
        }
        let r = self.decode_one();
        self.index += 1;
        if r.is_err() {
            self.index = self.count;
            self.pos = self.data.len();
        }
        Some(r)
    }
}
