#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Cross-implementation tests of the batch format against kafka-python (PyPI), driven by
//! `tests/kafka_compat/kafka_compat.py`, for every codec both ways:
//!
//! - batches built by kafka-python's `DefaultRecordBatchBuilder` are accepted over gRPC
//!   Produce (raw `batch` bytes), stored byte for byte (only base offset and leader
//!   epoch written in), and read back by `sluice consume` with every key, value, header
//!   and timestamp intact;
//! - batches the Sluice producer wrote, fetched raw, are parsed by kafka-python's
//!   `MemoryRecords` / `DefaultRecordBatch` (CRC checked) into the records sent.
//!
//! The Python environment comes from `tests/kafka_compat/setup-venv.sh` (a cached venv
//! outside the checkout), or from `SLUICE_PYTHON`. Under CI (`CI=true`) a missing
//! environment fails the test; elsewhere the test prints `SKIPPED: <reason>`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::DevBroker;
use serde_json::{Value, json};
use sluice_client::{Client, Producer, ProducerConfig, ProducerRecord, proto};
use sluice_core::Compression;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script() -> PathBuf {
    repo().join("tests/kafka_compat/kafka_compat.py")
}

fn under_ci() -> bool {
    // The rule of scripts/test.sh and the envtest harness: "1" or "true", any case.
    std::env::var("CI").is_ok_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

/// The venv's python, or `None` after printing why the test is skipped.
fn python() -> Option<PathBuf> {
    let found = match std::env::var_os("SLUICE_PYTHON") {
        Some(p) => Ok(PathBuf::from(p)),
        None => match Command::new("bash").arg(repo().join("tests/kafka_compat/setup-venv.sh")).output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("export SLUICE_PYTHON=").map(PathBuf::from))
                .ok_or_else(|| "setup-venv.sh printed no SLUICE_PYTHON".to_string()),
            Ok(out) => Err(format!("setup-venv.sh failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => Err(format!("cannot run setup-venv.sh: {e}")),
        },
    };
    match found {
        Ok(p) => Some(p),
        Err(reason) if under_ci() => panic!("the kafka-python environment is required under CI: {reason}"),
        Err(reason) => {
            println!("SKIPPED: {reason}");
            None
        }
    }
}

fn run_python(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python).arg(script()).args(args).output().expect("run kafka_compat.py");
    assert!(out.status.success(), "kafka_compat.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn fetch_all(client: &Client, topic: &str, partition: u32) -> bytes::Bytes {
    let req = proto::FetchRequest {
        topic: topic.into(),
        partition,
        offset: 0,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 16 << 20,
        replica_id: None,
        current_leader_epoch: None,
    };
    client.raw().fetch(req).await.unwrap().into_inner().batches
}

/// `sluice consume --format json` lines as kafka_compat.py's record objects.
fn consumed(broker: &DevBroker, topic: &str, partition: u32, n: usize) -> Vec<Value> {
    let out = broker.ok(&[
        "consume",
        topic,
        "--partition",
        &partition.to_string(),
        "--from-beginning",
        "--format",
        "json",
        "-n",
        &n.to_string(),
        "--timeout-ms",
        "10000",
    ]);
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let headers: Vec<Value> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| json!([h["key"].clone(), h["value"].clone()]))
                .collect();
            json!({"offset": v["offset"], "timestamp": v["timestamp"], "key": v["key"], "value": v["value"],
                   "headers": headers})
        })
        .collect()
}

