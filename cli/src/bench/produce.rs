//! `sluice bench produce`: producer throughput and per-record acknowledgement latency.

use std::sync::{Arc, atomic::AtomicU64};

use super::{
    args::{ProduceArgs, Stop},
    load::{self, Clock},
    progress::Progress,
    report::{LatencyKind, Report, mode, rates},
    session::Session,
};

/// Records sent when neither `--count` nor `--duration` is given.
pub const DEFAULT_COUNT: u64 = 1_000_000;

/// Runs the produce workload. Returns the report and the payload bytes written.
pub async fn run(args: &ProduceArgs, session: &Session) -> anyhow::Result<(Report, u64)> {
    let c = &args.common;
    let stop = c.stop(Stop::Count(DEFAULT_COUNT));
    let spec = session.load(c, stop, args.rate, false, Clock::new());
    let sent = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("produce", stop, sent.clone());
    let out = load::run(spec, sent).await?;
    drop(progress);

    let (records_per_sec, mb_per_sec) = rates(out.acked, c.record_size, out.elapsed);
    let mut report = session.report("produce", c);
    report.records = out.acked;
    report.rate = args.rate;
    report.elapsed_s = out.elapsed.as_secs_f64();
    report.records_per_sec = records_per_sec;
    report.mb_per_sec = mb_per_sec;
    report.latency = out.latency.summary(LatencyKind::Ack, &mode(args.rate));
    report.errors = out.errors;
    report.first_error = out.first_error;
    report.notes.push(
        "ack latency of every record: from its send (fixed rate: its scheduled send) to when the bench \
         sees its acknowledgement"
            .into(),
    );
    if let Some(rate) = args.rate
        && records_per_sec < rate as f64 * 0.95
    {
        report.notes.push(format!("the target rate of {rate}/s was not reached"));
    }
    Ok((report, out.acked * c.record_size as u64))
}
