//! The produce load shared by every workload: `producers` producers, each with its own
//! connection, sending records round-robin over the partitions, as fast as possible or
//! on a fixed-rate schedule, and measuring each record's acknowledgement latency.
//!
//! Fixed rate: record `i` (numbered over all producers) is due at
//! `start + i / rate`, and its latency is measured from that due time, not from when
//! it was actually sent. A broker stall therefore shows up in the latency of every
//! record that should have gone out during it (no coordinated omission). Sleeping
//! uses the tokio timer (1 ms resolution), so records leave in bursts of up to
//! 1 ms worth; their latency still counts from the due time.
//!
//! Acknowledgements are awaited off the sending path, by one task per producer and
//! partition. Awaiting them in send order there is exact, because a partition has one
//! request in flight at a time and its batches are acknowledged in order.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use sluice_client::{Client, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    task::{JoinHandle, JoinSet},
};

use super::{args::Stop, report::Latency};

/// A process-local time origin, so that a consumer can compute a record's end-to-end
/// latency from the nanoseconds the producer wrote into it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let origin = Instant::now();
        let origin_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        Self { origin, origin_unix_ns }
    }

    /// Nanoseconds from the origin to `t` (0 before the origin).
    pub fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// `t` as milliseconds since the Unix epoch.
    pub fn unix_ms(&self, t: Instant) -> i64 {
        ((self.origin_unix_ns + i128::from(self.nanos(t))) / 1_000_000) as i64
    }
}

/// When record `seq` is due at `rate` records per second, counted from the start.
pub fn due_after(seq: u64, rate: u64) -> Duration {
    let nanos = u128::from(seq) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The sequence numbers producer `index` of `producers` sends: `index`,
/// `index + producers`, ... so that together they send each number once.
pub fn share(index: u32, producers: u32, count: u64) -> impl Iterator<Item = u64> {
    (u64::from(index)..count).step_by(producers.max(1) as usize)
}

/// The partition record `seq` goes to.
pub fn partition_of(seq: u64, partitions: u32) -> u32 {
    (seq % u64::from(partitions.max(1))) as u32
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: String,
    pub topic: String,
    pub partitions: u32,
    pub producers: u32,
    pub record_size: usize,
    pub stop: Stop,
    /// Records per second over all producers; `None` for as fast as possible.
    pub rate: Option<u64>,
    pub config: ProducerConfig,
    /// Write each record's due time (nanoseconds since `clock`'s origin) into the first
    /// 8 bytes of its value, and use it as the record timestamp (end-to-end latency).
    pub stamp: bool,
    pub clock: Clock,
}

/// What a load achieved.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// When the first producer could start sending.
    pub started: Option<Instant>,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the start to the last acknowledgement.
    pub elapsed: Duration,
    pub latency: Latency,
}

impl LoadOutcome {
    fn absorb(&mut self, d: Drained) {
        self.acked += d.acked;
        self.errors += d.errors;
        if self.first_error.is_none() {
            self.first_error = d.first_error;
        }
        self.latency.merge(&d.latency);
    }
}

/// How often a producer publishes its count for the progress bar and lets other tasks
/// run (sending only waits when the producer's buffer is full).
const PUBLISH_EVERY: u64 = 256;

/// Runs the load; `sent` counts records as they are handed to the producers.
pub async fn run(spec: LoadSpec, sent: Arc<AtomicU64>) -> anyhow::Result<LoadOutcome> {
    let spec = Arc::new(spec);
    let mut producers = Vec::with_capacity(spec.producers as usize);
    for _ in 0..spec.producers {
        let client = Client::connect(&spec.addr).await?;
        producers.push(Producer::new(client, spec.config.clone()));
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, producer) in producers.into_iter().enumerate() {
        tasks.spawn(produce(spec.clone(), producer, index as u32, start, sent.clone()));
    }
    let mut outcome = LoadOutcome { started: Some(start), ..Default::default() };
    // Dropping the set on an error aborts the other producers.
    while let Some(done) = tasks.join_next().await {
        let (n, finished, drained) = done.context("producer task failed")??;
        outcome.sent += n;
        outcome.elapsed = outcome.elapsed.max(finished.duration_since(start));
        for d in drained {
            outcome.absorb(d);
        }
    }
    Ok(outcome)
}

type Pending = (Instant, DeliveryFuture);

