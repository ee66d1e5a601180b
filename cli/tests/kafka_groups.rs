#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Kafka's classic group protocol and admin APIs with clients nobody here wrote:
//! confluent-kafka (three members splitting six partitions, commits, a rebalance when one
//! leaves; AdminClient topics and configs; a transactional producer refused), kafka-python
//! (the same group, its idempotent producer and KafkaAdminClient), kcat's
//! balanced consumer (-G) and aiokafka's group consumer. Offsets committed over Kafka
//! are the group's offsets for `sluice group describe` too.

mod common;
mod kafka_env;

use std::process::Command;

use common::DevBroker;
use kafka_env::{kcat, py, python};
use serde_json::Value;

fn describe(broker: &DevBroker, group: &str) -> Value {
    serde_json::from_str(&broker.ok(&["group", "describe", group, "--output", "json"])).unwrap()
}

fn committed(d: &Value) -> Vec<(u64, u64)> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_u64().unwrap(), p["committed"].as_u64().unwrap_or(0)))
        .collect()
}

#[test]
fn three_librdkafka_members_split_six_partitions_and_rebalance_when_one_leaves() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "grouped", "--partitions", "6"]);
    let r = py(&python, &["group", &broker.kafka_addr, "grouped", "g3"]);
    assert_eq!(r["before"], serde_json::json!([2, 2, 2]), "{r}");
    assert_eq!(r["after"], serde_json::json!([3, 3]), "{r}");
    // Every record was committed over Kafka; the gRPC side sees the same offsets.
    let d = describe(&broker, "g3");
    assert_eq!(committed(&d), (0..6).map(|p| (p, 110)).collect::<Vec<_>>(), "{d}");
    assert_eq!(d["total_lag"], 0, "{d}");
}

#[test]
fn kafka_python_admin_idempotent_producer_and_a_group_of_three_that_rebalances() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    let r = py(&python, &["kafka-python-group", &broker.kafka_addr, "kp-grouped", "kp3"]);
    assert_eq!((&r["created"], &r["deleted"]), (&Value::Bool(true), &Value::Bool(true)), "{r}");
    assert_eq!(r["before"], serde_json::json!([2, 2, 2]), "{r}");
    assert_eq!(r["after"], serde_json::json!([3, 3]), "{r}");
    assert_eq!(r["read"], 660, "{r}");
    let d = describe(&broker, "kp3");
    assert_eq!(committed(&d), (0..6).map(|p| (p, 110)).collect::<Vec<_>>(), "{d}");
    let topics = broker.ok(&["topic", "list"]);
    assert!(topics.contains("kp-grouped") && !topics.contains("kp-grouped-scratch"), "{topics}");
}

#[test]
fn confluent_admin_manages_topics_and_configs_and_transactions_are_refused() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    let r = py(&python, &["admin", &broker.kafka_addr]);
    assert_eq!(r["again"], "TOPIC_ALREADY_EXISTS", "{r}");
    assert_eq!(r["partitions"], 4, "{r}");
    assert_eq!(r["dry_created"], false, "{r}");
    assert_eq!(r["retention"], "60000", "{r}");
    assert_eq!(r["altered"], "120000", "{r}");
    assert_eq!(r["cluster"], serde_json::json!({"id": "sluice", "controller": 0, "nodes": 1}), "{r}");
    assert_eq!(r["deleted"], true, "{r}");
    assert_eq!(r["transactions"], "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "{r}");
    let topics = broker.ok(&["topic", "list"]);
    assert!(!topics.contains("adm"), "{topics}");
}

#[test]
fn aiokafka_produces_and_a_group_consumer_reads_and_commits() {
    let Some(python) = python() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "aio", "--partitions", "2"]);
    let r = py(&python, &["aiokafka", &broker.kafka_addr, "aio", "aio-group"]);
    assert_eq!(r["count"], 50, "{r}");
    let d = describe(&broker, "aio-group");
    assert_eq!(committed(&d), vec![(0, 25), (1, 25)], "{d}");
}

#[test]
fn kcat_balanced_consumer_reads_and_commits_its_group_offsets() {
    let Some(kcat) = kcat() else { return };
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "kg", "--partitions", "2"]);
    let mut p =
        broker.sluice(&["produce", "kg", "--partition", "0"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(p.stdin.as_mut().unwrap(), b"a\nb\nc\n").unwrap();
    drop(p.stdin.take());
    assert!(p.wait().unwrap().success());
    let out = Command::new(&kcat)
        .args(["-b", &broker.kafka_addr, "-G", "kcat-group", "kg", "-c", "3", "-q", "-f", "%s\n"])
        .args(["-X", "auto.offset.reset=earliest"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\nc\n");
    let d = describe(&broker, "kcat-group");
    let p0 = d["partitions"].as_array().unwrap().iter().find(|p| p["partition"] == 0).cloned();
    assert_eq!(p0.map(|p| p["committed"].clone()), Some(serde_json::json!(3)), "{d}");
}
