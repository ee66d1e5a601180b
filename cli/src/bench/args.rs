//! Command-line arguments of `sluice bench`, and the small parsers they need.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use sluice_core::{Acks, Compression, Durability, Strategy};

use super::session::TopicSpec;

/// Benchmarks a broker: produce throughput and acknowledgement latency, consume
/// throughput, end-to-end latency, consumer groups. Without `--broker` an embedded
/// broker runs in a temporary directory that is removed afterwards.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Producer throughput and per-record acknowledgement latency.
    Produce(ProduceArgs),
    /// Fills a topic (or uses an existing one) and measures reading it from the start.
    Consume(ConsumeArgs),
    /// A fixed-rate producer and a consumer: end-to-end latency.
    E2e(E2eArgs),
    /// Fills a topic, reads it with consumers assigned partitions by hand, then with as
    /// many members of a consumer group: the group's rate against the manual one.
    Group(GroupArgs),
    /// Simulated group members on a many-partition topic: how long the group takes to
    /// be stable again after a member joins and after one leaves.
    Rebalance(RebalanceArgs),
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Fixed-rate mode: this many records per second in total. Latency is measured
    /// from each record's scheduled send time, so a stalled broker cannot hide its
    /// stall (no coordinated omission). Without it, records go as fast as possible.
    #[arg(long, value_name = "RECORDS_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Run against an in-process gRPC server with storage switched off (the
    /// transport ceiling) instead of a broker.
    #[arg(long, conflicts_with = "topic")]
    pub transport_only: bool,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Run against an in-process gRPC server with storage switched off (the
    /// transport ceiling) instead of a broker.
    #[arg(long, conflicts_with = "topic")]
    pub transport_only: bool,
}

#[derive(Debug, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub common: Common,
    /// Records per second in total, sent on a fixed schedule.
    #[arg(long, value_name = "RECORDS_PER_SEC", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
}

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Consumers of each phase: manual ones with a share of the partitions each, then
    /// members of one group.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub consumers: u32,
    /// Session timeout of the group members [session.timeout.ms]; the coordinator asks
    /// for heartbeats at a third of it, which bounds how fast partitions move.
    #[arg(long, value_name = "MS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_timeout_ms: u64,
    /// How often members commit their positions [auto.commit.interval.ms].
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub auto_commit_ms: u64,
    /// Assignment strategy: range, roundrobin or cooperative-sticky.
    #[arg(long, default_value = "cooperative-sticky")]
    pub strategy: Strategy,
}

#[derive(Debug, Args)]
pub struct RebalanceArgs {
    /// Members that form the group before the first round.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub members: u32,
    /// Partitions of the topic the bench creates.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub partitions: u32,
    /// Rounds of one join then one leave.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Session timeout of the members; the coordinator asks for heartbeats at a third of
    /// it (at most its configured interval).
    #[arg(long, value_name = "MS", default_value_t = 3000, value_parser = clap::value_parser!(u32).range(1..))]
    pub session_timeout_ms: u32,
    /// Assignment strategy: range, roundrobin or cooperative-sticky.
    #[arg(long, default_value = "cooperative-sticky")]
    pub strategy: Strategy,
    /// Give up when the group is not stable this long after a change.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Use this existing topic (its own partitions) instead of creating `bench-<random>`.
    #[arg(long, conflicts_with = "partitions")]
    pub topic: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Keep the topic the bench created on a `--broker` (it is deleted otherwise).
    #[arg(long)]
    pub keep_topic: bool,
}

impl RebalanceArgs {
    /// The topic the members subscribe to.
    pub fn topic_spec(&self) -> TopicSpec {
        TopicSpec {
            existing: self.topic.clone(),
            partitions: self.partitions,
            durability: Durability::Interval,
            largest_batch: 0,
            keep: self.keep_topic,
        }
    }
}

