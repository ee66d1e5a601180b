//! Results of a bench run: the latency histogram, the report, and its text and JSON
//! forms.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in nanoseconds, 3 significant digits, up to an hour.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;

impl Latency {
    pub fn new() -> Self {
        let hist = match Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3) {
            Ok(h) => h,
            // Constant bounds that hdrhistogram accepts (it refuses only low = 0,
            // high < 2 * low and more than 5 significant digits).
            Err(e) => unreachable!("histogram bounds refused: {e:?}"),
        };
        Self { hist }
    }

    pub fn record(&mut self, latency: Duration) {
        self.hist.saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Percentiles in milliseconds; `None` without samples.
    pub fn summary(&self, kind: LatencyKind, mode: &str) -> Option<LatencySummary> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(LatencySummary {
            kind,
            mode: mode.to_string(),
            samples: self.hist.len(),
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            p999_ms: ms(self.hist.value_at_quantile(0.999)),
            max_ms: ms(self.hist.max()),
            mean_ms: self.hist.mean() / 1e6,
        })
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyKind {
    /// Send (or scheduled send) to the producer's acknowledgement.
    Ack,
    /// Scheduled send to the consumer receiving the record.
    EndToEnd,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub kind: LatencyKind,
    /// "fixed rate N/s" or "max throughput".
    pub mode: String,
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// What the bench ran against.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetInfo {
    /// An in-process broker in a temporary data directory, removed afterwards.
    Embedded { address: String, data_dir: String },
    /// The broker named by `--broker`.
    External { address: String },
    /// The in-process gRPC server with storage switched off.
    TransportOnly { address: String },
}

/// How a consume bench's topic got its data.
#[derive(Debug, Clone, Serialize)]
pub struct Fill {
    /// True when the bench wrote the records; false when it read existing data.
    pub filled_by_bench: bool,
    pub records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

/// Figures about an embedded broker, taken at the end of the run.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStats {
    /// VmRSS of the whole bench process (broker and clients share it).
    pub process_rss_bytes: Option<u64>,
    /// VmHWM: the peak RSS of the whole process.
    pub process_peak_rss_bytes: Option<u64>,
    /// Bytes allocated on disk by the data directory, after the broker's final flush.
    pub data_dir_bytes: u64,
    /// Apparent size (sum of file lengths) of the data directory.
    pub data_dir_apparent_bytes: u64,
    /// Bytes the broker reports for the topic's log (the stored batches).
    pub stored_log_bytes: Option<u64>,
    /// Record payload written by the bench.
    pub payload_bytes: u64,
}

/// One bench run, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `produce`, `consume` or `e2e`.
    pub workload: &'static str,
    pub target: TargetInfo,
    pub topic: String,
    /// Records measured: acknowledged (produce), read (consume), received (e2e).
    pub records: u64,
    pub record_size: usize,
    pub producers: u32,
    pub consumers: u32,
    pub partitions: u32,
    pub acks: String,
    pub durability: String,
    pub batch_size: usize,
    pub linger_ms: u64,
    /// The producers' codec (`none` when uncompressed).
    pub compression: String,
    /// Whether the producers were idempotent (`--idempotence`; off with acks=0).
    pub idempotence: bool,
    /// Records per second asked for with `--rate`.
    pub rate: Option<u64>,
    pub elapsed_s: f64,
    pub records_per_sec: f64,
    /// Record payload (values) per second, 1 MB = 10^6 bytes.
    pub mb_per_sec: f64,
    pub latency: Option<LatencySummary>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub fill: Option<Fill>,
    pub broker: Option<BrokerStats>,
    pub notes: Vec<String>,
}

/// Records/s and MB/s (10^6 bytes) of `records` records of `size` bytes.
pub fn rates(records: u64, size: usize, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rps = records as f64 / secs;
    (rps, rps * size as f64 / 1e6)
}

