//! Command-line arguments (clap derive). Parsing only: the commands live in `commands/`.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_client::Acks;

use crate::bench::BenchArgs;

/// Broker address used when neither `--broker` nor `SLUICE_BROKER` is given.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9092";

/// Sluice: a Kafka-style streaming platform. Start a local broker with `sluice dev`,
/// then create topics, produce and consume.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Broker address, HOST:PORT [default: 127.0.0.1:9092; `bench` starts its own broker]
    #[arg(long, global = true, env = "SLUICE_BROKER", value_name = "HOST:PORT")]
    pub broker: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The broker to talk to, with the default applied.
    pub fn broker_addr(&self) -> &str {
        self.broker.as_deref().unwrap_or(DEFAULT_BROKER)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain-text tables.
    Table,
    /// JSON, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a standalone broker in the foreground (local development, first steps).
    Dev(DevArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(TopicArgs),
    /// Produce one record per line of standard input.
    Produce(ProduceArgs),
    /// Print records of a topic, one per line.
    Consume(ConsumeArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group(GroupArgs),
    /// Benchmark produce and consume throughput and latency.
    Bench(BenchArgs),
    /// Produce numbered records, read them back, and count lost, duplicated, reordered.
    Verify(crate::commands::verify::VerifyArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory for the log and topic metadata; created if missing.
    #[arg(long, default_value = "./sluice-data")]
    pub data_dir: PathBuf,
    /// Address for the gRPC API; port 0 picks a free port (the banner shows it).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Address for Prometheus metrics (/metrics) and /healthz; "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9644", value_parser = parse_metrics_listen)]
    pub metrics_listen: MetricsListen,
    /// Address for Kafka's wire protocol (Kafka clients: bootstrap.servers); port 0 picks
    /// a free port (the banner shows it); "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9093", value_parser = parse_metrics_listen)]
    pub kafka_listen: MetricsListen,
    /// Log format on stderr ("text" or "json"); filter with RUST_LOG (default: info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// After starting, show it working: create topic `demo` (if missing), produce a few
    /// records and read them back, then keep serving.
    #[arg(long)]
    pub demo: bool,
    /// Run a local replicated cluster of this many brokers instead of one embedded
    /// broker: the controller runs in this process, each broker is its own
    /// `sluice-broker` process (gRPC on --listen's port + 2i, Kafka on
    /// --kafka-listen's + 2i, metrics on --metrics-listen's + i; port 0: free ports),
    /// with its data under --data-dir/broker-<i>.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub brokers: u32,
    /// Cluster: the sluice-broker executable [default: the one next to this `sluice`].
    #[arg(long, env = "SLUICE_BROKER_BIN", value_name = "PATH")]
    pub broker_bin: Option<PathBuf>,
    /// Cluster: restart a broker process that exits (by default it stays down).
    #[arg(long)]
    pub restart: bool,
    /// Cluster: a broker without a heartbeat for this long is fenced and its
    /// partitions elect new leaders, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub session_timeout_ms: u64,
    /// Cluster: the controller's gRPC address (brokers heartbeat and watch metadata there).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub controller_listen: SocketAddr,
}

/// Where `sluice dev` serves metrics (or the Kafka protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    On(SocketAddr),
}

fn parse_metrics_listen(s: &str) -> Result<MetricsListen, String> {
    match s {
        "off" | "" => Ok(MetricsListen::Off),
        a => a.parse().map(MetricsListen::On).map_err(|_| format!("'{a}' is not HOST:PORT or \"off\"")),
    }
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    // Global within `topic` only: `sluice bench` has an `--output` of its own, and clap
    // cannot hold two arguments with one name in a command.
    /// Output format: aligned tables for people, JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        /// Copies of each partition [default: min(3, brokers) in a cluster, 1 on a
        /// standalone broker, which refuses more].
        #[arg(long, short = 'r')]
        replication_factor: Option<u32>,
        /// Topic configuration, KEY=VALUE (retention.ms, retention.bytes,
        /// max.message.bytes, durability, min.insync.replicas,
        /// unclean.leader.election.enable); repeatable.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// List topics.
    List {
        /// Include the broker's internal topics.
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (offsets, size) and configuration.
    Describe { name: String },
    /// Delete a topic and all of its data.
    Delete { name: String },
    /// Change topic configuration; an empty value (KEY=) resets a key to the broker default.
    Alter {
        name: String,
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value, required = true)]
        config: Vec<(String, String)>,
    },
}

/// Parses `KEY=VALUE` (the value may be empty).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Send every record to this partition (default: by key, or sticky without keys).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Split each line at the first SEP into key and value; lines without SEP are refused.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Acknowledgement level: 0 (none), 1 (leader) or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Longest time a record waits for its batch to fill, in milliseconds
    /// [default: the client's default, 0]
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Target batch size in bytes, before compression [default: the client's default, 262144]
    #[arg(long, value_name = "BYTES")]
    pub batch_size: Option<usize>,
    /// Compress batches with this codec [compression.type]: none, gzip, snappy, lz4 or
    /// zstd. The broker stores them compressed; consumers decompress.
    #[arg(long, default_value = "none")]
    pub compression: sluice_core::Compression,
    /// Idempotent producer [enable.idempotence]: the broker stores a retried batch once.
    /// Off with --acks 0.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,
    /// Give up on a record this long after it was read, retries included
    /// [delivery.timeout.ms]; the error names the last attempt's failure.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub delivery_timeout_ms: u64,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all partitions).
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Start at the earliest retained offset (default: the end, only new records). With
    /// --group: where partitions without a committed offset start.
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, conflicts_with = "group")]
    pub offset: Option<u64>,
    /// Consume as a member of this consumer group: the broker assigns the partitions,
    /// reading starts at the group's committed offsets, and offsets are committed
    /// every second and on exit.
    #[arg(long, short = 'g', value_name = "GROUP")]
    pub group: Option<String>,
    /// With --group: the broker drops this member after this long without a heartbeat.
    #[arg(long, default_value_t = 10_000, requires = "group")]
    pub session_timeout_ms: u64,
    /// With --group: how the group divides partitions (range, roundrobin,
    /// cooperative-sticky); the first member's choice holds.
    #[arg(long, default_value = "cooperative-sticky", requires = "group")]
    pub strategy: sluice_client::Strategy,
    /// Exit after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// How to print a record.
    #[arg(long, value_enum, default_value_t = RecordFormat::Value)]
    pub format: RecordFormat,
    /// Exit (successfully) after this many milliseconds without a new record.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Output format: aligned tables for people, JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups (with members or committed offsets).
    List,
    /// Show a group's members and, per partition, committed offset, log end, lag, owner.
    Describe { group: String },
    /// Move a group's committed offsets on a topic. Shows the plan unless --execute;
    /// refused while the group has live members.
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets (only when it has no live members).
    Delete { group: String },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("to").required(true).multiple(false))]