#[test]
fn kafka_python_batches_are_stored_as_sent_and_consumed_intact() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    let dir = broker.dir.path().join("from-kafka-python");
    std::fs::create_dir(&dir).unwrap();
    run_python(&python, &["build", dir.to_str().unwrap()]);
    broker.ok(&["topic", "create", "kp", "--partitions", "5"]);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&broker.addr)).unwrap();
    for (p, codec) in CODECS.iter().enumerate() {
        let p = p as u32;
        let sent = std::fs::read(dir.join(format!("{codec}.batch"))).unwrap();
        let expected: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{codec}.json"))).unwrap()).unwrap();
        let req = proto::ProduceRequest {
            topic: "kp".into(),
            partition: p,
            acks: proto::Acks::All as i32,
            batch: sent.clone().into(),
            producer_id: -1,
            base_sequence: -1,
        };
        let r = rt.block_on(client.raw().produce(req)).unwrap_or_else(|s| panic!("{codec}: {s:?}")).into_inner();
        assert_eq!((r.base_offset, r.record_count as usize), (Some(0), expected.len()), "{codec}");

        // Stored as sent: only base offset (0 here) and partition leader epoch (0) differ.
        let stored = rt.block_on(fetch_all(&client, "kp", p));
        assert_eq!(stored.len(), sent.len(), "{codec}");
        assert_eq!(&stored[..12], &sent[..12], "{codec}: base offset and length");
        assert_eq!(&stored[12..16], &0i32.to_be_bytes(), "{codec}: the broker's leader epoch");
        assert_eq!(&stored[16..], &sent[16..], "{codec}: everything from magic on is the producer's");

        assert_eq!(consumed(&broker, "kp", p, expected.len()), expected, "{codec}");
    }
}

#[test]
fn sluice_batches_are_read_by_kafka_python() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "back", "--partitions", "5"]);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&broker.addr)).unwrap();
    let base_ts = 1_700_000_000_000i64;
    let expected: Vec<Value> = (0..60)
        .map(|i: i64| {
            let key = (i % 4 != 0).then(|| format!("k-{}", i % 9));
            let headers = if i % 2 == 0 { json!([["trace", format!("t{i}")], ["nothing", null]]) } else { json!([]) };
            json!({"offset": i, "timestamp": if i == 3 { base_ts - 40 } else { base_ts + i }, "key": key,
                   "value": format!("{{\"n\":{i},\"text\":\"r\u{e9}p\u{e9}t\u{e9} r\u{e9}p\u{e9}t\u{e9}\"}}"),
                   "headers": headers})
        })
        .collect();
    for (p, codec) in CODECS.iter().enumerate() {
        let p = p as u32;
        let config = ProducerConfig {
            compression: codec.parse::<Compression>().unwrap(),
            linger: Duration::from_millis(20),
            batch_size: 2048,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client.clone(), config);
        rt.block_on(async {
            let mut pending = Vec::new();
            for r in &expected {
                let mut rec = ProducerRecord::new("back")
                    .partition(p)
                    .timestamp_ms(r["timestamp"].as_i64().unwrap())
                    .value(r["value"].as_str().unwrap().to_string());
                if let Some(k) = r["key"].as_str() {
                    rec = rec.key(k.to_string());
                }
                for h in r["headers"].as_array().unwrap() {
                    let value = h[1].as_str().map(|v| bytes::Bytes::from(v.to_string()));
                    rec.headers.push(sluice_client::Header { key: h[0].as_str().unwrap().into(), value });
                }
                pending.push(producer.send(rec).await.unwrap());
            }
            for d in pending {
                d.await.unwrap();
            }
        });
        let file = broker.dir.path().join(format!("back-{codec}.bin"));
        std::fs::write(&file, rt.block_on(fetch_all(&client, "back", p))).unwrap();
        let batches: Vec<Value> =
            serde_json::from_str(&run_python(&python, &["parse", file.to_str().unwrap()])).unwrap();
        assert!(batches.len() > 1, "{codec}: 60 records in 2 KiB batches make several batches");
        let mut next = 0;
        let mut records = Vec::new();
        for b in &batches {
            assert_eq!(b["codec"], *codec, "{b}");
            assert_eq!((b["base_offset"].as_i64(), b["leader_epoch"].as_i64()), (Some(next), Some(0)), "{codec}");
            next += b["record_count"].as_i64().unwrap();
            records.extend(b["records"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(records, expected, "{codec}");
    }
}
