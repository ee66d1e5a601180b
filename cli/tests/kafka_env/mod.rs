//! Shared by the Kafka-client tests: the Python venv and kcat (SKIPPED when missing,
//! outside CI), the client script, and `sluice consume --format json`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::common::DevBroker;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

fn missing(reason: String) -> Option<PathBuf> {
    if under_ci() {
        panic!("required under CI: {reason}");
    }
    println!("SKIPPED: {reason}");
    None
}

/// The venv's python (with confluent-kafka, kafka-python, aiokafka), or `None` after
/// printing why the test is skipped.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    match Command::new("bash").arg(repo().join("tests/kafka_compat/setup-venv.sh")).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("export SLUICE_PYTHON=").map(PathBuf::from))
            .or_else(|| missing("setup-venv.sh printed no SLUICE_PYTHON".into())),
        Ok(out) => missing(format!("setup-venv.sh failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => missing(format!("cannot run setup-venv.sh: {e}")),
    }
}

pub fn kcat() -> Option<PathBuf> {
    match Command::new("kcat").arg("-V").output() {
        Ok(out) if out.status.success() => Some(PathBuf::from("kcat")),
        _ => missing("kcat is not installed (tests/kafka_compat/install-kcat.sh installs it)".into()),
    }
}

pub fn py(python: &Path, args: &[&str]) -> Value {
    let out = Command::new(python)
        .arg(repo().join("tests/kafka_compat/kafka_clients.py"))
        .args(args)
        .output()
        .expect("run kafka_clients.py");
    assert!(out.status.success(), "kafka_clients.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `sluice consume --format json` of partition 0, from the beginning, as JSON values.
pub fn sluice_consume(broker: &DevBroker, topic: &str, count: usize) -> Vec<Value> {
    let n = count.to_string();
    let out = broker.ok(&[
        "consume",
        topic,
        "--partition",
        "0",
        "--from-beginning",
        "--count",
        &n,
        "--format",
        "json",
        "--timeout-ms",
        "20000",
    ]);
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
