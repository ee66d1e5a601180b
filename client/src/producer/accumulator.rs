//! The producer's accumulator: which batch a record joins, when a batch is sealed (by
//! size, by linger, or by a flush), and the accounting of sealed bytes that
//! `buffer_memory` back-pressure reads. Pure: time comes in as `Instant`s, and whoever
//! completes a batch is a type parameter, so the rules are tested without a runtime or
//! a socket. The sender task that drains it lives in `sender.rs`.
//!
//! With an idempotent producer, sealing writes the producer id, epoch and the
//! partition's next sequence into the batch (Kafka's producer assigns sequences when a
//! batch is drained; here sealing fixes the send order, so the two agree).

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use sluice_core::{BatchBuilder, BatchError, Compression, Header};

/// `sequence + by`, wrapping from `i32::MAX` to 0 as Kafka's sequences do.
pub(crate) fn increment_sequence(sequence: i32, by: i32) -> i32 {
    if sequence > i32::MAX - by { by - (i32::MAX - sequence) - 1 } else { sequence + by }
}

/// What a batch carries to its completion, and what it hands each record that joins it
/// (the producer: a oneshot sender, and the shared receiver every delivery future polls).
pub(crate) trait Completion {
    type Ticket;
    fn ticket(&self) -> Self::Ticket;
    /// The batch could not be encoded (compression failed): its records fail with this.
    fn fail(self, error: BatchError);
}

/// Bytes and batches sealed and not yet completed, over every partition of a producer.
/// Sealing adds (under the partition's lock, before a sender can take the batch), so a
/// completion never subtracts what was not yet added.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    bytes: AtomicUsize,
    batches: AtomicUsize,
}

impl InFlight {
    fn sealed(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.batches.fetch_add(1, Ordering::AcqRel);
    }

    /// A sealed batch of `bytes` was acknowledged or failed.
    pub(crate) fn completed(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.batches.fetch_sub(1, Ordering::AcqRel);
    }

    /// True while more than `buffer_memory` bytes are sealed and not completed: `send`
    /// waits.
    pub(crate) fn exceeds(&self, buffer_memory: usize) -> bool {
        self.bytes.load(Ordering::Acquire) > buffer_memory
    }

    /// Batches sealed and not completed (`flush` waits for 0).
    pub(crate) fn batches(&self) -> usize {
        self.batches.load(Ordering::Acquire)
    }
}

/// A record as the accumulator sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

/// Where an appended record went.
#[derive(Debug)]
pub(crate) struct Appended<T> {
    /// The ticket of the batch it joined.
    pub ticket: T,
    /// Its position in that batch (its offset is the batch's base offset plus this).
    pub index: u32,
    /// Bytes sealed by this append (the batch before it, its own, or both).
    pub sealed_bytes: usize,
    /// True when the record opened a new batch.
    pub opened: bool,
}

#[derive(Debug)]
struct OpenBatch<D> {
    builder: BatchBuilder,
    /// When its first record arrived; linger counts from here.
    started: Instant,
    done: D,
}

/// A batch ready to send.
#[derive(Debug)]
pub(crate) struct SealedBatch<D> {
    pub bytes: Bytes,
    pub done: D,
    /// Position in the partition's send order (0, 1, …).
    pub order: u64,
    /// When its first record was appended: the delivery timeout counts from here.
    pub created: Instant,
}

/// What the sender of a partition should do next.
#[derive(Debug)]
pub(crate) enum Next<D> {
    Send(SealedBatch<D>),
    /// The open batch lingers until then.
    WaitUntil(Instant),
    /// Nothing to send.
    Wait,
}

/// One partition's batches: the open one records join, and sealed ones in send order.
#[derive(Debug)]
pub(crate) struct PartitionBatches<D> {
    open: Option<OpenBatch<D>>,
    sealed: VecDeque<SealedBatch<D>>,
    /// Set by a flush: send the open batch without waiting for linger.
    flush_requested: bool,
    /// The idempotent producer's id and epoch, and the sequence of the next batch.
    producer: Option<(i64, i16)>,
    next_sequence: i32,
    /// Batches sealed so far.
    sealed_count: u64,
}