/// "fixed rate 50,000/s" or "max throughput".
pub fn mode(rate: Option<u64>) -> String {
    match rate {
        Some(r) => format!("fixed rate {}/s", group(r)),
        None => "max throughput".to_string(),
    }
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut out = Vec::new();
        out.push(self.headline());
        out.push(format!("target: {}", self.target.line()));
        if let Some(f) = &self.fill {
            out.push(if f.filled_by_bench {
                format!(
                    "fill: {} records written first at {} records/s, {} MB/s",
                    group(f.records),
                    group(f.records_per_sec.round() as u64),
                    num(f.mb_per_sec)
                )
            } else {
                format!("fill: read {} records that were already in the topic", group(f.records))
            });
        }
        out.push(format!(
            "throughput: {} records/s, {} MB/s of payload ({} s)",
            group(self.records_per_sec.round() as u64),
            num(self.mb_per_sec),
            num(self.elapsed_s)
        ));
        if let Some(l) = &self.latency {
            let kind = match l.kind {
                LatencyKind::Ack => "ack",
                LatencyKind::EndToEnd => "end-to-end",
            };
            out.push(format!(
                "latency: p50 {}, p99 {}, p99.9 {}, max {} ({}; {kind}, {} samples)",
                ms(l.p50_ms),
                ms(l.p99_ms),
                ms(l.p999_ms),
                ms(l.max_ms),
                l.mode,
                group(l.samples)
            ));
        }
        if let Some(b) = &self.broker {
            out.extend(b.lines());
        }
        if self.errors > 0 {
            out.push(format!(
                "errors: {} records failed (first: {})",
                group(self.errors),
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        out.join("\n")
    }

    fn headline(&self) -> String {
        let size = bytes(self.record_size as u64);
        let producers = plural(u64::from(self.producers), "producer");
        let partitions = plural(u64::from(self.partitions), "partition");
        let producer_settings = format!(
            "acks={}, durability={}, batch={} linger={} ms compression={} idempotence={}",
            self.acks,
            self.durability,
            bytes(self.batch_size as u64),
            self.linger_ms,
            self.compression,
            if self.idempotence { "on" } else { "off" }
        );
        match self.workload {
            "consume" => format!(
                "consume: {} records, {size}, {}, {partitions}, durability={}",
                group(self.records),
                plural(u64::from(self.consumers), "consumer"),
                self.durability
            ),
            "e2e" => format!(
                "e2e: {} records, {size}, {producers}, {}, {partitions}, {producer_settings}",
                group(self.records),
                plural(u64::from(self.consumers), "consumer")
            ),
            w => {
                format!("{w}: {} records, {size}, {producers}, {partitions}, {producer_settings}", group(self.records))
            }
        }
    }
}

impl TargetInfo {
    /// The `target:` line of a text report.
    pub fn line(&self) -> String {
        match self {
            TargetInfo::Embedded { address, data_dir } => {
                format!("embedded broker at {address}, data in {data_dir} (removed after the run)")
            }
            TargetInfo::External { address } => format!("broker at {address}"),
            TargetInfo::TransportOnly { address } => {
                format!("transport only: in-process gRPC server at {address} with storage switched off (the ceiling)")
            }
        }
    }
}

impl BrokerStats {
    /// The `memory:` and `disk:` lines of a text report.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(rss), Some(peak)) = (self.process_rss_bytes, self.process_peak_rss_bytes) {
            out.push(format!(
                "memory: RSS {}, peak {} (the whole bench process: embedded broker and clients)",
                bytes(rss),
                bytes(peak)
            ));
        }
        let ratio = self.data_dir_bytes as f64 / (self.payload_bytes.max(1) as f64);
        let stored =
            self.stored_log_bytes.map(|s| format!("; the log holds {} MB", num(s as f64 / 1e6))).unwrap_or_default();
        out.push(format!(
            "disk: {} MB in the data dir ({} MB apparent) for {} MB of payload written ({}x){stored}",
            num(self.data_dir_bytes as f64 / 1e6),
            num(self.data_dir_apparent_bytes as f64 / 1e6),
            num(self.payload_bytes as f64 / 1e6),
            num(ratio)
        ));
        out
    }
}

/// `1` → "1 producer", `2` → "2 producers".
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{} {word}s", group(n)) }
}

