//! Presentation: a tiny aligned-text table, byte sizes for people, and JSON views of
//! the API's topic types.

use std::fmt;

use serde_json::{Value, json};
use sluice_client::proto as pb;

/// Writes `text` to stdout. A closed pipe (`sluice topic list | head -1`) is not an
/// error: the reader has what it wanted.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => anyhow::Context::context(r, "cannot write to stdout"),
    }
}

/// Gap between table columns.
const GAP: &str = "  ";

/// A plain-text table: a header row and left- or right-aligned columns.
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let right = vec![false; headers.len()];
        Self { headers, right, rows: Vec::new() }
    }

    /// Right-aligns the given columns (for numbers).
    pub fn right_align(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).chain([self.headers.len()]).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                let pad = width - cell.chars().count();
                if i > 0 {
                    line.push_str(GAP);
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

pub fn topic_summary_json(t: &pb::TopicSummary) -> Value {
    json!({
        "name": t.name,
        "partitions": t.partitions,
        "replication_factor": t.replication_factor,
        "internal": t.internal,
    })
}

pub fn topic_description_json(t: &pb::TopicDescription) -> Value {
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "log_start_offset": p.log_start_offset,
                "log_end_offset": p.log_end_offset,
                "high_watermark": p.high_watermark,
                "size_bytes": p.size_bytes,
                "batch_count": p.batch_count,
                "replicas": p.replicas,
                "isr": p.isr,
            })
        })
        .collect();
    let config: serde_json::Map<String, Value> =
        sorted(&t.config).into_iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut overridden = t.overridden.clone();
    overridden.sort();
    json!({
        "name": t.name,
        "internal": t.internal,
        "partitions": partitions,
        "config": config,
        "overridden": overridden,
    })
}

/// The text view of a topic: a summary line, the partition table and the config.
pub fn topic_description_text(t: &pb::TopicDescription) -> String {
    let mut out = format!(
        "Topic: {}  partitions: {}{}\n\n",
        t.name,
        t.partitions.len(),
        if t.internal { "  (internal)" } else { "" }
    );
    let mut table = Table::new([
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
        "LOG START",
        "LOG END",
        "HIGH WATERMARK",
        "SIZE",
        "BATCHES",
    ])
    .right_align(&[0, 1, 2, 5, 6, 7, 8, 9]);
    let ids = |v: &[i32]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let mut partitions: Vec<&pb::PartitionDescription> = t.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition);
    for p in partitions {
        table.row([
            p.partition.to_string(),
            if p.leader < 0 { "none".to_string() } else { p.leader.to_string() },
            p.leader_epoch.to_string(),
            ids(&p.replicas),
            ids(&p.isr),
            p.log_start_offset.to_string(),
            p.log_end_offset.to_string(),
            p.high_watermark.to_string(),
            human_bytes(p.size_bytes),
            p.batch_count.to_string(),
        ]);
    }
    out.push_str(&table.to_string());
    out.push_str("\nConfig (* = set on this topic):\n");
    let mut config = Table::new(["", "KEY", "VALUE"]);
    for (k, v) in sorted(&t.config) {
        let mark = if t.overridden.contains(k) { "*" } else { "" };
        config.row([mark, k.as_str(), v.as_str()]);
    }
    // The header row of the config table is noise; keep the rows only.
    for line in config.to_string().lines().skip(1) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn sorted(map: &std::collections::HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(["TOPIC", "PARTITIONS"]).right_align(&[1]);
        t.row(["orders", "3"]);
        t.row(["a", "12"]);
        assert_eq!(t.to_string(), "TOPIC   PARTITIONS\norders           3\na               12\n");
    }

    #[test]
    fn table_handles_short_rows_and_unicode() {
        let mut t = Table::new(["A", "B"]);
        t.row(["é"]);
        assert_eq!(t.to_string(), "A  B\né\n");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    fn description() -> pb::TopicDescription {
        pb::TopicDescription {
            name: "orders".into(),
            config: [("retention.ms".to_string(), "-1".to_string()), ("durability".into(), "interval".into())]
                .into_iter()
                .collect(),
            overridden: vec!["retention.ms".into()],
            partitions: (0..2)
                .map(|p| pb::PartitionDescription { partition: p, log_end_offset: 10, ..Default::default() })
                .collect(),
            internal: false,
        }
    }

    #[test]
    fn description_text_marks_overrides() {
        let text = topic_description_text(&description());
        assert!(text.starts_with("Topic: orders  partitions: 2\n"), "{text}");
        assert!(text.contains("*  retention.ms  -1"), "{text}");
        assert!(text.contains("   durability    interval"), "{text}");
        assert!(text.contains("HIGH WATERMARK"), "{text}");
    }

    #[test]
    fn description_json_has_partitions_and_sorted_config() {
        let v = topic_description_json(&description());
        assert_eq!(v["partitions"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["partitions"][1]["log_end_offset"], 10);
        assert_eq!(v["config"]["retention.ms"], "-1");
        assert_eq!(v["overridden"][0], "retention.ms");
    }
}