pub struct ResetOffsetsArgs {
    pub group: String,
    /// Topic whose partitions are reset (all of them).
    #[arg(long, short = 't')]
    pub topic: String,
    /// To the log start offset.
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// To the log end offset (skip everything not yet read).
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// To this offset (clamped to the retained range).
    #[arg(long, group = "to", value_name = "N")]
    pub to_offset: Option<u64>,
    /// To the first record at or after this time, RFC 3339 (2026-01-31T12:00:00Z).
    #[arg(long, group = "to", value_name = "RFC3339", value_parser = parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
    /// By N from the committed offset (negative moves back), clamped.
    #[arg(long, group = "to", value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Apply the plan (without it, only show it).
    #[arg(long)]
    pub execute: bool,
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`) into ms since
/// the Unix epoch.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not an RFC 3339 time like 2026-01-31T12:00:00Z");
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok()).ok_or_else(bad);
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let ms: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse::<i64>().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && matches!(&tz[..1], "+" | "-") && &tz[3..4] == ":" => {
            let h: i64 = tz[1..3].parse().map_err(|_| bad())?;
            let m: i64 = tz[4..6].parse().map_err(|_| bad())?;
            let sign = if &tz[..1] == "-" { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hour * 3600 + minute * 60 + second - offset_s) * 1000 + millis)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// The value only.
    Value,
    /// Key, a tab, then the value.
    KeyValue,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value,
    /// headers (bytes as UTF-8, invalid sequences replaced).
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn output_is_accepted_before_and_after_the_topic_subcommand() {
        for argv in
            [&["sluice", "topic", "list", "--output", "json"][..], &["sluice", "topic", "--output", "json", "list"]]
        {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Topic(t) = cli.command else { panic!("not a topic command") };
            assert_eq!(t.output, OutputFormat::Json);
        }
    }

    #[test]
    fn key_value_allows_empty_value_but_needs_key() {
        assert_eq!(parse_key_value("retention.ms=5").ok(), Some(("retention.ms".into(), "5".into())));
        assert_eq!(parse_key_value("a=b=c").ok(), Some(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("durability=").ok(), Some(("durability".into(), String::new())));
        assert!(parse_key_value("durability").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn rfc3339_times_become_epoch_millis() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ms("2026-01-31T12:00:00Z"), Ok(1_769_860_800_000));
        assert_eq!(parse_rfc3339_ms("2026-01-31T13:30:00.25+01:30"), Ok(1_769_860_800_250));
        assert_eq!(parse_rfc3339_ms("2000-02-29T00:00:00-00:00"), Ok(951_782_400_000));
        for bad in ["yesterday", "2026-01-31", "2026-13-01T00:00:00Z", "2026-01-31T12:00:00", "2026-01-31T12:00:00+1"] {
            assert!(parse_rfc3339_ms(bad).unwrap_err().contains("RFC 3339"), "{bad}");
        }
    }

    #[test]
    fn reset_offsets_needs_exactly_one_strategy() {
        let ok = Cli::try_parse_from(["sluice", "group", "reset-offsets", "g", "-t", "t", "--shift-by", "-5"]);
        let Command::Group(GroupArgs { command: GroupCommand::ResetOffsets(r), .. }) = ok.unwrap().command else {
            panic!("not reset-offsets")
        };
        assert_eq!((r.shift_by, r.execute), (Some(-5), false));
        assert!(Cli::try_parse_from(["sluice", "group", "reset-offsets", "g", "-t", "t"]).is_err());
        let two = ["sluice", "group", "reset-offsets", "g", "-t", "t", "--to-earliest", "--to-latest"];
        assert!(Cli::try_parse_from(two).is_err());
    }

    #[test]
    fn metrics_listen_accepts_off() {
        assert_eq!(parse_metrics_listen("off"), Ok(MetricsListen::Off));
        assert!(matches!(parse_metrics_listen("127.0.0.1:0"), Ok(MetricsListen::On(_))));
        assert!(parse_metrics_listen("nope").is_err());
    }
}
