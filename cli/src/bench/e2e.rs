//! `sluice bench e2e`: fixed-rate producers and one consumer; the latency of a record
//! is the time from its scheduled send to the consumer receiving it.
//!
//! The producer writes the scheduled send time, in nanoseconds since a process-local
//! origin, into the first 8 bytes of each value (and as milliseconds into the record
//! timestamp). Records shorter than 8 bytes fall back to the millisecond timestamp.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_client::{Client, Consumer, ConsumerConfig, StartOffset};

use super::{
    args::{E2eArgs, Stop},
    load::{self, Clock, stamp_of},
    progress::Progress,
    report::{Latency, LatencyKind, Report, mode, rates},
    session::Session,
};

/// After the last send, how long to wait for records still missing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default run length of e2e.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Runs the e2e workload. Returns the report and the payload bytes written.
pub async fn run(args: &E2eArgs, session: &Session) -> anyhow::Result<(Report, u64)> {
    let c = &args.common;
    let stop = c.stop(Stop::Duration(DEFAULT_DURATION));
    let clock = Clock::new();
    let mut consumer = Consumer::new(Client::connect(&session.addr).await?, ConsumerConfig::default());
    // Positions are fixed before the first send, so every record sent is read.
    consumer.assign_topic(&session.topic, StartOffset::Latest).await?;
    // u64::MAX until the producers know how many records were stored.
    let expected = AtomicU64::new(u64::MAX);
    let sent = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("e2e", stop, sent.clone());
    let produce = async {
        let out = load::run(session.load(c, stop, Some(args.rate), true, clock), sent).await;
        expected.store(out.as_ref().map_or(0, |o| o.acked), Ordering::Release);
        out
    };
    // The consumer runs in this task, concurrently with the producer tasks.
    let (out, received) = tokio::join!(produce, receive(consumer, clock, &expected));
    drop(progress);
    let (out, received) = (out?, received?);

    let start = out.started.unwrap_or_else(Instant::now);
    let elapsed = received.last.map_or(out.elapsed, |t| t.duration_since(start));
    let (records_per_sec, mb_per_sec) = rates(received.records, c.record_size, elapsed);
    let mut report = session.report("e2e", c);
    report.records = received.records;
    report.consumers = 1;
    report.rate = Some(args.rate);
    report.elapsed_s = elapsed.as_secs_f64();
    report.records_per_sec = records_per_sec;
    report.mb_per_sec = mb_per_sec;
    report.latency = received.latency.summary(LatencyKind::EndToEnd, &mode(Some(args.rate)));
    report.errors = out.errors;
    report.first_error = out.first_error;
    if received.records < out.acked {
        report.notes.push(format!(
            "{} acknowledged records were not received within {DRAIN_TIMEOUT:?} of the last send",
            out.acked - received.records
        ));
    }
    if c.record_size < 8 {
        report.notes.push("records under 8 bytes: latency from millisecond timestamps".into());
    }
    Ok((report, out.acked * c.record_size as u64))
}

#[derive(Debug)]
struct Received {
    records: u64,
    latency: Latency,
    last: Option<Instant>,
}

/// Reads until `expected` records arrived, or nothing arrived for [`DRAIN_TIMEOUT`]
/// once `expected` is known.
async fn receive(mut consumer: Consumer, clock: Clock, expected: &AtomicU64) -> anyhow::Result<Received> {
    let mut r = Received { records: 0, latency: Latency::new(), last: None };
    let mut quiet_since = Instant::now();
    loop {
        let want = expected.load(Ordering::Acquire);
        if r.records >= want {
            return Ok(r);
        }
        let polled = consumer.poll(Duration::from_millis(100)).await?;
        // Every record of a poll arrived together.
        let now = Instant::now();
        if polled.is_empty() {
            if want != u64::MAX && quiet_since.elapsed() > DRAIN_TIMEOUT {
                return Ok(r);
            }
            continue;
        }
        quiet_since = now;
        r.last = Some(now);
        let (now_ns, now_ms) = (clock.nanos(now), clock.unix_ms(now));
        for rec in &polled {
            let latency = match rec.value.as_deref().and_then(stamp_of) {
                Some(due_ns) => Duration::from_nanos(now_ns.saturating_sub(due_ns)),
                None => Duration::from_millis(now_ms.saturating_sub(rec.timestamp_ms).max(0) as u64),
            };
            r.latency.record(latency);
        }
        r.records += polled.len() as u64;
    }
}
