//! The checking half of `sluice verify`: reads every partition from its log start to
//! the high watermark it had when the check began, then compares with what was
//! acknowledged (the definitions are in docs/verify.md).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sluice_client::{
    Admin, AutoOffsetReset, Client, Consumer, ConsumerConfig, StartOffset,
    proto::{ErrorCode, OffsetSpec},
};
use tracing::debug;

use super::{
    report::Counts,
    state::{self, State},
};

/// What one read of a partition returned at one offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A record of the producer being checked, with its sequence.
    Ours(u64),
    /// Anything else (another producer's record, or not written by `sluice verify`).
    Other,
}

/// Everything read from the topic.
#[derive(Debug, Default)]
pub struct ReadLog {
    /// (partition, offset) → what is stored there.
    at: HashMap<(u32, u64), Seen>,
    /// Records read, in each partition's offset order.
    order: Vec<(u32, u64)>,
    /// Partitions and the offset range read of each: (log start, end).
    pub ranges: Vec<(u32, u64, u64)>,
    /// True when the topic does not exist (everything acknowledged is lost).
    pub topic_missing: bool,
}

impl ReadLog {
    fn push(&mut self, partition: u32, offset: u64, seen: Seen) {
        if self.at.insert((partition, offset), seen).is_none() {
            self.order.push((partition, offset));
        }
    }
}

/// Reads every partition of the topic from its start to its end (as of now).
pub async fn read(client: Client, topic: &str, producer: &str, stall_limit: Duration) -> Result<ReadLog> {
    let mut log = ReadLog::default();
    let admin = Admin::new(client.clone());
    let partitions = match retry(stall_limit, "look up the topic", || admin.partition_count(topic)).await {
        Ok(n) => n,
        Err(e)
            if e.downcast_ref::<sluice_client::ClientError>().and_then(|e| e.kind())
                == Some(ErrorCode::UnknownTopicOrPartition) =>
        {
            0
        }
        Err(e) => return Err(e),
    };
    if partitions == 0 {
        eprintln!("verify: topic '{topic}' does not exist: nothing to read");
        log.topic_missing = true;
        return Ok(log);
    }
    let mut ends = HashMap::new();
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig { auto_offset_reset: AutoOffsetReset::Earliest, ..ConsumerConfig::default() },
    );
    for p in 0..partitions {
        let what = format!("find the offsets of partition {p}");
        let start = retry(stall_limit, &what, || admin.list_offset(topic, p, OffsetSpec::Earliest, 0)).await?.0;
        let end = retry(stall_limit, &what, || admin.list_offset(topic, p, OffsetSpec::Latest, 0)).await?.0;
        log.ranges.push((p, start, end));
        if end > start {
            ends.insert(p, end);
            consumer
                .assign(topic, p, StartOffset::Offset(start))
                .await
                .with_context(|| format!("cannot read partition {p}"))?;
        }
    }
    let total: u64 = log.ranges.iter().map(|(_, s, e)| e.saturating_sub(*s)).sum();
    eprintln!("verify: reading {total} records from {partitions} partitions");
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    let mut read = 0u64;
    while !ends.is_empty() {
        let records = match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => records,
            Err(e) if last_progress.elapsed() < stall_limit => {
                debug!(error = %e, "fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e).context("cannot read the topic"),
        };
        for r in &records {
            let Some(&end) = ends.get(&r.partition) else { continue };
            if r.offset >= end {
                continue;
            }
            let seen = match r.value.as_deref().and_then(state::parse_value) {
                Some((p, seq)) if p == producer => Seen::Ours(seq),
                _ => Seen::Other,
            };
            log.push(r.partition, r.offset, seen);
            read += 1;
        }
        if !records.is_empty() {
            last_progress = Instant::now();
        }
        for (p, end) in ends.clone() {
            if consumer.position(topic, p).is_some_and(|pos| pos >= end) {
                consumer.unassign(topic, p);
                ends.remove(&p);
            }
        }
        if last_progress.elapsed() >= stall_limit {
            let mut stuck: Vec<String> =
                ends.iter().map(|(p, end)| format!("{p} at {:?} of {end}", consumer.position(topic, *p))).collect();
            stuck.sort();
            bail!(
                "reading made no progress for {stall_limit:?}; partitions not read to their end: {}",
                stuck.join(", ")
            );
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("verify: read {read} of {total} records");
            last_report = Instant::now();
        }
    }
    Ok(log)
}

/// Retries `op` while it fails, for up to `limit`.
async fn retry<T, F, Fut>(limit: Duration, what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sluice_client::error::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == Some(ErrorCode::UnknownTopicOrPartition) => {
                return Err(anyhow::Error::new(e).context(format!("cannot {what}")));
            }
            Err(e) if Instant::now() < deadline => {
                debug!(error = %e, what, "retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot {what}"))),
        }
    }
}

