//! Idempotent-producer state of one partition, with the semantics of Kafka's
//! `ProducerStateManager` / `ProducerAppendInfo`: per producer id, the current epoch and
//! the last [`MAX_CACHED_BATCHES`] batches (first and last sequence, offsets), so that a
//! retried batch is answered with its original offset and a gap or an old epoch is
//! refused. Pure: no I/O; [`persist`] snapshots it into sled and rebuilds it from the log.
//!
//! The rules, checked by [`ProducerStateManager::check`] before an append:
//! - a batch without a producer id (-1) is not checked at all;
//! - a producer this partition has no state for is accepted with any sequence (as Kafka
//!   does: its earlier batches may have been deleted by retention);
//! - an epoch below the producer's current one is fenced;
//! - a newer epoch must start at sequence 0;
//! - in the current epoch, a batch with the first and last sequence of one of the cached
//!   batches is a duplicate; one starting right after the last batch (sequences wrap from
//!   `i32::MAX` to 0) is appended; anything else is out of order.

pub mod persist;
mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use sluice_core::{BatchInfo, batch::BatchHeader};

pub use snapshot::SnapshotError;

/// Batches remembered per producer (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`);
/// also the most batches an idempotent client may have in flight per partition.
pub const MAX_CACHED_BATCHES: usize = 5;

/// Kafka's default `producer.id.expiration.ms`: state of a producer silent this long is
/// dropped.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// The idempotence fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

impl ProducerBatch {
    /// The batch's producer fields; `None` for a batch without a producer id.
    pub fn of(info: &BatchInfo) -> Option<Self> {
        (info.producer_id >= 0).then_some(Self {
            producer_id: info.producer_id,
            epoch: info.producer_epoch,
            base_sequence: info.base_sequence,
            record_count: info.record_count,
        })
    }

    fn of_header(h: &BatchHeader) -> Option<Self> {
        (h.producer_id >= 0).then_some(Self {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            record_count: h.record_count.max(1) as u32,
        })
    }

    /// Sequence of the last record (Kafka's `DefaultRecordBatch.lastSequence`).
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.record_count.saturating_sub(1) as i32)
    }
}

/// `sequence + by`, wrapping from `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, by: i32) -> i32 {
    if sequence > i32::MAX - by { by - (i32::MAX - sequence) - 1 } else { sequence + by }
}

/// Whether `next` is the sequence right after `last` (Kafka's `ProducerAppendInfo.inSequence`).
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// One appended batch as the state remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// What the partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`MAX_CACHED_BATCHES`].
    pub batches: VecDeque<BatchMetadata>,
    /// When its last batch was appended (ms since the Unix epoch), for expiration.
    pub last_append_ms: i64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it, then [`ProducerStateManager::record`] it.
    Append,
    /// A retry of a batch already stored: answer with its offsets, store nothing.
    Duplicate { base_offset: u64, last_offset: u64 },
}

/// Why a batch is refused. The messages say what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error(
        "producer {producer_id} (epoch {epoch}) sent a batch starting at sequence {got}, but the next sequence \
         expected is {expected}: a batch in between is missing. The producer must resend from the first \
         unacknowledged batch, or restart to get a new producer id"
    )]
    OutOfOrder { producer_id: i64, epoch: i16, expected: i32, got: i32 },
    #[error(
        "producer {producer_id} started epoch {epoch} at sequence {got}; a new epoch must start at sequence 0 \
         (the current epoch is {current})"
    )]
    NewEpochNotAtZero { producer_id: i64, epoch: i16, current: i16, got: i32 },
    #[error(
        "producer {producer_id} is fenced: its epoch {epoch} is older than the current epoch {current}, so another \
         instance has taken over this producer id. Stop this instance"
    )]
    Fenced { producer_id: i64, epoch: i16, current: i16 },
}

impl SequenceError {
    /// True for the fenced refusal (Kafka's INVALID_PRODUCER_EPOCH), false for the
    /// out-of-order ones (OUT_OF_ORDER_SEQUENCE_NUMBER).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}

/// The idempotent-producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producers with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides what to do with `batch` (see the module documentation). Changes nothing.
    pub fn check(&self, batch: &ProducerBatch) -> Result<Check, SequenceError> {
        let Some(e) = self.producers.get(&batch.producer_id) else { return Ok(Check::Append) };
        let (producer_id, epoch, got) = (batch.producer_id, batch.epoch, batch.base_sequence);
        if epoch < e.epoch {
            return Err(SequenceError::Fenced { producer_id, epoch, current: e.epoch });
        }
        if epoch > e.epoch {
            if got != 0 {
                return Err(SequenceError::NewEpochNotAtZero { producer_id, epoch, current: e.epoch, got });
            }
            return Ok(Check::Append);
        }
        let last_sequence = batch.last_sequence();
        if let Some(m) = e.batches.iter().find(|m| m.first_sequence == got && m.last_sequence == last_sequence) {
            return Ok(Check::Duplicate { base_offset: m.base_offset, last_offset: m.last_offset });
        }
        match e.batches.back() {
            // No batch kept (a snapshot of a producer whose batches expired): any sequence.
            None => Ok(Check::Append),
            Some(last) if in_sequence(last.last_sequence, got) => Ok(Check::Append),
            Some(last) => Err(SequenceError::OutOfOrder {
                producer_id,
                epoch,
                expected: increment_sequence(last.last_sequence, 1),
                got,
            }),
        }
    }

    /// Remembers a batch appended at `base_offset` at `append_ms`. A newer epoch
    /// replaces the producer's batches.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: u64, append_ms: i64) {
        let e = self.producers.entry(batch.producer_id).or_insert_with(|| ProducerEntry {
            epoch: batch.epoch,
            batches: VecDeque::with_capacity(MAX_CACHED_BATCHES),
            last_append_ms: append_ms,
        });
        if batch.epoch != e.epoch {
            e.epoch = batch.epoch;
            e.batches.clear();
        }
        e.batches.push_back(BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
            last_offset: base_offset + u64::from(batch.record_count.max(1)) - 1,
        });
        while e.batches.len() > MAX_CACHED_BATCHES {
            e.batches.pop_front();
        }
        e.last_append_ms = e.last_append_ms.max(append_ms);
    }

    /// Rebuild from the log: remembers a stored batch (a header with its base offset
    /// written) without checking it, as Kafka does when it reloads a log. Batches
    /// without a producer id, and batches of an epoch older than the producer's current
    /// one, change nothing.
    pub fn replay(&mut self, header: &BatchHeader) {
        let Some(batch) = ProducerBatch::of_header(header) else { return };
        if self.producers.get(&batch.producer_id).is_some_and(|e| batch.epoch < e.epoch) {
            return;
        }
        self.record(&batch, header.first_offset(), header.max_timestamp);
    }

    /// Drops the state of producers that appended nothing for `max_age_ms` before
    /// `now_ms` (Kafka's `producer.id.expiration.ms`). Returns how many were dropped.
    pub fn remove_expired(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| now_ms.saturating_sub(e.last_append_ms) < max_age_ms);
        before - self.producers.len()
    }
}
