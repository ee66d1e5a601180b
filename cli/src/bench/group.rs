//! `sluice bench group`: fills a topic (unless it already holds data), reads all of it
//! with `consumers` consumers that are assigned a share of the partitions by hand, then
//! with as many members of one consumer group, and compares the two rates. The group's
//! time includes the joins and the rebalances they cause, as a group's start does.
//!
//! A phase is over when every record of the topic was read at least once; re-reads
//! (a partition that moves resumes from its last auto-commit) are counted apart.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use sluice_client::{
    Admin, AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, GroupAdmin, GroupConfig, GroupConsumer,
    StartOffset,
};
use tokio::task::JoinSet;

use super::{
    args::{GroupArgs, Stop},
    group_report::{GroupReport, ReadPhase},
    load::{self, Clock},
    progress::Progress,
    report::{Fill, rates},
    session::{Session, random_name, records_in},
};

/// Records written when neither `--count` nor `--duration` is given: 100,000 per
/// partition of the default topic.
pub const DEFAULT_COUNT: u64 = 1_600_000;
/// Partitions of the topic when `--partitions` is not given.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// Give up when a phase receives nothing for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Runs the group workload. Returns the report and the payload bytes written.
pub async fn run(args: &GroupArgs, session: &Session) -> anyhow::Result<(GroupReport, u64)> {
    let c = &args.common;
    let mut notes = Vec::new();
    let existing = records_in(&session.addr, &session.topic).await?;
    let (fill, written) = if existing > 0 && !session.created {
        (Fill { filled_by_bench: false, records: existing, records_per_sec: 0.0, mb_per_sec: 0.0 }, 0)
    } else {
        let stop = c.stop(Stop::Count(DEFAULT_COUNT));
        let sent = Arc::new(AtomicU64::new(0));
        let progress = Progress::start("fill", stop, sent.clone());
        let out = load::run(session.load(c, stop, None, false, Clock::new()), sent).await?;
        drop(progress);
        if out.errors > 0 {
            notes.push(format!(
                "{} records failed during the fill (first: {})",
                out.errors,
                out.first_error.as_deref().unwrap_or("?")
            ));
        }
        let (records_per_sec, mb_per_sec) = rates(out.acked, c.record_size, out.elapsed);
        (
            Fill { filled_by_bench: true, records: out.acked, records_per_sec, mb_per_sec },
            out.acked * c.record_size as u64,
        )
    };
    let ranges = partition_ranges(&session.addr, &session.topic).await?;

    let manual = read_manual(session, args.consumers, &ranges).await?;
    let group_id = random_name("bench-group");
    let grouped = read_group(args, session, &group_id, &ranges).await?;
    if !session.keep_topic
        && let Err(e) = GroupAdmin::new(Client::connect(&session.addr).await?).delete(&group_id).await
    {
        notes.push(format!("group '{group_id}' was not deleted: {e}"));
    }
    if args.consumers as usize > ranges.len() {
        notes.push(format!(
            "{} consumers on {} partitions: the manual phase leaves some consumers without partitions, the group \
             gives them nothing to read",
            args.consumers,
            ranges.len()
        ));
    }
    notes.push("each consumer has its own connection; one fetch in flight per partition (client defaults)".into());
    Ok((
        GroupReport {
            workload: "group",
            target: session.target.clone(),
            topic: session.topic.clone(),
            partitions: session.partitions,
            record_size: if fill.filled_by_bench {
                c.record_size
            } else {
                manual.bytes_read.checked_div(manual.records_read).unwrap_or(0) as usize
            },
            durability: session.durability.clone(),
            fill,
            group_vs_manual_pct: 100.0 * grouped.records_per_sec / manual.records_per_sec.max(1e-9),
            manual,
            group: grouped,
            strategy: args.strategy.to_string(),
            session_timeout_ms: args.session_timeout_ms,
            auto_commit_ms: args.auto_commit_ms,
            broker: None,
            notes,
        },
        written,
    ))
}

/// Log start and high watermark of each partition, by partition number.
async fn partition_ranges(addr: &str, topic: &str) -> anyhow::Result<Vec<(u64, u64)>> {
    let desc = Admin::new(Client::connect(addr).await?).describe_topic(topic).await?;
    let mut parts = desc.partitions;
    parts.sort_by_key(|p| p.partition);
    Ok(parts.iter().map(|p| (p.log_start_offset, p.high_watermark)).collect())
}

/// How far each partition has been read, over every consumer of a phase.
#[derive(Debug)]
struct Coverage {
    ranges: Vec<(u64, u64)>,
    /// Per partition: one past the highest offset received.
    next: Vec<AtomicU64>,
    /// Records received, re-reads included.
    read: Arc<AtomicU64>,
    /// Value bytes received, re-reads included.
    bytes: AtomicU64,
    last_seen: std::sync::Mutex<Instant>,
}