/// Compares what was acknowledged with what was read.
pub fn compare(state: &State, log: &ReadLog) -> Counts {
    let mut counts = Counts {
        acked: state.acked.len() as u64,
        sent: state.sent,
        failed: state.failed.len() as u64,
        ..Counts::default()
    };
    // Where each of our sequences was read (every copy).
    let mut copies: HashMap<u64, Vec<(u32, u64)>> = HashMap::new();
    // Per partition: the highest sequence read so far, for reordering.
    let mut highest: HashMap<u32, u64> = HashMap::new();
    for &(partition, offset) in &log.order {
        counts.read += 1;
        let Some(Seen::Ours(seq)) = log.at.get(&(partition, offset)).copied() else {
            counts.other += 1;
            continue;
        };
        let places = copies.entry(seq).or_default();
        places.push((partition, offset));
        if places.len() == 2 {
            counts.duplicates += 1;
        }
        let top = highest.entry(partition).or_insert(seq);
        if places.len() == 1 && seq < *top {
            counts.reordered += 1;
        }
        *top = (*top).max(seq);
    }
    let mut claims: HashMap<(u32, u64), u32> = HashMap::new();
    for a in &state.acked {
        *claims.entry((a.partition, a.offset)).or_default() += 1;
    }
    let acked: HashSet<u64> = state.acked.iter().map(|a| a.seq).collect();
    for a in &state.acked {
        if !copies.contains_key(&a.seq) {
            counts.lost += 1;
            if counts.lost_examples.len() < 10 {
                counts.lost_examples.push(*a);
            }
            continue;
        }
        let holds_it = log.at.get(&(a.partition, a.offset)) == Some(&Seen::Ours(a.seq));
        if !holds_it || claims.get(&(a.partition, a.offset)).copied().unwrap_or(0) > 1 {
            counts.offsets_reused += 1;
        }
    }
    counts.unacked_seen = copies.keys().filter(|seq| !acked.contains(seq)).count() as u64;
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::verify::state::Acked;

    fn state(acked: &[(u64, u32, u64)], failed: &[u64]) -> State {
        let mut s = State::new("t", "p", 1, 0);
        s.acked = acked.iter().map(|&(seq, partition, offset)| Acked { seq, partition, offset }).collect();
        s.failed = failed.to_vec();
        s.sent = (s.acked.len() + failed.len()) as u64;
        s
    }

    fn log(records: &[(u32, u64, Seen)]) -> ReadLog {
        let mut l = ReadLog::default();
        for &(p, o, s) in records {
            l.push(p, o, s);
        }
        l
    }

    #[test]
    fn a_clean_log_counts_nothing() {
        let s = state(&[(0, 0, 0), (1, 1, 0), (2, 0, 1)], &[3]);
        let l = log(&[(0, 0, Seen::Ours(0)), (0, 1, Seen::Ours(2)), (1, 0, Seen::Ours(1)), (1, 1, Seen::Ours(3))]);
        let c = compare(&s, &l);
        assert_eq!((c.acked, c.lost, c.duplicates, c.reordered, c.offsets_reused), (3, 0, 0, 0, 0));
        assert_eq!((c.failed, c.unacked_seen, c.read, c.other), (1, 1, 4, 0));
        assert!(c.clean());
    }

    #[test]
    fn lost_duplicated_reordered_and_reused_are_told_apart() {
        // 0..5 acknowledged in partition 0 at offsets 0..5.
        let s = state(&[(0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 0, 3), (4, 0, 4)], &[]);
        let l = log(&[
            (0, 0, Seen::Ours(0)),
            (0, 1, Seen::Ours(2)), // 1 is not here: its offset holds 2 (reused)…
            (0, 2, Seen::Ours(1)), // …and 1 comes after 2 (reordered); 2's offset holds 1 (reused).
            (0, 3, Seen::Ours(0)), // a duplicate, not a reorder
            (0, 4, Seen::Other),   // 3 and 4 lost; 4's offset holds someone else's record
        ]);
        let c = compare(&s, &l);
        assert_eq!((c.lost, c.duplicates, c.reordered, c.offsets_reused), (2, 1, 1, 2));
        assert_eq!(c.lost_examples.iter().map(|a| a.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(c.other, 1);
        assert!(!c.clean());
    }

    #[test]
    fn two_acknowledgements_of_one_offset_are_reuse() {
        let s = state(&[(0, 0, 0), (1, 0, 0)], &[]);
        let l = log(&[(0, 0, Seen::Ours(1)), (0, 1, Seen::Ours(0))]);
        let c = compare(&s, &l);
        assert_eq!((c.lost, c.offsets_reused, c.reordered), (0, 2, 1));
    }

    #[test]
    fn a_missing_topic_loses_everything_acknowledged() {
        let s = state(&[(0, 0, 0), (1, 1, 0)], &[2]);
        let l = ReadLog { topic_missing: true, ..ReadLog::default() };
        let c = compare(&s, &l);
        assert_eq!((c.acked, c.lost, c.unacked_seen), (2, 2, 0));
    }
}
