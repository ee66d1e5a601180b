//! Results of the consumer-group workloads (`bench group`, `bench rebalance`) and their
//! text and JSON forms.

use serde::Serialize;

use super::report::{BrokerStats, Fill, TargetInfo, bytes, group, num, plural};

/// One read phase of `bench group`: every record read by `consumers` consumers.
#[derive(Debug, Clone, Serialize)]
pub struct ReadPhase {
    pub consumers: u32,
    /// Records received, re-reads after a rebalance included.
    pub records_read: u64,
    /// Value bytes received, re-reads included.
    pub bytes_read: u64,
    /// Distinct records: every record of the topic, read at least once.
    pub records: u64,
    pub elapsed_s: f64,
    /// Distinct records per second.
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

/// One `bench group` run.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// Always `group`.
    pub workload: &'static str,
    pub target: TargetInfo,
    pub topic: String,
    pub partitions: u32,
    pub record_size: usize,
    pub durability: String,
    pub fill: Fill,
    /// Consumers with a fixed share of the partitions each.
    pub manual: ReadPhase,
    /// Members of one group: joins and the rebalances they cause are inside the time.
    pub group: ReadPhase,
    pub strategy: String,
    pub session_timeout_ms: u64,
    pub auto_commit_ms: u64,
    /// The group's records/s as a percentage of the manual ones.
    pub group_vs_manual_pct: f64,
    pub broker: Option<BrokerStats>,
    pub notes: Vec<String>,
}

impl GroupReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut out = vec![
            format!(
                "group: {} records, {}, {}, {}, durability={}",
                group(self.fill.records),
                bytes(self.record_size as u64),
                plural(u64::from(self.partitions), "partition"),
                plural(u64::from(self.group.consumers), "consumer"),
                self.durability
            ),
            format!("target: {}", self.target.line()),
        ];
        out.push(if self.fill.filled_by_bench {
            format!(
                "fill: {} records written first at {} records/s, {} MB/s",
                group(self.fill.records),
                group(self.fill.records_per_sec.round() as u64),
                num(self.fill.mb_per_sec)
            )
        } else {
            format!("fill: read {} records that were already in the topic", group(self.fill.records))
        });
        out.push(format!("manual assignment: {}", phase(&self.manual)));
        out.push(format!(
            "group ({}, auto-commit every {} ms, session timeout {} ms): {}",
            self.strategy,
            self.auto_commit_ms,
            self.session_timeout_ms,
            phase(&self.group)
        ));
        out.push(format!(
            "group vs manual: {}% of the manual rate, joins and rebalances included",
            num(self.group_vs_manual_pct)
        ));
        if let Some(b) = &self.broker {
            out.extend(b.lines());
        }
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        out.join("\n")
    }
}

fn phase(p: &ReadPhase) -> String {
    let rereads = p.records_read.saturating_sub(p.records);
    let rereads = if rereads > 0 { format!(", {} re-read", group(rereads)) } else { String::new() };
    format!(
        "{} read everything in {} s: {} records/s, {} MB/s{rereads}",
        plural(u64::from(p.consumers), "consumer"),
        num(p.elapsed_s),
        group(p.records_per_sec.round() as u64),
        num(p.mb_per_sec)
    )
}

/// The times of one rebalance round.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Round {
    /// From a member's first heartbeat until the group is stable with it.
    pub join_s: f64,
    /// From a member's leave until the group is stable without it.
    pub leave_s: f64,
}

/// Smallest, largest and mean of some durations.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min_s: f64,
    pub max_s: f64,
    pub mean_s: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        let min_s = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max_s = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Self { min_s, max_s, mean_s: v.iter().sum::<f64>() / v.len() as f64 })
    }

    fn text(&self) -> String {
        if num(self.min_s) == num(self.max_s) {
            format!("{} s", num(self.min_s))
        } else {
            format!("{}–{} s (mean {} s)", num(self.min_s), num(self.max_s), num(self.mean_s))
        }
    }
}

/// One `bench rebalance` run.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceReport {
    /// Always `rebalance`.
    pub workload: &'static str,
    pub target: TargetInfo,
    pub topic: String,
    pub partitions: u32,
    pub members: u32,
    pub strategy: String,
    pub session_timeout_ms: u32,
    /// The heartbeat interval the coordinator asked for.
    pub heartbeat_interval_ms: u32,
    /// From the first heartbeat until the first `members` members are stable.
    pub initial_s: f64,
    pub rounds: Vec<Round>,
    pub join: Option<Spread>,
    pub leave: Option<Spread>,
    /// Members the coordinator expired or fenced, that joined again.
    pub rejoins: u64,
    pub broker: Option<BrokerStats>,
    pub notes: Vec<String>,
}