impl<D> Default for PartitionBatches<D> {
    fn default() -> Self {
        Self {
            open: None,
            sealed: VecDeque::new(),
            flush_requested: false,
            producer: None,
            next_sequence: 0,
            sealed_count: 0,
        }
    }
}

impl<D> PartitionBatches<D> {
    /// The batches of an idempotent producer: sealed batches carry `producer_id`,
    /// `epoch` and sequences from 0.
    pub(crate) fn idempotent(producer_id: i64, epoch: i16) -> Self {
        Self { producer: Some((producer_id, epoch)), ..Self::default() }
    }
}

impl<D: Completion> PartitionBatches<D> {
    /// Adds a record at `now`. A record that would take a non-empty batch past
    /// `batch_size` seals it and opens the next (`new_batch` makes its completion);
    /// a batch that reaches `batch_size` is sealed at once. A record larger than
    /// `batch_size` travels alone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        record: RecordParts<'_>,
        batch_size: usize,
        compression: Compression,
        now: Instant,
        in_flight: &InFlight,
        new_batch: impl FnOnce() -> D,
    ) -> Appended<D::Ticket> {
        let RecordParts { timestamp_ms, key, value, headers } = record;
        let size = BatchBuilder::record_size(timestamp_ms, key, value, headers);
        let mut sealed_bytes = 0;
        if self.open.as_ref().is_some_and(|o| !o.builder.is_empty() && o.builder.size_bytes() + size > batch_size) {
            sealed_bytes += self.seal(in_flight);
        }
        let opened = self.open.is_none();
        let open = self.open.get_or_insert_with(|| OpenBatch {
            // Large batch sizes grow the buffer as records come rather than up front.
            builder: BatchBuilder::new(compression, batch_size.min(1 << 20)),
            started: now,
            done: new_batch(),
        });
        let index = open.builder.len();
        open.builder.push(timestamp_ms, key, value, headers);
        let ticket = open.done.ticket();
        if open.builder.size_bytes() >= batch_size {
            sealed_bytes += self.seal(in_flight);
        }
        Appended { ticket, index, sealed_bytes, opened }
    }
}

impl<D> PartitionBatches<D> {
    /// The producer id and epoch batches are stamped with now.
    pub(crate) fn producer(&self) -> Option<(i64, i16)> {
        self.producer
    }

    /// Gives the partition a new producer identity after one of its batches failed for
    /// good: the broker's sequence for the old identity now has a hole no later batch can
    /// fill. Sealed batches not sent yet are re-stamped in order from sequence 0; the
    /// open batch gets the new identity when it is sealed.
    pub(crate) fn reset_producer(&mut self, producer_id: i64, epoch: i16) {
        self.producer = Some((producer_id, epoch));
        self.next_sequence = 0;
        for b in &mut self.sealed {
            let records = sluice_core::batch::peek(&b.bytes).map_or(0, |i| i.record_count as i32);
            let mut bytes = b.bytes.to_vec();
            sluice_core::batch::set_producer(&mut bytes, producer_id, epoch, self.next_sequence);
            b.bytes = bytes.into();
            self.next_sequence = increment_sequence(self.next_sequence, records);
        }
    }
}

impl<D: Completion> PartitionBatches<D> {
    /// Seals the open batch and asks the sender not to linger on the next one either,
    /// until it finds nothing to send.
    pub(crate) fn flush(&mut self, in_flight: &InFlight) {
        self.seal(in_flight);
        self.flush_requested = true;
    }

