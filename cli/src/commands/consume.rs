//! `sluice consume`: prints records, one per line, until `--count`, `--timeout-ms` or
//! Ctrl-C.
//!
//! Every partition keeps one fetch in flight and its records come back in offset
//! order, so the output preserves each partition's order (partitions interleave).

use std::{
    borrow::Cow,
    io::{self, BufWriter, Write},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_client::{Admin, AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, StartOffset};

use crate::args::{ConsumeArgs, RecordFormat};

/// How long one poll waits when no `--timeout-ms` bounds it.
const POLL: Duration = Duration::from_secs(1);
/// Output buffer; flushed after every poll, so interactive use still sees records at once.
const OUT_BUFFER: usize = 256 * 1024;

pub async fn run(client: Client, args: ConsumeArgs) -> Result<()> {
    if let Some(group) = args.group.clone() {
        return super::consume_group::run(client, &group, args).await;
    }
    let stop = crate::signal::listen();
    let partitions = Admin::new(client.clone()).partition_count(&args.topic).await?;
    let assigned: Vec<u32> = match args.partition {
        Some(p) => {
            super::check_partition(&args.topic, p, partitions)?;
            vec![p]
        }
        None => (0..partitions).collect(),
    };
    let start = match (args.offset, args.from_beginning) {
        (Some(offset), _) => StartOffset::Offset(offset),
        (None, true) => StartOffset::Earliest,
        (None, false) => StartOffset::Latest,
    };
    let config = ConsumerConfig {
        // An explicit offset that is out of range is the user's mistake: report it with
        // the valid range rather than silently jumping elsewhere.
        auto_offset_reset: if args.offset.is_some() { AutoOffsetReset::None } else { AutoOffsetReset::Earliest },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config);
    for p in assigned {
        consumer.assign(&args.topic, p, start).await?;
    }

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(OUT_BUFFER, stdout.lock());
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut consumed = 0u64;
    tokio::pin!(stop);
    loop {
        let wanted = args.count.map_or(usize::MAX, |c| usize::try_from(c - consumed).unwrap_or(usize::MAX));
        if wanted == 0 {
            break;
        }
        let wait = match idle_limit {
            Some(limit) => match limit.checked_sub(last_record.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            },
            None => POLL,
        };
        let records = tokio::select! {
            _ = &mut stop => break,
            records = consumer.poll(wait) => records?,
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let batch = &records[..records.len().min(wanted)];
        if !written(write_records(&mut out, batch, args.format))? {
            return Ok(()); // The reader went away (`| head`): nothing left to do.
        }
        consumed += batch.len() as u64;
    }
    if !written(out.flush())? {
        return Ok(());
    }
    eprintln!("consumed {consumed} records from {}", args.topic);
    Ok(())
}

/// `Ok(false)` when stdout was closed by its reader, which ends the command quietly.
pub(super) fn written(result: io::Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

pub(super) fn write_records(out: &mut impl Write, records: &[ConsumerRecord], format: RecordFormat) -> io::Result<()> {
    for r in records {
        write_record(out, r, format)?;
    }
    out.flush()
}

fn bytes(b: &Option<bytes::Bytes>) -> &[u8] {
    b.as_deref().unwrap_or_default()
}

fn write_record(out: &mut impl Write, r: &ConsumerRecord, format: RecordFormat) -> io::Result<()> {
    match format {
        RecordFormat::Value => {
            out.write_all(bytes(&r.value))?;
        }
        RecordFormat::KeyValue => {
            out.write_all(bytes(&r.key))?;
            out.write_all(b"\t")?;
            out.write_all(bytes(&r.value))?;
        }
        RecordFormat::Json => serde_json::to_writer(&mut *out, &JsonRecord::from(r))?,
    }
    out.write_all(b"\n")
}

/// The `--format json` view of a record.
#[derive(Debug, Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    headers: Vec<JsonHeader<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<Cow<'a, str>>,
}

impl<'a> From<&'a ConsumerRecord> for JsonRecord<'a> {
    fn from(r: &'a ConsumerRecord) -> Self {
        let text = |b: &'a Option<bytes::Bytes>| b.as_deref().map(String::from_utf8_lossy);
        Self {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp_ms,
            key: text(&r.key),
            value: text(&r.value),
            headers: r.headers.iter().map(|h| JsonHeader { key: &h.key, value: text(&h.value) }).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_client::Header;

    use super::*;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 7,
            timestamp_ms: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(b"caf\xc3\xa9 \xff")),
            headers: vec![Header { key: "trace".into(), value: None }],
        }
    }

    fn render(format: RecordFormat) -> Vec<u8> {
        let mut out = Vec::new();
        write_records(&mut out, &[record()], format).unwrap();
        out
    }

    #[test]
    fn value_and_key_value_keep_bytes() {
        assert_eq!(render(RecordFormat::Value), b"caf\xc3\xa9 \xff\n");
        assert_eq!(render(RecordFormat::KeyValue), b"k1\tcaf\xc3\xa9 \xff\n");
        let mut r = record();
        (r.key, r.value) = (None, None);
        let mut out = Vec::new();
        write_record(&mut out, &r, RecordFormat::KeyValue).unwrap();
        assert_eq!(out, b"\t\n");
    }

    #[test]
    fn json_is_one_object_per_line_with_lossy_text() {
        let out = String::from_utf8(render(RecordFormat::Json)).unwrap();
        assert_eq!(out.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["topic"], "orders");
        assert_eq!((v["partition"].as_u64(), v["offset"].as_u64()), (Some(2), Some(7)));
        assert_eq!(v["timestamp"], 1_700_000_000_000_i64);
        assert_eq!(v["key"], "k1");
        assert_eq!(v["value"], "café \u{fffd}");
        assert_eq!(v["headers"][0]["key"], "trace");
        assert!(v["headers"][0]["value"].is_null());
    }
}
