//! `sluice verify`'s arguments.

use std::{path::PathBuf, time::Duration};

use clap::Args;

/// Produce numbered records, then read everything back and count what was lost,
/// duplicated, reordered or overwritten.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("mode").multiple(false))]
pub struct VerifyArgs {
    /// Topic to produce to and check (created with --partitions if missing).
    pub topic: String,
    /// Records per second, kept steady (a late record is sent at once, then the pace
    /// resumes).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// How long to produce (`30s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// How many records to produce [default: 10 s worth at --rate, unless --duration].
    #[arg(long)]
    pub count: Option<u64>,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, default_value_t = 3)]
    pub partitions: u32,
    /// Give records keys `k0`..`k{N-1}` (partitioned by key hash); without it, record `i`
    /// goes to partition `i mod partitions`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: Option<u64>,
    /// Pad every value to this many bytes.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub value_bytes: usize,
    /// Producer name carried by every value; the check counts only this producer's
    /// records (others in the topic are reported as `other`) [default: a new name].
    #[arg(long, value_parser = parse_producer_name)]
    pub producer: Option<String>,
    /// Idempotent producer [enable.idempotence]; false lets retries duplicate records.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,
    /// Give up on a record this long after it was appended [delivery.timeout.ms].
    #[arg(long, default_value_t = 30_000)]
    pub delivery_timeout_ms: u64,
    /// Longest wait for one produce answer before retrying [request.timeout.ms].
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Only produce; write what was acknowledged to --state for a later --check-only.
    #[arg(long, group = "mode", requires = "state")]
    pub produce_only: bool,
    /// Only check the records of an earlier --produce-only run, read from --state.
    #[arg(long, group = "mode", requires = "state")]
    pub check_only: bool,
    /// File holding what the producer sent and what was acknowledged (JSON).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Fail the check when reading makes no progress for this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub check_timeout: Duration,
    /// Print the result as one JSON object instead of the two count lines.
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    /// Records to produce: --count, or --duration (default 10 s) at --rate.
    pub fn records(&self) -> u64 {
        match (self.count, self.duration) {
            (Some(n), _) => n,
            (None, d) => {
                let secs = d.unwrap_or(Duration::from_secs(10)).as_secs_f64();
                (secs * f64::from(self.rate)).round() as u64
            }
        }
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a duration like 30s, 500ms or 2m");
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn parse_producer_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(format!("'{s}': a producer name is 1-64 letters, digits, '-', '_' or '.'"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "10x", "-1s", "1e9999"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn producer_names_are_plain() {
        assert!(parse_producer_name("drill-1.a_b").is_ok());
        assert!(parse_producer_name("has space").is_err());
        assert!(parse_producer_name("").is_err());
    }
}