    /// What the sender does at `now`: the oldest sealed batch first; else the open
    /// batch once it has lingered `linger` (or a flush asked); else wait.
    pub(crate) fn next(&mut self, linger: Duration, now: Instant, in_flight: &InFlight) -> Next<D> {
        if let Some(b) = self.sealed.pop_front() {
            // The last batch a flush sealed is on its way and nothing came in since:
            // the flush is over, so records appended after it linger again (whether or
            // not the sender looks once more before they arrive).
            if self.sealed.is_empty() && self.open.is_none() {
                self.flush_requested = false;
            }
            return Next::Send(b);
        }
        let Some(open) = &self.open else {
            self.flush_requested = false;
            return Next::Wait;
        };
        let due = open.started + linger;
        if !self.flush_requested && now < due {
            return Next::WaitUntil(due);
        }
        self.seal(in_flight);
        self.flush_requested = false;
        match self.sealed.pop_front() {
            Some(b) => Next::Send(b),
            None => Next::Wait,
        }
    }

    /// Moves the open batch to the sealed queue (compressing it). Returns its size (0
    /// without one). A batch that cannot be encoded fails its records instead.
    fn seal(&mut self, in_flight: &InFlight) -> usize {
        let Some(mut open) = self.open.take() else { return 0 };
        let records = open.builder.len() as i32;
        if let Some((producer_id, epoch)) = self.producer {
            open.builder.set_producer(producer_id, epoch, self.next_sequence);
        }
        let bytes = match open.builder.finish() {
            Ok(bytes) => bytes,
            Err(e) => {
                open.done.fail(e);
                return 0;
            }
        };
        if self.producer.is_some() {
            self.next_sequence = increment_sequence(self.next_sequence, records);
        }
        let n = bytes.len();
        in_flight.sealed(n);
        self.sealed.push_back(SealedBatch { bytes, done: open.done, order: self.sealed_count, created: open.started });
        self.sealed_count += 1;
        n
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::batch::peek;

    use super::*;

    /// A batch's completion in tests: its number.
    #[derive(Debug, PartialEq, Eq)]
    struct Probe(u32);

    impl Completion for Probe {
        type Ticket = u32;
        fn ticket(&self) -> u32 {
            self.0
        }
        fn fail(self, error: BatchError) {
            panic!("batch {} failed to encode: {error}", self.0);
        }
    }

    /// Batches numbered 1, 2, … as they open.
    #[derive(Debug, Default)]
    struct Acc {
        batches: PartitionBatches<Probe>,
        in_flight: InFlight,
        opened: u32,
    }

    const VALUE: &[u8] = &[b'x'; 100];

    impl Acc {
        fn add(&mut self, value: &[u8], batch_size: usize, now: Instant) -> Appended<u32> {
            let record = RecordParts { timestamp_ms: 1, key: None, value: Some(value), headers: &[] };
            let n = self.opened + 1;
            let a = self.batches.append(record, batch_size, Compression::None, now, &self.in_flight, || Probe(n));
            self.opened += u32::from(a.opened);
            a
        }

        /// (batch number, records) of the batch the sender takes at `now`.
        fn take(&mut self, linger: Duration, now: Instant) -> Option<(u32, u32)> {
            match self.batches.next(linger, now, &self.in_flight) {
                Next::Send(b) => {
                    let records = peek(&b.bytes).expect("a batch").record_count;
                    self.in_flight.completed(b.bytes.len());
                    Some((b.done.0, records))
                }
                Next::WaitUntil(_) | Next::Wait => None,
            }
        }
    }

    /// Bytes of a batch of `n` records of [`VALUE`] (what `batch_size` is compared to).
    fn batch_of(n: usize) -> usize {
        let mut b = BatchBuilder::default();
        for _ in 0..n {
            b.push(1, None, Some(VALUE), &[]);
        }
        b.size_bytes()
    }

    #[test]
    fn records_join_the_open_batch_until_the_next_would_not_fit() {
        let t0 = Instant::now();
        let mut acc = Acc::default();
        // Room for three records but not four (record_size is an upper bound).
        let size = batch_of(3) + 20;
        let got: Vec<(u32, u32, bool)> = (0..7)
            .map(|_| {
                let a = acc.add(VALUE, size, t0);
                (a.ticket, a.index, a.opened)
            })
            .collect();
        assert_eq!(
            got,
            [(1, 0, true), (1, 1, false), (1, 2, false), (2, 0, true), (2, 1, false), (2, 2, false), (3, 0, true)]
        );
        let linger = Duration::from_secs(1);
        assert_eq!(acc.take(linger, t0), Some((1, 3)), "a full batch goes at once");
        assert_eq!(acc.take(linger, t0), Some((2, 3)), "in order");
        assert_eq!(acc.take(linger, t0), None, "the third lingers");
    }

    #[test]
    fn a_batch_that_reaches_the_size_is_sealed_at_once_and_a_large_record_travels_alone() {
        let t0 = Instant::now();
        let mut acc = Acc::default();
        let one = batch_of(1);
        let a = acc.add(VALUE, one, t0);
        assert_eq!((a.ticket, a.sealed_bytes), (1, one), "the record filled its batch");
        let size = batch_of(2) + 20;
        let b = acc.add(VALUE, size, t0);
        assert_eq!((b.ticket, b.opened, b.sealed_bytes), (2, true, 0));
        // It seals the open batch, then its own.
        let big = vec![b'y'; 4 * size];
        let c = acc.add(&big, size, t0);
        assert_eq!((c.ticket, c.index, c.opened), (3, 0, true));
        assert!(c.sealed_bytes > one + 4 * size, "{}", c.sealed_bytes);
        assert_eq!(acc.add(VALUE, size, t0).ticket, 4);
        let linger = Duration::from_secs(1);
        assert_eq!(acc.take(linger, t0), Some((1, 1)));
        assert_eq!(acc.take(linger, t0), Some((2, 1)));
        assert_eq!(acc.take(linger, t0), Some((3, 1)));
        assert_eq!(acc.take(linger, t0), None);
    }

    #[test]
    fn the_open_batch_lingers_from_its_first_record() {
        let t0 = Instant::now();
        let linger = Duration::from_millis(5);
        let mut acc = Acc::default();
        acc.add(VALUE, 1 << 20, t0);
        acc.add(VALUE, 1 << 20, t0 + Duration::from_millis(4));
        match acc.batches.next(linger, t0 + Duration::from_millis(4), &acc.in_flight) {
            Next::WaitUntil(due) => assert_eq!(due, t0 + linger, "a later record does not extend the wait"),
            other => panic!("expected to linger, got {other:?}"),
        }
        assert_eq!(acc.take(linger, t0 + linger), Some((1, 2)));
        assert!(matches!(acc.batches.next(linger, t0 + linger, &acc.in_flight), Next::Wait));
        // Linger 0: a batch goes as soon as the sender looks.
        acc.add(VALUE, 1 << 20, t0);
        assert_eq!(acc.take(Duration::ZERO, t0), Some((2, 1)));
    }

    #[test]
    fn a_flush_sends_without_lingering_until_the_queue_is_empty() {
        let t0 = Instant::now();
        let linger = Duration::from_secs(60);
        let mut acc = Acc::default();
        acc.add(VALUE, 1 << 20, t0);
        acc.batches.flush(&acc.in_flight);
        // A record after the flush opens a batch that is sent at once too.
        acc.add(VALUE, 1 << 20, t0);
        assert_eq!(acc.take(linger, t0), Some((1, 1)));
        assert_eq!(acc.take(linger, t0), Some((2, 1)));
        assert_eq!(acc.take(linger, t0), None);
        // Once the sender found nothing to send, linger applies again.
        acc.add(VALUE, 1 << 20, t0);
        assert_eq!(acc.take(linger, t0), None);
        assert_eq!(acc.take(linger, t0 + linger), Some((3, 1)));
    }

    #[test]
    fn records_appended_after_a_flush_was_sent_linger_again() {
        let t0 = Instant::now();
        let linger = Duration::from_secs(60);
        let mut acc = Acc::default();
        acc.add(VALUE, 1 << 20, t0);
        acc.batches.flush(&acc.in_flight);
        assert_eq!(acc.take(linger, t0), Some((1, 1)), "the flushed batch goes at once");
        // The next records arrive before the sender looks again: they wait for linger
        // (one batch per flush, as a caller that flushes per batch expects).
        acc.add(VALUE, 1 << 20, t0);
        acc.add(VALUE, 1 << 20, t0);
        assert_eq!(acc.take(linger, t0), None);
        assert_eq!(acc.take(linger, t0 + linger), Some((2, 2)));
    }

    #[test]
    fn an_idempotent_producers_batches_carry_consecutive_sequences_in_send_order() {
        let t0 = Instant::now();
        let mut acc = Acc { batches: PartitionBatches::idempotent(9 << 40, 2), ..Acc::default() };
        acc.batches.next_sequence = i32::MAX - 2;
        let size = batch_of(2) + 20;
        for _ in 0..5 {
            acc.add(VALUE, size, t0);
        }
        acc.batches.flush(&acc.in_flight);
        let mut got = Vec::new();
        while let Next::Send(b) = acc.batches.next(Duration::ZERO, t0, &acc.in_flight) {
            let info = peek(&b.bytes).expect("a batch");
            got.push((b.order, info.producer_id, info.producer_epoch, info.base_sequence, info.record_count));
            acc.in_flight.completed(b.bytes.len());
        }
        // Sequences wrap from i32::MAX to 0.
        let pid = 9 << 40;
        assert_eq!(got, [(0, pid, 2, i32::MAX - 2, 2), (1, pid, 2, i32::MAX, 2), (2, pid, 2, 1, 1)]);
        let mut plain = Acc::default();
        plain.add(VALUE, 1 << 20, t0);
        plain.batches.flush(&plain.in_flight);
        let Next::Send(b) = plain.batches.next(Duration::ZERO, t0, &plain.in_flight) else { panic!("a batch") };
        let info = peek(&b.bytes).expect("a batch");
        assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (-1, -1, -1));
    }