impl RebalanceReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut out = vec![
            format!(
                "rebalance: {}, {}, {}, {}, heartbeat interval {} ms, session timeout {} ms",
                plural(u64::from(self.members), "member"),
                plural(u64::from(self.partitions), "partition"),
                plural(self.rounds.len() as u64, "round"),
                self.strategy,
                self.heartbeat_interval_ms,
                self.session_timeout_ms
            ),
            format!("target: {}", self.target.line()),
            format!("initial: {} stable after {} s", plural(u64::from(self.members), "member"), num(self.initial_s)),
        ];
        if let (Some(j), Some(l)) = (&self.join, &self.leave) {
            out.push(format!("stable again: after a join {}, after a leave {}", j.text(), l.text()));
        }
        for (i, r) in self.rounds.iter().enumerate() {
            out.push(format!("round {}: join {} s, leave {} s", i + 1, num(r.join_s), num(r.leave_s)));
        }
        if self.rejoins > 0 {
            out.push(format!("rejoins: {} (members expired or fenced by the coordinator)", group(self.rejoins)));
        }
        if let Some(b) = &self.broker {
            // No records are written: the disk line would only show the offsets topic.
            out.extend(b.lines().into_iter().filter(|l| l.starts_with("memory:")));
        }
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(consumers: u32, records_read: u64, elapsed_s: f64) -> ReadPhase {
        ReadPhase {
            consumers,
            records_read,
            bytes_read: records_read * 100,
            records: 1_600_000,
            elapsed_s,
            records_per_sec: 1_600_000.0 / elapsed_s,
            mb_per_sec: 160.0 / elapsed_s,
        }
    }

    #[test]
    fn group_text_compares_the_two_phases() {
        let r = GroupReport {
            workload: "group",
            target: TargetInfo::External { address: "127.0.0.1:9092".into() },
            topic: "bench-1".into(),
            partitions: 16,
            record_size: 100,
            durability: "interval".into(),
            fill: Fill { filled_by_bench: true, records: 1_600_000, records_per_sec: 800_000.0, mb_per_sec: 80.0 },
            manual: phase(4, 1_600_000, 0.5),
            group: phase(4, 1_600_100, 0.625),
            strategy: "cooperative-sticky".into(),
            session_timeout_ms: 600,
            auto_commit_ms: 200,
            group_vs_manual_pct: 80.0,
            broker: None,
            notes: vec![],
        };
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "group: 1,600,000 records, 100 B, 16 partitions, 4 consumers, durability=interval");
        assert_eq!(
            lines[3],
            "manual assignment: 4 consumers read everything in 0.500 s: 3,200,000 records/s, 320 MB/s"
        );
        assert_eq!(
            lines[4],
            "group (cooperative-sticky, auto-commit every 200 ms, session timeout 600 ms): 4 consumers read \
             everything in 0.625 s: 2,560,000 records/s, 256 MB/s, 100 re-read"
        );
        assert_eq!(lines[5], "group vs manual: 80.0% of the manual rate, joins and rebalances included");
        let v: serde_json::Value = serde_json::from_str(&r.json()).expect("json");
        assert_eq!(v["group"]["records_read"], 1_600_100);
        assert_eq!(v["target"]["kind"], "external");
    }

    #[test]
    fn rebalance_text_shows_the_spread_and_each_round() {
        let rounds = vec![Round { join_s: 1.04, leave_s: 0.98 }, Round { join_s: 1.17, leave_s: 0.98 }];
        let r = RebalanceReport {
            workload: "rebalance",
            target: TargetInfo::External { address: "b:1".into() },
            topic: "big".into(),
            partitions: 1000,
            members: 100,
            strategy: "cooperative-sticky".into(),
            session_timeout_ms: 3000,
            heartbeat_interval_ms: 1000,
            initial_s: 1.1,
            join: Spread::of(rounds.iter().map(|r| r.join_s)),
            leave: Spread::of(rounds.iter().map(|r| r.leave_s)),
            rounds,
            rejoins: 0,
            broker: None,
            notes: vec![],
        };
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "rebalance: 100 members, 1,000 partitions, 2 rounds, cooperative-sticky, heartbeat interval 1000 ms, \
             session timeout 3000 ms"
        );
        assert_eq!(lines[2], "initial: 100 members stable after 1.10 s");
        assert_eq!(lines[3], "stable again: after a join 1.04–1.17 s (mean 1.10 s), after a leave 0.980 s");
        assert_eq!(lines[5], "round 2: join 1.17 s, leave 0.980 s");
        let v: serde_json::Value = serde_json::from_str(&r.json()).expect("json");
        assert_eq!(v["rounds"][1]["join_s"], 1.17);
        assert_eq!(v["join"]["max_s"], 1.17);
        assert!(Spread::of([]).is_none());
        assert!(!text.contains("rejoins"), "{text}");
        let again = RebalanceReport { rejoins: 2, ..r };
        assert!(again.text().contains("\nrejoins: 2 (members expired or fenced by the coordinator)"));
    }
}
