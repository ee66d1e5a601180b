//! `sluice bench consume`: fills the topic (unless it already holds data), then
//! measures one consumer reading all of it from the start.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_client::{Client, Consumer, ConsumerConfig, StartOffset};

use super::{
    args::{ConsumeArgs, Stop},
    load::{self, Clock},
    produce::DEFAULT_COUNT,
    progress::Progress,
    report::{Fill, Report, rates},
    session::{Session, records_in},
};

/// Give up when a consumer receives nothing for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the consume workload. Returns the report and the payload bytes written.
pub async fn run(args: &ConsumeArgs, session: &Session) -> anyhow::Result<(Report, u64)> {
    let c = &args.common;
    let mut report = session.report("consume", c);
    let existing = records_in(&session.addr, &session.topic).await?;
    let mut written = 0;
    let target = if existing > 0 && !session.created {
        report.fill = Some(Fill { filled_by_bench: false, records: existing, records_per_sec: 0.0, mb_per_sec: 0.0 });
        c.count.map_or(existing, |n| n.min(existing))
    } else {
        let stop = c.stop(Stop::Count(DEFAULT_COUNT));
        let sent = Arc::new(AtomicU64::new(0));
        let progress = Progress::start("fill", stop, sent.clone());
        let out = load::run(session.load(c, stop, None, false, Clock::new()), sent).await?;
        drop(progress);
        let (records_per_sec, mb_per_sec) = rates(out.acked, c.record_size, out.elapsed);
        report.fill = Some(Fill { filled_by_bench: true, records: out.acked, records_per_sec, mb_per_sec });
        report.errors = out.errors;
        report.first_error = out.first_error;
        written = out.acked * c.record_size as u64;
        records_in(&session.addr, &session.topic).await?
    };

    let mut consumer = Consumer::new(Client::connect(&session.addr).await?, ConsumerConfig::default());
    consumer.assign_topic(&session.topic, StartOffset::Earliest).await?;
    let read = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("consume", Stop::Count(target), read.clone());
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_seen = start;
    while records < target {
        let polled = consumer.poll(Duration::from_secs(1)).await?;
        if polled.is_empty() {
            if last_seen.elapsed() > STALL_TIMEOUT {
                anyhow::bail!(
                    "the consumer received nothing for {STALL_TIMEOUT:?} after {records} of {target} records"
                );
            }
            continue;
        }
        last_seen = Instant::now();
        records += polled.len() as u64;
        bytes += polled.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64)).sum::<u64>();
        read.store(records, Ordering::Relaxed);
    }
    let elapsed = last_seen.duration_since(start);
    drop(progress);

    let (records_per_sec, _) = rates(records, 0, elapsed);
    report.records = records;
    report.record_size = bytes.checked_div(records).unwrap_or(0) as usize;
    report.consumers = 1;
    report.elapsed_s = elapsed.as_secs_f64();
    report.records_per_sec = records_per_sec;
    report.mb_per_sec = bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    report.notes.push("one consumer, one fetch in flight per partition, CRC checks on (client defaults)".into());
    Ok((report, written))
}
