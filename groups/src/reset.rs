//! The reset planner: where `sluice group reset` (Kafka's `--reset-offsets`) moves a
//! group's committed offset on each partition of a topic. Pure: the caller passes each
//! partition's committed offset and log range, and answers timestamp lookups from the
//! log's time index.
//!
//! Every target is clamped to the partition's valid range `[log start, log end]`, and
//! the line says when it was.

use sluice_core::{ResetTo, TopicPartition};

/// What the planner knows about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub tp: TopicPartition,
    /// The group's committed offset, if it has one.
    pub current: Option<u64>,
    pub log_start: u64,
    pub log_end: u64,
}

/// One line of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetLine {
    pub tp: TopicPartition,
    pub current: Option<u64>,
    pub new_offset: u64,
    pub log_start: u64,
    pub log_end: u64,
    /// True when the target lay outside `[log_start, log_end]` and was moved to its edge.
    pub clamped: bool,
}

/// Plans a reset to `to` on `partitions`. `offset_at(tp, ts)` answers
/// [`ResetTo::Timestamp`]: the first offset of `tp` whose timestamp is at or after
/// `ts` (the log end when there is none); it is asked only for that target, and its
/// first error ends the plan.
pub fn plan_reset<E>(
    to: ResetTo,
    partitions: impl IntoIterator<Item = PartitionOffsets>,
    mut offset_at: impl FnMut(&TopicPartition, i64) -> Result<u64, E>,
) -> Result<Vec<ResetLine>, E> {
    partitions
        .into_iter()
        .map(|p| {
            // i128 holds every u64 offset plus or minus every i64 shift.
            let wanted: i128 = match to {
                ResetTo::Earliest => p.log_start.into(),
                ResetTo::Latest => p.log_end.into(),
                ResetTo::Offset(o) => o.into(),
                ResetTo::Timestamp(ts) => offset_at(&p.tp, ts)?.into(),
                ResetTo::ShiftBy(n) => i128::from(p.current.unwrap_or(p.log_start)) + i128::from(n),
            };
            let new_offset = wanted.clamp(p.log_start.into(), p.log_end.into()) as u64;
            Ok(ResetLine {
                clamped: i128::from(new_offset) != wanted,
                tp: p.tp,
                current: p.current,
                new_offset,
                log_start: p.log_start,
                log_end: p.log_end,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// Partition 0: offsets 10..20, committed at 15. Partition 1: 0..5, nothing
    /// committed. Partition 2: empty at 7.
    fn partitions() -> Vec<PartitionOffsets> {
        let p = |partition, current, log_start, log_end| PartitionOffsets {
            tp: TopicPartition::new("t", partition),
            current,
            log_start,
            log_end,
        };
        vec![p(0, Some(15), 10, 20), p(1, None, 0, 5), p(2, None, 7, 7)]
    }

    /// A fake time index: record `o` of every partition was written at `1_000 + 10 * o`
    /// ms; past the last record the answer is the log end.
    fn time_index(tp: &TopicPartition, ts: i64) -> Result<u64, Infallible> {
        let p = partitions().into_iter().find(|p| &p.tp == tp).expect("known partition");
        let first = (p.log_start..p.log_end).find(|o| 1_000 + 10 * *o as i64 >= ts);
        Ok(first.unwrap_or(p.log_end))
    }

    fn no_lookup(_: &TopicPartition, _: i64) -> Result<u64, Infallible> {
        panic!("only a timestamp reset looks up timestamps")
    }

    /// (new offset, clamped) per partition.
    fn plan(to: ResetTo) -> Vec<(u64, bool)> {
        let lookup = if matches!(to, ResetTo::Timestamp(_)) { time_index } else { no_lookup };
        let lines = plan_reset(to, partitions(), lookup).unwrap_or_else(|e| match e {});
        for (line, p) in lines.iter().zip(partitions()) {
            assert_eq!(
                (&line.tp, line.current, line.log_start, line.log_end),
                (&p.tp, p.current, p.log_start, p.log_end)
            );
        }
        lines.into_iter().map(|l| (l.new_offset, l.clamped)).collect()
    }

    #[test]
    fn earliest_and_latest_are_the_log_edges() {
        assert_eq!(plan(ResetTo::Earliest), [(10, false), (0, false), (7, false)]);
        assert_eq!(plan(ResetTo::Latest), [(20, false), (5, false), (7, false)]);
    }

    #[test]
    fn an_offset_outside_the_log_is_clamped() {
        assert_eq!(plan(ResetTo::Offset(12)), [(12, false), (5, true), (7, true)]);
        assert_eq!(plan(ResetTo::Offset(0)), [(10, true), (0, false), (7, true)]);
        assert_eq!(plan(ResetTo::Offset(u64::MAX)), [(20, true), (5, true), (7, true)]);
    }

    #[test]
    fn a_timestamp_uses_the_time_index_and_is_clamped() {
        // 1_125 ms: offset 13 is the first at or after it (1_130); partition 1's records
        // are all older, so its answer is the log end.
        assert_eq!(plan(ResetTo::Timestamp(1_125)), [(13, false), (5, false), (7, false)]);
        assert_eq!(plan(ResetTo::Timestamp(0)), [(10, false), (0, false), (7, false)]);
        // A lookup answering below the log start (a racing retention) is clamped.
        let lines = plan_reset(ResetTo::Timestamp(0), partitions(), |_, _| Ok::<_, Infallible>(3))
            .unwrap_or_else(|e| match e {});
        let got: Vec<(u64, bool)> = lines.iter().map(|l| (l.new_offset, l.clamped)).collect();
        assert_eq!(got, [(10, true), (3, false), (7, true)]);
    }

    #[test]
    fn a_shift_moves_from_the_committed_offset_or_the_log_start() {
        assert_eq!(plan(ResetTo::ShiftBy(-2)), [(13, false), (0, true), (7, true)]);
        assert_eq!(plan(ResetTo::ShiftBy(3)), [(18, false), (3, false), (7, true)]);
        assert_eq!(plan(ResetTo::ShiftBy(i64::MAX)), [(20, true), (5, true), (7, true)]);
        assert_eq!(plan(ResetTo::ShiftBy(i64::MIN)), [(10, true), (0, true), (7, true)]);
        assert_eq!(plan(ResetTo::ShiftBy(0)), [(15, false), (0, false), (7, false)]);
    }

    #[test]
    fn a_failed_lookup_ends_the_plan() {
        let mut asked = Vec::new();
        let r = plan_reset(ResetTo::Timestamp(5), partitions(), |tp, ts| {
            asked.push((tp.partition, ts));
            if tp.partition == 1 { Err("not the leader") } else { Ok(10) }
        });
        assert_eq!(r, Err("not the leader"));
        assert_eq!(asked, [(0, 5), (1, 5)], "no lookup after the failure");
    }
}
