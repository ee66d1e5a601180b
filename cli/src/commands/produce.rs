//! `sluice produce`: one record per line of standard input.
//!
//! A thread reads stdin in large chunks (one read of up to a MiB, not one per line) and
//! hands them over whole; lines become zero-copy slices of their chunk. Every record's
//! delivery future goes to a collector task, so a record the broker refuses makes the
//! command fail even though sending never waits for acknowledgements.

use std::{
    io::{self, BufRead, BufReader, Read},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use sluice_client::{Admin, Client, ClientError, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use crate::args::ProduceArgs;

/// Bytes read from stdin at a time.
const READ_CHUNK: usize = 1 << 20;
/// Delivery futures waiting for the collector; bounds memory, never stalls the producer
/// for long because the collector only waits for batches already sent.
const PENDING_DELIVERIES: usize = 64 * 1024;

pub async fn run(client: Client, args: ProduceArgs) -> Result<()> {
    let started = Instant::now();
    // Fails early, before reading any input, on an unknown topic or partition.
    let partitions = Admin::new(client.clone()).partition_count(&args.topic).await?;
    if let Some(p) = args.partition {
        super::check_partition(&args.topic, p, partitions)?;
    }
    let producer = Producer::new(client, producer_config(&args)?);
    let failed = Arc::new(AtomicBool::new(false));
    let (deliveries, pending) = mpsc::channel(PENDING_DELIVERIES);
    let collector = tokio::spawn(collect(pending, failed.clone()));
    let mut input = spawn_stdin_reader()?;

    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut sent = 0u64;
    let sending: Result<()> = async {
        while let Some(chunk) = input.recv().await {
            let chunk = chunk.context("cannot read standard input")?;
            for line in lines(&chunk) {
                let record = to_record(&args.topic, args.partition, separator, line)
                    .with_context(|| format!("input line {}", sent + 1))?;
                let delivery = producer.send(record).await?;
                sent += 1;
                if deliveries.send(delivery).await.is_err() {
                    bail!("the delivery collector stopped");
                }
            }
            if failed.load(Ordering::Acquire) {
                break; // A record failed: stop reading; the collector reports it.
            }
        }
        Ok(())
    }
    .await;
    producer.close().await;
    drop(deliveries);
    let report = collector.await.context("the delivery collector failed")?;
    sending?;
    if let Some(error) = report.first_error {
        bail!("{} of {sent} records were not delivered to '{}': {error}", sent - report.delivered, args.topic);
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { report.delivered as f64 / secs } else { 0.0 };
    eprintln!("produced {} records to {} in {secs:.3} s ({rate:.0} records/s)", report.delivered, args.topic);
    Ok(())
}

fn producer_config(args: &ProduceArgs) -> Result<ProducerConfig> {
    let mut config = ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        enable_idempotence: args.idempotence,
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        ..ProducerConfig::default()
    };
    if let Some(ms) = args.linger_ms {
        config.linger = Duration::from_millis(ms);
    }
    if let Some(bytes) = args.batch_size {
        if bytes == 0 {
            bail!("--batch-size must be at least 1 byte");
        }
        config.batch_size = bytes;
    }
    Ok(config)
}

/// What the collector saw.
#[derive(Debug, Default)]
struct Report {
    delivered: u64,
    first_error: Option<ClientError>,
}

/// Awaits every delivery; the first failure raises `failed` so that reading stops.
async fn collect(mut pending: mpsc::Receiver<DeliveryFuture>, failed: Arc<AtomicBool>) -> Report {
    let mut report = Report::default();
    while let Some(delivery) = pending.recv().await {
        match delivery.await {
            Ok(_) => report.delivered += 1,
            Err(e) => {
                failed.store(true, Ordering::Release);
                report.first_error.get_or_insert(e);
            }
        }
    }
    report
}

fn to_record(topic: &str, partition: Option<u32>, separator: Option<&[u8]>, line: Bytes) -> Result<ProducerRecord> {
    let mut record = ProducerRecord::new(topic);
    record.partition = partition;
    match separator {
        None => record.value = Some(line),
        Some(sep) => {
            let Some(at) = find(&line, sep) else {
                bail!("no key separator '{}'", String::from_utf8_lossy(sep));
            };
            record.key = Some(line.slice(..at));
            record.value = Some(line.slice(at + sep.len()..));
        }
    }
    Ok(record)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The lines of a chunk without their line ends (`\n` or `\r\n`).
fn lines(chunk: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= chunk.len() {
            return None;
        }
        let end = chunk[start..].iter().position(|&b| b == b'\n').map_or(chunk.len(), |i| start + i);
        let next = end + 1;
        let end = if end > start && chunk[end - 1] == b'\r' { end - 1 } else { end };
        let line = chunk.slice(start..end);
        start = next;
        Some(line)
    })
}

fn spawn_stdin_reader() -> Result<mpsc::Receiver<io::Result<Bytes>>> {
    let (tx, rx) = mpsc::channel(4);
    // A plain thread, not spawn_blocking: a read blocked on a terminal must not keep
    // the runtime from shutting down when the command fails.
    std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || read_chunks(io::stdin().lock(), |chunk| tx.blocking_send(chunk).is_ok()))
        .context("cannot start the stdin reader")?;
    Ok(rx)
}