/// One producer's share of the load. Returns records sent, when the last was
/// acknowledged, and what its acknowledgement tasks saw.
async fn produce(
    spec: Arc<LoadSpec>,
    producer: Producer,
    index: u32,
    start: Instant,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<(u64, Instant, Vec<Drained>)> {
    let payload = payload(spec.record_size);
    let mut acks: Vec<Option<UnboundedSender<Pending>>> = vec![None; spec.partitions as usize];
    let mut drains: Vec<JoinHandle<Drained>> = Vec::new();
    let (count, deadline) = match spec.stop {
        Stop::Count(n) => (n, None),
        Stop::Duration(d) => (u64::MAX, Some(start + d)),
    };
    let mut n = 0u64;
    for seq in share(index, spec.producers, count) {
        let due = match spec.rate {
            Some(rate) => {
                let due = start + due_after(seq, rate);
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                due
            }
            None => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
        };
        let partition = partition_of(seq, spec.partitions);
        let mut record = ProducerRecord::new(spec.topic.clone()).partition(partition);
        record = if spec.stamp {
            record.value(stamped(&payload, spec.clock.nanos(due))).timestamp_ms(spec.clock.unix_ms(due))
        } else {
            record.value(payload.clone())
        };
        let delivery = producer.send(record).await.context("send failed")?;
        let tx = acks[partition as usize].get_or_insert_with(|| {
            let (tx, rx) = unbounded_channel();
            drains.push(tokio::spawn(drain(rx)));
            tx
        });
        let _ = tx.send((due, delivery));
        n += 1;
        if n.is_multiple_of(PUBLISH_EVERY) {
            sent.fetch_add(PUBLISH_EVERY, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    }
    sent.fetch_add(n % PUBLISH_EVERY, Ordering::Relaxed);
    producer.flush().await;
    drop(acks);
    let mut drained = Vec::with_capacity(drains.len());
    for d in drains {
        drained.push(d.await.context("acknowledgement task failed")?);
    }
    let finished = drained.iter().filter_map(|d| d.last).max().unwrap_or_else(Instant::now);
    producer.close().await;
    Ok((n, finished, drained))
}

/// What one acknowledgement task saw.
#[derive(Debug, Default)]
struct Drained {
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Latency,
    last: Option<Instant>,
}

async fn drain(mut rx: UnboundedReceiver<Pending>) -> Drained {
    let mut d = Drained::default();
    while let Some((due, delivery)) = rx.recv().await {
        let result = delivery.await;
        let now = Instant::now();
        d.last = Some(now);
        match result {
            Ok(_) => {
                d.acked += 1;
                d.latency.record(now.saturating_duration_since(due));
            }
            Err(e) => {
                d.errors += 1;
                d.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    d
}

/// `size` bytes that do not compress to nothing (xorshift).
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// `payload` with `nanos` in its first 8 bytes (little-endian), when it has room.
pub fn stamped(payload: &Bytes, nanos: u64) -> Bytes {
    if payload.len() < 8 {
        return payload.clone();
    }
    let mut v = BytesMut::from(&payload[..]);
    v[..8].copy_from_slice(&nanos.to_le_bytes());
    v.freeze()
}

/// The nanoseconds [`stamped`] wrote, if the value has room for them.
pub fn stamp_of(value: &[u8]) -> Option<u64> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_records_evenly() {
        assert_eq!(due_after(0, 50_000), Duration::ZERO);
        assert_eq!(due_after(1, 50_000), Duration::from_micros(20));
        assert_eq!(due_after(50_000, 50_000), Duration::from_secs(1));
        // Integer arithmetic: no drift after many records at an awkward rate.
        assert_eq!(due_after(3_000_000_000, 3), Duration::from_secs(1_000_000_000));
        assert_eq!(due_after(10, 3), Duration::from_nanos(3_333_333_333));
        assert_eq!(due_after(7, 0), Duration::from_secs(7), "a zero rate is treated as 1/s");
    }

    #[test]
    fn producers_share_the_sequence_once() {
        let mut all: Vec<u64> = (0..3).flat_map(|i| share(i, 3, 10)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(share(1, 3, 10).collect::<Vec<_>>(), vec![1, 4, 7]);
    }

    #[test]
    fn partitions_are_used_round_robin() {
        let parts: Vec<u32> = (0..6).map(|s| partition_of(s, 4)).collect();
        assert_eq!(parts, vec![0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn stamps_round_trip() {
        let p = payload(100);
        let v = stamped(&p, 123_456_789);
        assert_eq!(v.len(), 100);
        assert_eq!(stamp_of(&v), Some(123_456_789));
        assert_eq!(&v[8..], &p[8..]);
        assert_eq!(stamped(&payload(4), 1).len(), 4);
        assert_eq!(stamp_of(&[1, 2, 3]), None);
    }

    #[test]
    fn clock_converts_to_unix_milliseconds() {
        let c = Clock { origin: Instant::now(), origin_unix_ns: 1_700_000_000_000_000_000 };
        let later = c.origin + Duration::from_millis(1500);
        assert_eq!(c.nanos(later), 1_500_000_000);
        assert_eq!(c.unix_ms(later), 1_700_000_001_500);
        if let Some(before) = c.origin.checked_sub(Duration::from_millis(1)) {
            assert_eq!(c.nanos(before), 0);
        }
    }
}