    #[test]
    fn a_sealed_batch_remembers_when_its_first_record_arrived() {
        // The delivery timeout counts from here, not from when the batch is sent.
        let t0 = Instant::now();
        let mut acc = Acc::default();
        acc.add(VALUE, 1 << 20, t0);
        acc.add(VALUE, 1 << 20, t0 + Duration::from_secs(3));
        acc.batches.flush(&acc.in_flight);
        let Next::Send(b) = acc.batches.next(Duration::ZERO, t0 + Duration::from_secs(9), &acc.in_flight) else {
            panic!("a batch")
        };
        assert_eq!(b.created, t0);
    }

    #[test]
    fn sealed_bytes_are_accounted_until_completed() {
        let t0 = Instant::now();
        let mut acc = Acc::default();
        let size = batch_of(1);
        acc.add(VALUE, size, t0);
        acc.add(VALUE, size, t0);
        assert_eq!(acc.in_flight.batches(), 2);
        assert!(acc.in_flight.exceeds(2 * size - 1));
        assert!(!acc.in_flight.exceeds(2 * size));
        // The open batch does not count: only sealed ones hold buffer memory.
        acc.add(&VALUE[..10], 1 << 20, t0);
        assert_eq!(acc.in_flight.batches(), 2);
        assert_eq!(acc.take(Duration::from_secs(1), t0), Some((1, 1)));
        assert_eq!(acc.in_flight.batches(), 1);
        assert!(!acc.in_flight.exceeds(size));
        assert_eq!(acc.take(Duration::from_secs(1), t0), Some((2, 1)));
        assert_eq!(acc.in_flight.batches(), 0);
        assert!(!acc.in_flight.exceeds(0));
    }
}