/// Reads `input` and passes it to `emit` in chunks that end at a line end (the last one
/// may not). Stops at the end of the input, on an error, or when `emit` returns false.
fn read_chunks(input: impl Read, mut emit: impl FnMut(io::Result<Bytes>) -> bool) {
    let mut reader = BufReader::with_capacity(READ_CHUNK, input);
    let mut pending = BytesMut::new();
    loop {
        let data = match reader.fill_buf() {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                emit(Err(e));
                return;
            }
        };
        if data.is_empty() {
            if !pending.is_empty() {
                emit(Ok(pending.split().freeze()));
            }
            return;
        }
        let read = data.len();
        let last_line_end = data.iter().rposition(|&b| b == b'\n');
        pending.extend_from_slice(data);
        reader.consume(read);
        if let Some(i) = last_line_end {
            let complete = pending.len() - read + i + 1;
            if !emit(Ok(pending.split_to(complete).freeze())) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_lines(s: &'static str) -> Vec<Bytes> {
        lines(&Bytes::from_static(s.as_bytes())).collect()
    }

    #[test]
    fn lines_strip_line_ends_and_keep_empty_lines() {
        assert_eq!(collect_lines("a\nb\r\n\nlast"), ["a", "b", "", "last"]);
        assert_eq!(collect_lines("a\n"), ["a"]);
        assert!(collect_lines("").is_empty());
    }

    #[test]
    fn key_separator_splits_at_the_first_occurrence() {
        let r = to_record("t", None, Some(b"::"), Bytes::from_static(b"k::v::w")).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::w"[..]));
        let r = to_record("t", Some(2), Some(b","), Bytes::from_static(b",v")).unwrap();
        assert_eq!((r.key.as_deref(), r.partition), (Some(&b""[..]), Some(2)));
        let err = to_record("t", None, Some(b"\t"), Bytes::from_static(b"novalue")).unwrap_err();
        assert!(err.to_string().contains("no key separator"), "{err}");
        let r = to_record("t", None, None, Bytes::from_static(b"a,b")).unwrap();
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"a,b"[..])));
    }

    #[test]
    fn chunks_end_at_line_ends_whatever_the_read_sizes() {
        /// Returns at most 3 bytes per read, to split lines across reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = b"first line\nsecond\n\nthird without end";
        let mut chunks = Vec::new();
        read_chunks(Trickle(input), |c| {
            chunks.push(c.unwrap());
            true
        });
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(c.last(), Some(&b'\n'), "{c:?}");
        }
        let all: Vec<Bytes> = chunks.iter().flat_map(|c| lines(c).collect::<Vec<_>>()).collect();
        assert_eq!(all, ["first line", "second", "", "third without end"]);
    }
}
