//! [`PartitionStore`]: the log of one partition in Kafka's vocabulary. The broker's data
//! path and (later) replication call this; [`crate::PartitionLog`] implements it over
//! sled, and a different backend can implement it without changing its callers.
//!
//! The offsets of a partition, always `log start ≤ high watermark ≤ log end`:
//!
//! - **log start offset**: the first offset still stored; everything below was deleted
//!   (retention, `DeleteRecords`-style deletion). It only moves forward, except when a
//!   truncation removes the whole log (then the log restarts where it was truncated).
//! - **log end offset**: the offset the next appended record gets (one past the last
//!   stored record). It moves forward on append and back only on [`PartitionStore::truncate_to`].
//! - **high watermark**: one past the last record consumers may see. Records in
//!   `[log start, high watermark)` are visible; records at or above it are stored but
//!   not yet committed (not flushed for `durability=always`, or, with replication, not
//!   yet on every in-sync replica). It never exceeds the log end offset.

use bytes::Bytes;
use sluice_core::BatchInfo;
use tokio::sync::watch;

use crate::{error::Result, retention::RetentionLimits};

/// Offsets of a partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start: u64,
    pub log_end: u64,
    pub high_watermark: u64,
}

/// What an append stored: the batch's place in the log and what the index keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedBatch {
    /// The offset assigned to the first record (written into the batch's baseOffset).
    pub base_offset: u64,
    pub record_count: u32,
    /// The leader epoch written into the batch's partitionLeaderEpoch.
    pub leader_epoch: i32,
    pub max_timestamp_ms: i64,
    /// Bytes stored: the batch as the producer encoded it.
    pub size_bytes: u32,
}

impl AppendedBatch {
    /// Offset after the last record of the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// Result of a read: stored batches back to back (Kafka RecordBatch v2, each framed by
/// its batchLength), and the offsets at read time.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub batches: Bytes,
    pub offsets: LogOffsets,
}

/// The log of one partition: an ordered sequence of record batches with dense offsets.
///
/// Batches are stored and returned whole, as the client encoded them (Kafka's
/// RecordBatch v2), with only their base offset and partition leader epoch written in
/// (both outside the batch CRC).
pub trait PartitionStore: Send + Sync + std::fmt::Debug {
    /// The first offset still stored (see the module documentation).
    fn log_start_offset(&self) -> u64;

    /// The offset the next appended record gets.
    fn log_end_offset(&self) -> u64;

    /// One past the last record visible to consumers.
    fn high_watermark(&self) -> u64;

    /// All three offsets at one moment (`log_start ≤ high_watermark ≤ log_end`).
    fn offsets(&self) -> LogOffsets;

    /// A receiver that sees every change of the high watermark (for fetch long polls).
    fn watch_high_watermark(&self) -> watch::Receiver<u64>;

    /// Appends a validated batch at the log end offset, writing the assigned base offset
    /// and `leader_epoch` (the partition's leader epoch at append) into it. Appends are
    /// serialised per partition. The batch is not visible to consumers until
    /// [`Self::advance_high_watermark`] passes it.
    fn append(&self, batch: &[u8], info: BatchInfo, leader_epoch: i32) -> Result<AppendedBatch>;

    /// Makes records below `offset` visible to consumers. Never moves the high
    /// watermark backwards, nor above the log end offset.
    fn advance_high_watermark(&self, offset: u64);

    /// Reads whole batches starting with the one that contains `offset`, stopping at the
    /// high watermark or once `max_bytes` is reached (the first batch always comes
    /// whole). `offset` must be within `[log start, high watermark]`; at the high
    /// watermark the result is empty. Consumers skip records below their offset.
    fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult>;

    /// Like [`Self::read`], but up to the log end offset rather than the high watermark:
    /// what a follower fetches (it needs the uncommitted tail), and what rebuilds the
    /// producer state of a partition whose leadership moved here.
    fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<ReadResult>;

    /// A follower's append: stores one batch exactly as its leader wrote it (base offset
    /// and partition leader epoch already set, nothing assigned). Refuses a batch whose
    /// base offset is not the log end offset, whose epoch is older than the log's latest,
    /// or that fails its CRC or framing. Records a new epoch in the leader-epoch history.
    fn append_replica(&self, batch: &[u8]) -> Result<AppendedBatch>;

    /// The newest leader epoch that wrote into the log (`None`: none did).
    fn latest_epoch(&self) -> Option<i32>;

    /// OffsetForLeaderEpoch with KIP-279's semantics: the largest epoch `<= epoch` of
    /// the leader-epoch history and its end offset (the start of the next epoch, or the
    /// log end for the latest); `(-1, -1)` when no such epoch is known.
    fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64)>;

    /// The first visible offset whose record timestamp is at or after `ts_ms`, with that
    /// record's timestamp; `None` when no visible record is that recent.
    fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>>;

    /// Kafka's truncate: removes every batch holding a record at or after `offset`, so
    /// the log end offset becomes `offset` (or the base offset of the batch containing
    /// `offset`, which goes whole: batches are never split). The high watermark is
    /// lowered to the new log end if it was above; a truncation below the log start
    /// offset empties the log and restarts it at the new log end. Does nothing when
    /// `offset` is at or beyond the log end. Survives a crash half-way (finished on the
    /// next open). Returns the new log end offset.
    fn truncate_to(&self, offset: u64) -> Result<u64>;

    /// Advances the log start offset to `offset` and deletes every batch that ends at or
    /// before it (Kafka's DeleteRecords; also the compaction of internal topics).
    /// Refuses an offset above the high watermark. Returns the number of batches deleted.
    fn delete_records_before(&self, offset: u64) -> Result<u64>;

    /// Applies retention as of `now_ms`: deletes whole batches from the head as `limits`
    /// require (see [`crate::retention::plan`]), never a batch consumers cannot see yet,
    /// and advances the log start offset. Returns the number of batches deleted.
    fn apply_retention(&self, limits: RetentionLimits, now_ms: i64) -> Result<u64>;
}