/// Options shared by every workload.
#[derive(Debug, Args)]
pub struct Common {
    /// Bytes of value per record (suffixes K/KiB and M/MiB are accepted).
    #[arg(long, value_name = "BYTES", default_value = "100", value_parser = parse_bytes)]
    pub record_size: usize,
    /// Records to send in total, over all producers [default: 1000000; group: 1600000;
    /// e2e: --duration 10].
    #[arg(long, value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Send for this many seconds instead of a fixed count.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Partitions of the topic the bench creates [default: 1; group: 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub partitions: Option<u32>,
    /// Use this existing topic (its own partitions and durability) instead of creating
    /// `bench-<random>`.
    #[arg(long, conflicts_with_all = ["partitions", "durability"])]
    pub topic: Option<String>,
    /// Producers, each with its own connection.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub producers: u32,
    /// Durability of the topic the bench creates: interval or always.
    #[arg(long, default_value = "interval")]
    pub durability: Durability,
    /// Acknowledgement level: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Producer batch size [batch.size].
    #[arg(long, value_name = "BYTES", default_value = "256KiB", value_parser = parse_bytes)]
    pub batch_size: usize,
    /// Producer linger [linger.ms].
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub linger_ms: u64,
    /// Producer compression [compression.type]: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// Idempotent producer [enable.idempotence] (off with --acks 0).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,
    /// Record values: random bytes (incompressible) or JSON-like text (compresses as
    /// real events do).
    #[arg(long, value_enum, default_value_t = Payload::Random)]
    pub payload: Payload,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Keep the topic the bench created on a `--broker` (it is deleted otherwise).
    #[arg(long)]
    pub keep_topic: bool,
}

/// When the bench stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Count(u64),
    Duration(Duration),
}

impl Common {
    /// The topic of the run; `partitions` unless `--partitions` says otherwise.
    pub fn topic_spec(&self, partitions: u32) -> TopicSpec {
        TopicSpec {
            existing: self.topic.clone(),
            partitions: self.partitions.unwrap_or(partitions),
            durability: self.durability,
            // A batch holds up to batch.size bytes, or one record that is larger.
            largest_batch: self.batch_size.max(self.record_size + 64) as u64,
            keep: self.keep_topic,
        }
    }

    /// `--count` or `--duration`, else `default`.
    pub fn stop(&self, default: Stop) -> Stop {
        match (self.count, self.duration) {
            (Some(n), _) => Stop::Count(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => default,
        }
    }
}

/// What record values hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Payload {
    Random,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Parses a byte count: `100`, `4K`, `4KiB`, `1M`, `1MiB` (binary multiples).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is not a byte count"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("unknown unit '{other}' in '{s}' (use K/KiB or M/MiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// Parses a positive number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration must be positive, not '{s}'"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{s}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert!(parse_bytes("1G").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("x").is_err());
    }

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn count_wins_over_default() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from(["x", "produce", "--count", "5", "--acks", "1"]).expect("parse");
        let Workload::Produce(p) = cli.bench.workload else { panic!("not produce") };
        assert_eq!(p.common.stop(Stop::Count(1)), Stop::Count(5));
        assert_eq!(p.common.acks, Acks::Leader);
        assert_eq!(p.common.batch_size, 256 * 1024);
        assert!(Cli::try_parse_from(["x", "produce", "--count", "5", "--duration", "1"]).is_err());
        assert!(Cli::try_parse_from(["x", "produce", "--topic", "t", "--partitions", "3"]).is_err());
        assert_eq!(p.common.topic_spec(1).partitions, 1);
    }

    #[test]
    fn group_workloads_have_their_own_defaults() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from(["x", "group"]).expect("parse");
        let Workload::Group(g) = cli.bench.workload else { panic!("not group") };
        assert_eq!((g.consumers, g.session_timeout_ms, g.auto_commit_ms), (4, 600, 200));
        assert_eq!(g.common.topic_spec(16).partitions, 16);
        assert_eq!(g.strategy, Strategy::CooperativeSticky);
        let cli = Cli::try_parse_from(["x", "rebalance", "--members", "3", "--strategy", "range"]).expect("parse");
        let Workload::Rebalance(r) = cli.bench.workload else { panic!("not rebalance") };
        assert_eq!((r.members, r.partitions, r.rounds, r.strategy), (3, 1000, 3, Strategy::Range));
        assert!(Cli::try_parse_from(["x", "rebalance", "--strategy", "sticky"]).is_err());
        assert!(Cli::try_parse_from(["x", "rebalance", "--topic", "t", "--partitions", "3"]).is_err());
    }
}
