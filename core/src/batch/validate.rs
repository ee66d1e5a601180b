//! [`validate`]: the checks a broker makes before it stores a batch, those of Kafka's
//! `LogValidator` for a v2 batch from a client: size, header, CRC, codec and attribute
//! bits, offset range against the record count, timestamps, and the framing of every
//! record (decompressing a compressed batch for the check, without keeping the result).

use super::{
    BatchError, BatchHeader, BatchInfo, CONTROL_BIT, HEADER_LEN, LOG_OVERHEAD, MAGIC, TRANSACTIONAL_BIT, compute_crc,
    corrupt, record::read_record,
};
use crate::compression::{self, Compression, MAX_UNCOMPRESSED_BYTES};

/// Checks a batch as received from a producer; refuses it with an error that names the
/// field or the record at fault. A valid batch can be stored and served unchanged.
pub fn validate(batch: &[u8], max_message_bytes: usize) -> Result<BatchInfo, BatchError> {
    if batch.is_empty() {
        return Err(BatchError::Empty);
    }
    let h = BatchHeader::parse(batch)
        .ok_or_else(|| corrupt(format!("{} bytes is shorter than the {HEADER_LEN}-byte batch header", batch.len())))?;
    if h.magic != MAGIC {
        return Err(corrupt(format!("unknown magic byte {} (expected {MAGIC}: Kafka RecordBatch v2)", h.magic)));
    }
    if h.record_count == 0 {
        return Err(BatchError::Empty);
    }
    if h.record_count < 0 {
        return Err(corrupt(format!("negative record count {}", h.record_count)));
    }
    if batch.len() > max_message_bytes {
        return Err(if h.record_count == 1 {
            BatchError::RecordTooLarge { size: batch.len(), max: max_message_bytes }
        } else {
            BatchError::BatchTooLarge { size: batch.len(), max: max_message_bytes }
        });
    }
    let carried = batch.len() - LOG_OVERHEAD;
    if i64::from(h.batch_length) != carried as i64 {
        let hint = if (carried as i64) < i64::from(h.batch_length) {
            "truncated?"
        } else {
            "a produce request carries exactly one batch"
        };
        return Err(corrupt(format!(
            "header says a batch length of {} bytes, the batch carries {carried} ({hint})",
            h.batch_length
        )));
    }
    let actual = compute_crc(batch);
    if h.crc != actual {
        return Err(corrupt(format!("CRC mismatch: header {:#010x}, computed {actual:#010x}", h.crc)));
    }
    let codec = h.compression().ok_or_else(|| {
        corrupt(format!(
            "unknown compression codec {} (attributes {:#06x}; Kafka defines 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)",
            h.attributes & 0x07,
            h.attributes
        ))
    })?;
    check_attributes_and_producer(&h)?;
    let n = h.record_count;
    if h.last_offset_delta != n - 1 {
        return Err(corrupt(format!(
            "lastOffsetDelta is {}, but the batch holds {n} records (expected {})",
            h.last_offset_delta,
            n - 1
        )));
    }
    if h.base_timestamp < 0 {
        return Err(corrupt(format!("negative base timestamp {}", h.base_timestamp)));
    }
    if h.max_timestamp < h.base_timestamp {
        return Err(corrupt(format!(
            "max timestamp {} is before the base timestamp {}",
            h.max_timestamp, h.base_timestamp
        )));
    }
    let decompressed;
    let records = match codec {
        Compression::None => &batch[HEADER_LEN..],
        codec => {
            decompressed = compression::decompress(codec, &batch[HEADER_LEN..], MAX_UNCOMPRESSED_BYTES)
                .map_err(|e| corrupt(format!("the {codec} payload does not decompress: {e}")))?;
            &decompressed[..]
        }
    };
    check_records(&h, records)?;
    Ok(BatchInfo::of(&h, codec))
}

/// Kafka refuses from clients what only brokers write (control batches, log append
/// time), and a producer id without a sequence. Transactions are not built.
fn check_attributes_and_producer(h: &BatchHeader) -> Result<(), BatchError> {
    if h.attributes & CONTROL_BIT != 0 {
        return Err(corrupt("control batches (attributes bit 5) are written by brokers, not producers"));
    }
    if h.log_append_time() {
        return Err(corrupt("timestamp type LogAppendTime (attributes bit 3) is set by brokers, not producers"));
    }
    if h.attributes & TRANSACTIONAL_BIT != 0 {
        return Err(corrupt("transactional batches (attributes bit 4) are not supported"));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return Err(corrupt(format!(
            "producer id {} comes with base sequence {} (an idempotent batch needs a sequence)",
            h.producer_id, h.base_sequence
        )));
    }
    if h.producer_id >= 0 && h.producer_epoch < 0 {
        return Err(corrupt(format!(
            "producer id {} comes with producer epoch {} (an idempotent batch needs an epoch)",
            h.producer_id, h.producer_epoch
        )));
    }
    Ok(())
}

/// Every record's framing, offset deltas 0..n-1, non-negative timestamps whose maximum
/// is the header's, and no bytes after the last record.
fn check_records(h: &BatchHeader, records: &[u8]) -> Result<(), BatchError> {
    let n = h.record_count;
    let mut pos = 0;
    let mut max_ts = i64::MIN;
    for i in 0..n {
        if pos >= records.len() {
            return Err(corrupt(format!("header says {n} records, batch holds {i}")));
        }
        let r = read_record(records, pos).map_err(|e| corrupt(format!("record {i}: {e}")))?;
        if r.offset_delta != i {
            return Err(corrupt(format!(
                "record {i}: offset delta {}, expected {i} (offset deltas run 0..{} in order)",
                r.offset_delta,
                n - 1
            )));
        }
        let ts = h.base_timestamp.checked_add(r.timestamp_delta).filter(|ts| *ts >= 0).ok_or_else(|| {
            corrupt(format!(
                "record {i}: timestamp {} + {} is negative or overflows",
                h.base_timestamp, r.timestamp_delta
            ))
        })?;
        max_ts = max_ts.max(ts);
        pos = r.end;
    }
    if pos != records.len() {
        return Err(corrupt(format!(
            "header says {n} records, batch holds more ({} bytes after record {})",
            records.len() - pos,
            n - 1
        )));
    }
    if max_ts != h.max_timestamp {
        return Err(corrupt(format!(
            "max timestamp {} in the header, but the latest record timestamp is {max_ts}",
            h.max_timestamp
        )));
    }
    Ok(())
}
