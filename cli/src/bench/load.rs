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
//! Acknowledgements are awaited off the sending path, see [`super::acks`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use sluice_client::{Client, Producer, ProducerConfig, ProducerRecord};
use tokio::task::JoinSet;

use super::{
    acks::{AckTracker, Drained},
    args::{Payload, Stop},
    report::Latency,
};

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
    pub payload: Payload,
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
/// At max throughput, records sent per clock read.
const CLOCK_REUSE: u32 = 16;

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

/// One producer's share of the load. Returns records sent, when the last was
/// acknowledged, and what its acknowledgement tasks saw.
async fn produce(
    spec: Arc<LoadSpec>,
    producer: Producer,
    index: u32,
    start: Instant,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<(u64, Instant, Vec<Drained>)> {
    let payload = payload(spec.payload, spec.record_size);
    let mut acks = AckTracker::new(spec.partitions);
    let (count, deadline) = match spec.stop {
        Stop::Count(n) => (n, None),
        Stop::Duration(d) => (u64::MAX, Some(start + d)),
    };
    let mut n = 0u64;
    let (mut now, mut clock_reuses) = (start, 0);
    for seq in share(index, spec.producers, count) {
        let due = match spec.rate {
            Some(rate) => {
                let due = start + due_after(seq, rate);
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                if due > Instant::now() {
                    acks.flush();
                    tokio::time::sleep_until(due.into()).await;
                }
                due
            }
            None => {
                // Records go out microseconds apart, so one clock read serves a few
                // of them (their latency is over-stated by at most those
                // microseconds); it is read afresh after anything that waited.
                if clock_reuses == 0 {
                    now = Instant::now();
                    clock_reuses = CLOCK_REUSE;
                }
                clock_reuses -= 1;
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
        let send = producer.send(record);
        tokio::pin!(send);
        let delivery = match futures::poll!(&mut send) {
            Poll::Ready(r) => r,
            // The producer's buffer is full: let the acknowledgement tasks see what
            // was sent so far before waiting.
            Poll::Pending => {
                acks.flush();
                clock_reuses = 0;
                send.await
            }
        }
        .context("send failed")?;
        acks.push(partition, due, delivery);
        n += 1;
        if n.is_multiple_of(PUBLISH_EVERY) {
            sent.fetch_add(PUBLISH_EVERY, Ordering::Relaxed);
            acks.flush();
            clock_reuses = 0;
            tokio::task::yield_now().await;
        }
    }
    sent.fetch_add(n % PUBLISH_EVERY, Ordering::Relaxed);
    acks.flush();
    producer.flush().await;
    let drained = acks.finish().await.context("acknowledgement task failed")?;
    let finished = drained.iter().filter_map(|d| d.last).max().unwrap_or_else(Instant::now);
    producer.close().await;
    Ok((n, finished, drained))
}

/// `size` bytes of record value: random (xorshift, incompressible) or JSON-like.
fn payload(kind: Payload, size: usize) -> Bytes {
    match kind {
        Payload::Random => random(size),
        Payload::Json => json_like(size),
    }
}

/// A JSON event of about `size` bytes (cut or padded to exactly `size`): repeated field
/// names, a few varying numbers and words, as application events look.
fn json_like(size: usize) -> Bytes {
    const WORDS: [&str; 8] = ["checkout", "search", "login", "view", "cart", "pay", "refund", "logout"];
    let mut out = String::with_capacity(size + 128);
    let mut i = 0u64;
    while out.len() < size {
        let x = i.wrapping_mul(2_654_435_761) % 100_000;
        out.push_str(&format!(
            "{{\"event\":\"{}\",\"user_id\":{x},\"session\":\"s-{:05x}\",\"amount\":{}.{:02},\"ok\":{}}}",
            WORDS[(x % 8) as usize],
            x ^ 0x5a5a,
            x % 500,
            x % 100,
            !x.is_multiple_of(3)
        ));
        i += 1;
    }
    out.truncate(size);
    Bytes::from(out)
}

/// `size` bytes that do not compress (xorshift).
fn random(size: usize) -> Bytes {
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
        let p = payload(Payload::Random, 100);
        let v = stamped(&p, 123_456_789);
        assert_eq!(v.len(), 100);
        assert_eq!(stamp_of(&v), Some(123_456_789));
        assert_eq!(&v[8..], &p[8..]);
        assert_eq!(stamped(&payload(Payload::Random, 4), 1).len(), 4);
        let json = payload(Payload::Json, 300);
        assert_eq!(json.len(), 300);
        assert!(json.starts_with(b"{\"event\":\""), "{json:?}");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_record_is_acknowledged_once_by_the_null_server() {
        use sluice_client::{Admin, Client};
        let server = super::super::null_server::NullServer::start(50, 4096).await.expect("server");
        let addr = server.addr.to_string();
        let admin = Admin::new(Client::connect(&addr).await.expect("connect"));
        admin.create_topic("t", 3, Default::default()).await.expect("create");
        let spec = LoadSpec {
            addr: addr.clone(),
            topic: "t".into(),
            partitions: 3,
            producers: 2,
            record_size: 50,
            payload: Payload::Random,
            stop: Stop::Count(1000),
            rate: None,
            config: ProducerConfig { linger: Duration::from_millis(1), batch_size: 4096, ..Default::default() },
            stamp: true,
            clock: Clock::new(),
        };
        let sent = Arc::new(AtomicU64::new(0));
        let out = run(spec, sent.clone()).await.expect("load");
        assert_eq!((out.sent, out.acked, out.errors), (1000, 1000, 0));
        assert_eq!(sent.load(Ordering::Relaxed), 1000);
        assert_eq!(out.latency.summary(crate::bench::report::LatencyKind::Ack, "x").expect("samples").samples, 1000);
        let desc = admin.describe_topic("t").await.expect("describe");
        let ends: Vec<u64> = desc.partitions.iter().map(|p| p.high_watermark).collect();
        assert_eq!(ends, vec![334, 333, 333]);
        server.stop().await.expect("stop");
    }
}
