//! Kafka's RecordBatch v2 (magic 2), byte for byte: the unit a producer sends, the broker
//! stores, and a fetch returns, as specified in Kafka's documentation
//! (<https://kafka.apache.org/documentation/#recordbatch>) and implemented by Kafka's
//! `DefaultRecordBatch` and `DefaultRecord`.
//!
//! # Batch header (61 bytes, big-endian)
//!
//! | bytes | field | type | meaning |
//! |---|---|---|---|
//! | 0..8 | baseOffset | i64 | offset of the first record; 0 from a producer, written by the broker |
//! | 8..12 | batchLength | i32 | bytes that follow this field (the batch is `12 + batchLength` bytes) |
//! | 12..16 | partitionLeaderEpoch | i32 | leader epoch at append; -1 from a producer, written by the broker |
//! | 16 | magic | i8 | 2 ([`MAGIC`]) |
//! | 17..21 | crc | u32 | CRC-32C (Castagnoli) of bytes 21..end (attributes to the last record) |
//! | 21..23 | attributes | i16 | bits 0–2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd); bit 3 timestamp type (0 create time, 1 log append time); bit 4 transactional; bit 5 control; bit 6 delete horizon (compaction); the rest unused |
//! | 23..27 | lastOffsetDelta | i32 | offset delta of the last record (`recordCount - 1`) |
//! | 27..35 | baseTimestamp | i64 | timestamp of the first record, ms since the Unix epoch |
//! | 35..43 | maxTimestamp | i64 | largest record timestamp |
//! | 43..51 | producerId | i64 | idempotent producer id; -1 without one |
//! | 51..53 | producerEpoch | i16 | its epoch; -1 without one |
//! | 53..57 | baseSequence | i32 | sequence of the first record; -1 without one |
//! | 57..61 | recordCount | i32 | number of records |
//! | 61.. | records | | the records, compressed as a whole when the codec is not 0 |
//!
//! baseOffset and partitionLeaderEpoch lie outside the CRC, so the broker writes them
//! without re-encoding anything ([`set_base_offset`], [`set_partition_leader_epoch`]).
//!
//! # Record (v2)
//!
//! Every integer is a zig-zag varint ([`crate::varint`]); "varlong" is the 64-bit one.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | length | varint | bytes of the record after this field |
//! | attributes | i8 | unused, 0 |
//! | timestampDelta | varlong | timestamp minus the batch's baseTimestamp |
//! | offsetDelta | varint | offset minus baseOffset: 0, 1, … in order |
//! | keyLength | varint | -1 for a null key |
//! | key | bytes | |
//! | valueLength | varint | -1 for a null value |
//! | value | bytes | |
//! | headerCount | varint | |
//! | headers | | each: keyLength varint, key (UTF-8, not null), valueLength varint (-1 null), value |
//!
//! - [`BatchBuilder`] (module `builder`) encodes a batch, compressed or not.
//! - [`validate`] checks a batch as Kafka's `LogValidator` does before it is stored.
//! - [`Records`] decodes (and decompresses) the records of a batch.
//! - [`Batches`] iterates over batches laid back to back, as a fetch returns them.

mod builder;
mod iter;
mod record;
mod records;
mod validate;

#[cfg(test)]
mod tests;

pub use builder::BatchBuilder;
pub use iter::{Batch, Batches};
pub use records::Records;
pub use validate::validate;

use crate::compression::Compression;

/// The format version in byte 16.
pub const MAGIC: i8 = 2;
/// Size of the batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// baseOffset and batchLength: the bytes before what batchLength counts.
pub const LOG_OVERHEAD: usize = 12;
/// producerId, producerEpoch and baseSequence of a batch without an idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;
/// partitionLeaderEpoch as a producer writes it (the broker fills it in).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORD_COUNT_AT: usize = 57;

/// Attribute bits other than the codec.
pub const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
pub const TRANSACTIONAL_BIT: i16 = 1 << 4;
pub const CONTROL_BIT: i16 = 1 << 5;

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

pub(crate) fn corrupt(msg: impl Into<String>) -> BatchError {
    BatchError::Corrupt(msg.into())
}

/// The decoded 61-byte header of a batch (fields as in the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Decodes the header at the start of `b`, without checking it. `None` when `b` is
    /// shorter than [`HEADER_LEN`].
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            base_offset: i64_at(b, 0),
            batch_length: i32_at(b, LENGTH_AT),
            partition_leader_epoch: i32_at(b, EPOCH_AT),
            magic: b[MAGIC_AT] as i8,
            crc: i32_at(b, CRC_AT) as u32,
            attributes: i16_at(b, ATTRIBUTES_AT),
            last_offset_delta: i32_at(b, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(b, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(b, MAX_TIMESTAMP_AT),
            producer_id: i64_at(b, PRODUCER_ID_AT),
            producer_epoch: i16_at(b, PRODUCER_EPOCH_AT),
            base_sequence: i32_at(b, BASE_SEQUENCE_AT),
            record_count: i32_at(b, RECORD_COUNT_AT),
        })
    }

    /// Total size of the batch: [`LOG_OVERHEAD`] plus batchLength.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// The codec in attributes bits 0–2; `None` for an id Kafka does not define.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id((self.attributes & 0x07) as u8)
    }

    /// Whether the timestamps are the broker's log append time (attributes bit 3).
    pub fn log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// The offset of the first record (a stored batch's base offset is never negative).
    pub fn first_offset(&self) -> u64 {
        self.base_offset.max(0) as u64
    }

    /// Offset after the last record of the batch.
    pub fn next_offset(&self) -> u64 {
        self.first_offset() + self.record_count.max(0) as u64
    }
}

/// What the broker learns from a valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub compression: Compression,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchInfo {
    fn of(h: &BatchHeader, compression: Compression) -> Self {
        Self {
            record_count: h.record_count.max(0) as u32,
            first_timestamp_ms: h.base_timestamp,
            max_timestamp_ms: h.max_timestamp,
            compression,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
        }
    }
}

/// Reads the header of a batch without checking anything else. `None` if too short.
pub fn peek(batch: &[u8]) -> Option<BatchInfo> {
    let h = BatchHeader::parse(batch)?;
    Some(BatchInfo::of(&h, h.compression().unwrap_or_default()))
}

/// The CRC-32C a batch should carry: over attributes to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default())
}

/// Writes the base offset into a batch (outside the CRC). No-op on a short slice.
pub fn set_base_offset(batch: &mut [u8], offset: u64) {
    if let Some(b) = batch.get_mut(0..8) {
        b.copy_from_slice(&(offset as i64).to_be_bytes());
    }
}

/// Writes an idempotent producer's id, epoch and base sequence into a sealed batch and
/// recomputes its CRC (the three fields lie inside it). The producer does this when it
/// re-stamps batches not yet sent after a batch failed for good (Kafka's producer resets
/// sequences the same way). No-op on a batch shorter than a header.
pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    if batch.len() < HEADER_LEN {
        return;
    }
    batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&epoch.to_be_bytes());
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes the partition leader epoch into a batch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(b) = batch.get_mut(EPOCH_AT..EPOCH_AT + 4) {
        b.copy_from_slice(&epoch.to_be_bytes());
    }
}

fn i16_at(b: &[u8; HEADER_LEN], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8; HEADER_LEN], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8; HEADER_LEN], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
