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
    /// Benchmark produce and consume throughput and latency.
    Bench(BenchArgs),
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
    /// Log format on stderr ("text" or "json"); filter with RUST_LOG (default: info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// After starting, show it working: create topic `demo` (if missing), produce a few
    /// records and read them back, then keep serving.
    #[arg(long)]
    pub demo: bool,
}

/// Where `sluice dev` serves metrics.
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
        /// Number of partitions [default: the broker's default]
        #[arg(long, short = 'p')]
        partitions: Option<u32>,
        /// Topic configuration, KEY=VALUE (retention.ms, retention.bytes,
        /// max.message.bytes, durability); repeatable.
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
    /// [default: the client's default, 5]
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Target batch size in bytes [default: the client's default, 262144]
    #[arg(long, value_name = "BYTES")]
    pub batch_size: Option<usize>,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all partitions).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at the earliest retained offset (default: the end, only new records).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    pub offset: Option<u64>,
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
    fn metrics_listen_accepts_off() {
        assert_eq!(parse_metrics_listen("off"), Ok(MetricsListen::Off));
        assert!(matches!(parse_metrics_listen("127.0.0.1:0"), Ok(MetricsListen::On(_))));
        assert!(parse_metrics_listen("nope").is_err());
    }
}