/// Thousands separators: 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits, no exponent: 81.234 → "81.2", 0.01234 → "0.0123".
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.abs() >= 100.0 || x == 0.0 {
        return format!("{x:.0}");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

/// Milliseconds, three significant digits: "0.412 ms", "12.3 ms", "1530 ms".
pub fn ms(x: f64) -> String {
    format!("{} ms", num(x))
}

/// Binary units for sizes: "100 B", "256 KiB", "1.5 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{} {unit}", num(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            workload: "produce",
            target: TargetInfo::Embedded { address: "127.0.0.1:1".into(), data_dir: "/tmp/x".into() },
            topic: "bench-1".into(),
            records: 1_000_000,
            record_size: 100,
            producers: 1,
            consumers: 0,
            partitions: 4,
            acks: "all".into(),
            durability: "interval".into(),
            batch_size: 256 * 1024,
            linger_ms: 5,
            compression: "none".into(),
            idempotence: true,
            rate: None,
            elapsed_s: 2.0,
            records_per_sec: 500_000.0,
            mb_per_sec: 50.0,
            latency: None,
            errors: 0,
            first_error: None,
            fill: None,
            broker: None,
            notes: vec![],
        }
    }

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(num(81.234), "81.2");
        assert_eq!(num(0.01234), "0.0123");
        assert_eq!(num(1.0), "1.00");
        assert_eq!(num(1530.4), "1530");
        assert_eq!(ms(0.412), "0.412 ms");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(256 * 1024), "256 KiB");
        assert_eq!(bytes(1536 * 1024), "1.50 MiB");
    }

    #[test]
    fn headline_names_the_settings() {
        let text = report().text();
        let first = text.lines().next().expect("a line");
        assert_eq!(
            first,
            "produce: 1,000,000 records, 100 B, 1 producer, 4 partitions, acks=all, \
             durability=interval, batch=256 KiB linger=5 ms compression=none idempotence=on"
        );
        assert!(text.contains("throughput: 500,000 records/s, 50.0 MB/s of payload (2.00 s)"), "{text}");
    }

    #[test]
    fn latency_line_shows_percentiles_and_mode() {
        let mut lat = Latency::new();
        for us in 1..=1000u64 {
            lat.record(Duration::from_micros(us));
        }
        let mut r = report();
        r.latency = lat.summary(LatencyKind::Ack, &mode(Some(50_000)));
        let text = r.text();
        let line = text.lines().find(|l| l.starts_with("latency:")).expect("latency line");
        assert_eq!(
            line,
            "latency: p50 0.500 ms, p99 0.990 ms, p99.9 0.999 ms, max 1.00 ms \
             (fixed rate 50,000/s; ack, 1,000 samples)"
        );
    }

    #[test]
    fn histograms_merge() {
        let (mut a, mut b) = (Latency::new(), Latency::new());
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        let s = a.summary(LatencyKind::EndToEnd, "max throughput").expect("samples");
        assert_eq!(s.samples, 2);
        assert!((s.max_ms - 3.0).abs() < 0.01, "{}", s.max_ms);
        assert!(Latency::new().summary(LatencyKind::Ack, "x").is_none());
    }

    #[test]
    fn json_is_one_object_with_the_same_figures() {
        let mut r = report();
        r.broker = Some(BrokerStats {
            process_rss_bytes: Some(100 << 20),
            process_peak_rss_bytes: Some(120 << 20),
            data_dir_bytes: 150_000_000,
            data_dir_apparent_bytes: 160_000_000,
            stored_log_bytes: Some(110_000_000),
            payload_bytes: 100_000_000,
        });
        let v: serde_json::Value = serde_json::from_str(&r.json()).expect("json");
        assert_eq!(v["records"], 1_000_000);
        assert_eq!(v["durability"], "interval");
        assert_eq!(v["target"]["kind"], "embedded");
        assert_eq!(v["broker"]["payload_bytes"], 100_000_000);
        let text = r.text();
        assert!(text.contains("memory: RSS 100 MiB, peak 120 MiB"), "{text}");
        assert!(text.contains("(1.50x)"), "{text}");
    }
}
