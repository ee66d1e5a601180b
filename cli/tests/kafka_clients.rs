#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Kafka clients nobody here wrote against `sluice dev`'s Kafka listener: kcat (Debian
//! package), confluent-kafka (librdkafka) and kafka-python (PyPI), driven by
//! `tests/kafka_compat/kafka_clients.py`. One truth for both protocols: what a Kafka
//! client produced, `sluice consume` reads with the same offset, key, value, headers and
//! timestamp, and what the gRPC producer wrote, Kafka consumers read the same way.
//!
//! The Python environment comes from `tests/kafka_compat/setup-venv.sh`, kcat from
//! `tests/kafka_compat/install-kcat.sh` (both run by `scripts/test.sh`). Under CI
//! (`CI=true`) a missing one fails the test; elsewhere it prints `SKIPPED: <reason>`.

mod common;
mod kafka_env;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use common::DevBroker;
use kafka_env::{kcat, py, python, sluice_consume};
use serde_json::Value;
use sluice_client::{Client, Producer, ProducerConfig, ProducerRecord};

#[test]
fn librdkafka_produces_every_codec_and_sluice_consume_reads_the_same_records() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    let md = py(&python, &["metadata", &broker.kafka_addr]);
    assert_eq!(md["brokers"]["0"], broker.kafka_addr.as_str(), "{md}");
    assert_eq!(md["controller_id"], 0, "{md}");
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kafka-{codec}");
        // The topic does not exist: librdkafka's Metadata auto-creates it.
        let sent = py(&python, &["produce", &broker.kafka_addr, &topic, "20", codec]);
        let sent = sent.as_array().unwrap();
        assert_eq!(sent.len(), 20);
        assert_eq!(sent[0]["offset"], 0);
        assert_eq!(sent[19]["offset"], 19);
        let by_kafka = py(&python, &["consume", &broker.kafka_addr, &topic, "20"]);
        assert_eq!(by_kafka.as_array().unwrap(), sent, "{codec}: librdkafka reads back what it sent");
        let by_grpc = sluice_consume(&broker, &topic, 20);
        assert_eq!(&by_grpc, sent, "{codec}: sluice consume reads what librdkafka sent");
    }
    let md = py(&python, &["metadata", &broker.kafka_addr]);
    assert_eq!(md["topics"]["kafka-zstd"]["partitions"]["0"]["leader"], 0, "{md}");
    assert_eq!(md["topics"]["kafka-zstd"]["partitions"]["0"]["isrs"], serde_json::json!([0]), "{md}");
}

#[test]
fn grpc_produced_records_are_read_by_kafka_consumers_with_the_same_offsets() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "from-grpc", "--partitions", "2"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = Client::connect(&broker.addr).await.unwrap();
        let producer = Producer::new(client, ProducerConfig::default());
        let mut acks = Vec::new();
        for i in 0..30 {
            let mut r = ProducerRecord::new("from-grpc")
                .partition(0)
                .value(format!("grpc-{i}"))
                .timestamp_ms(1_700_000_000_000 + i);
            if i % 3 != 0 {
                r = r.key(format!("k{i}"));
            }
            if i % 2 == 0 {
                r = r.header("trace", format!("t{i}"));
            }
            acks.push(producer.send(r).await.unwrap());
        }
        producer.flush().await;
        for a in acks {
            a.await.unwrap();
        }
    });
    let by_grpc = sluice_consume(&broker, "from-grpc", 30);
    for client in ["confluent", "kafka-python"] {
        let by_kafka = py(&python, &["consume", &broker.kafka_addr, "from-grpc", "30", client]);
        assert_eq!(by_kafka.as_array().unwrap(), &by_grpc, "{client} reads what the gRPC producer wrote");
    }
}

#[test]
fn kafka_python_codecs_seek_by_timestamp_and_offsets() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "kp", "--partitions", "1"]);
    let r = py(&python, &["kafka-python", &broker.kafka_addr, "kp"]);
    assert_eq!(r["count"], 50, "{r}");
    assert_eq!(r["first"], "gzip-0", "{r}");
    assert_eq!(r["last"], "None-9", "{r}");
    assert_eq!(r["by_time"], serde_json::json!([25, 1_700_000_000_025_i64]), "{r}");
    assert_eq!(r["after_last"], Value::Null, "{r}");
    assert_eq!((r["begin"].as_i64(), r["end"].as_i64()), (Some(0), Some(50)), "{r}");
}

#[test]
fn kafka_errors_reach_clients_as_kafka_error_codes() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "errors-topic", "--partitions", "1"]);
    broker.ok(&["produce", "errors-topic"]);
    let r = py(&python, &["errors", &broker.kafka_addr]);
    assert_eq!(r["unknown_partition"], "_UNKNOWN_PARTITION", "{r}");
}

#[test]
fn kcat_lists_metadata_produces_keys_and_headers_and_consumes_from_the_beginning() {
    let Some(kcat) = kcat() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "kcat", "--partitions", "3"]);
    let md = Command::new(&kcat).args(["-b", &broker.kafka_addr, "-L", "-J"]).output().unwrap();
    assert!(md.status.success(), "{}", String::from_utf8_lossy(&md.stderr));
    let md: Value = serde_json::from_slice(&md.stdout).unwrap();
    let topic = md["topics"].as_array().unwrap().iter().find(|t| t["topic"] == "kcat").expect("topic kcat");
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 3, "{md}");
    assert_eq!(md["brokers"][0]["name"], broker.kafka_addr.as_str(), "{md}");

    let mut p = Command::new(&kcat)
        .args(["-b", &broker.kafka_addr, "-P", "-t", "kcat", "-p", "1", "-K", ":", "-H", "origin=kcat"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(b"alice:one\nbob:two\ncarol:three\n").unwrap();
    assert!(p.wait().unwrap().success());

    let c = Command::new(&kcat)
        .args(["-b", &broker.kafka_addr, "-C", "-t", "kcat", "-p", "1", "-o", "beginning", "-e", "-J"])
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let got: Vec<Value> =
        String::from_utf8(c.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kv: Vec<(i64, &str, &str)> = got
        .iter()
        .map(|r| (r["offset"].as_i64().unwrap(), r["key"].as_str().unwrap(), r["payload"].as_str().unwrap()))
        .collect();
    assert_eq!(kv, [(0, "alice", "one"), (1, "bob", "two"), (2, "carol", "three")]);
    assert_eq!(got[0]["headers"], serde_json::json!(["origin", "kcat"]), "{:?}", got[0]);

    // The same records over gRPC.
    let out = broker.ok(&[
        "consume",
        "kcat",
        "--partition",
        "1",
        "--from-beginning",
        "--count",
        "3",
        "--format",
        "key-value",
    ]);
    assert_eq!(out, "alice\tone\nbob\ttwo\ncarol\tthree\n");
}