impl Coverage {
    fn new(ranges: &[(u64, u64)]) -> Arc<Self> {
        Arc::new(Self {
            ranges: ranges.to_vec(),
            next: ranges.iter().map(|(start, _)| AtomicU64::new(*start)).collect(),
            read: Arc::new(AtomicU64::new(0)),
            bytes: AtomicU64::new(0),
            last_seen: std::sync::Mutex::new(Instant::now()),
        })
    }

    fn saw(&self, records: &[ConsumerRecord]) {
        if records.is_empty() {
            return;
        }
        for r in records {
            if let Some(n) = self.next.get(r.partition as usize) {
                n.fetch_max(r.offset + 1, Ordering::AcqRel);
            }
        }
        self.read.fetch_add(records.len() as u64, Ordering::Relaxed);
        let bytes: u64 = records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64)).sum();
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn covers(&self, partition: usize) -> bool {
        self.next[partition].load(Ordering::Acquire) >= self.ranges[partition].1
    }

    fn complete(&self) -> bool {
        (0..self.ranges.len()).all(|p| self.covers(p))
    }

    fn total(&self) -> u64 {
        self.ranges.iter().map(|(start, end)| end - start).sum()
    }

    fn stalled(&self) -> bool {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).elapsed() > STALL_TIMEOUT
    }

    fn phase(&self, consumers: u32, elapsed: Duration) -> ReadPhase {
        let (records, records_read) = (self.total(), self.read.load(Ordering::Relaxed));
        let bytes_read = self.bytes.load(Ordering::Relaxed);
        let value_size = bytes_read.checked_div(records_read).unwrap_or(0) as usize;
        let (records_per_sec, mb_per_sec) = rates(records, value_size, elapsed);
        ReadPhase {
            consumers,
            records_read,
            bytes_read,
            records,
            elapsed_s: elapsed.as_secs_f64(),
            records_per_sec,
            mb_per_sec,
        }
    }
}

/// Waits for every task; the first error wins.
async fn join_all(mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut first = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done.context("a consumer task panicked").and_then(|r| r);
        if let (Err(e), None) = (outcome, &first) {
            first = Some(e);
            tasks.abort_all();
        }
    }
    first.map_or(Ok(()), Err)
}

/// Consumer `i` of `n` reads partitions `i, i + n, …` from the log start.
async fn read_manual(session: &Session, consumers: u32, ranges: &[(u64, u64)]) -> anyhow::Result<ReadPhase> {
    let coverage = Coverage::new(ranges);
    let progress = Progress::start("manual", Stop::Count(coverage.total()), coverage.read.clone());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..consumers {
        let mine: Vec<usize> = (i as usize..ranges.len()).step_by(consumers as usize).collect();
        let (addr, topic, coverage) = (session.addr.clone(), session.topic.clone(), coverage.clone());
        tasks.spawn(async move {
            let mut consumer = Consumer::new(Client::connect(&addr).await?, ConsumerConfig::default());
            for p in &mine {
                consumer.assign(&topic, *p as u32, StartOffset::Earliest).await?;
            }
            while !mine.iter().all(|p| coverage.covers(*p)) {
                coverage.saw(&consumer.poll(POLL).await?);
                if coverage.stalled() {
                    anyhow::bail!("manual consumers received nothing for {STALL_TIMEOUT:?}");
                }
            }
            Ok(())
        });
    }
    join_all(tasks).await?;
    let elapsed = start.elapsed();
    drop(progress);
    Ok(coverage.phase(consumers, elapsed))
}

/// `consumers` members of `group` read until every record was read once; then close.
async fn read_group(
    args: &GroupArgs,
    session: &Session,
    group: &str,
    ranges: &[(u64, u64)],
) -> anyhow::Result<ReadPhase> {
    let coverage = Coverage::new(ranges);
    let progress = Progress::start("group", Stop::Count(coverage.total()), coverage.read.clone());
    let config = GroupConfig {
        client_id: "sluice-bench".into(),
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        strategy: args.strategy,
        auto_commit_interval: Some(Duration::from_millis(args.auto_commit_ms)),
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..GroupConfig::default()
    };
    let start = Instant::now();
    let finished = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut tasks = JoinSet::new();
    for _ in 0..args.consumers {
        let (addr, topic, group, config) =
            (session.addr.clone(), session.topic.clone(), group.to_string(), config.clone());
        let (coverage, finished) = (coverage.clone(), finished.clone());
        tasks.spawn(async move {
            let client = Client::connect(&addr).await?;
            let mut member = GroupConsumer::subscribe(client, &[topic.as_str()], &group, config).await?;
            while !coverage.complete() {
                coverage.saw(&member.poll(POLL).await?);
                if coverage.stalled() {
                    anyhow::bail!("the group received nothing for {STALL_TIMEOUT:?}");
                }
            }
            finished.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
            member.close().await?;
            Ok(())
        });
    }
    join_all(tasks).await?;
    let end = finished.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(Instant::now);
    drop(progress);
    Ok(coverage.phase(args.consumers, end.duration_since(start)))
}
