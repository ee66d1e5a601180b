//! A Kafka client nobody here wrote (librdkafka, through confluent-kafka) producing with
//! `acks=all` and idempotence to `sluice dev --brokers 3 --restart` while the partition
//! leader is killed with `kill -9`, again and again: librdkafka follows each leader change
//! from Kafka Metadata and retries, and the checker at the end reads the partition over
//! gRPC and finds every acknowledged record at the offset librdkafka was told, once, in
//! order.
//!
//! Needs `sluice-broker` next to `sluice` and the Python venv of
//! `tests/kafka_compat/setup-venv.sh` (run by `scripts/test.sh`). Under CI (`CI=true`) a
//! missing one fails the test; elsewhere it prints `SKIPPED: <reason>`.
//! `SLUICE_KAFKA_DRILL_KILLS` sets the number of kills (5 by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

mod common;
mod kafka_env;

use common::dev_cluster::*;

#[test]
fn librdkafka_acks_all_follows_leader_kill_9_and_loses_nothing() {
    let Some(bin) = broker_bin() else { return };
    let Some(python) = kafka_env::python() else { return };
    let kills: usize = std::env::var("SLUICE_KAFKA_DRILL_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let c = DevCluster::start(&bin, &["--restart"]);
    c.ok(0, &["topic", "create", "kdrill", "-r", "3", "--config", "min.insync.replicas=2"]);
    full_isr(&c, "kdrill");
    let bootstrap: Vec<String> = c.brokers.values().map(|b| b.kafka.clone()).collect();
    let stop = c.dir.path().join("kdrill.stop");
    let log = c.dir.path().join("kdrill.acks");
    let producer = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kafka_compat/kafka_clients.py"))
        .args(["steady-produce", &bootstrap.join(","), "kdrill", "100"])
        .arg(&stop)
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // librdkafka logs every refused connection: to a file, so no pipe fills up.
        .stderr(std::fs::File::create(c.dir.path().join("kdrill.stderr")).unwrap())
        .spawn()
        .expect("start kafka_clients.py steady-produce");
    let acked = |log: &Path| read_log(log).0.len();
    wait_for("librdkafka's first 100 acknowledgements", &c, || (acked(&log) >= 100).then_some(()));

    let mut failovers = Vec::new();
    for round in 1..=kills {
        let p = full_isr(&c, "kdrill");
        let leader = p["leader"].as_i64().unwrap() as i32;
        let restarts = c.restarts(leader);
        let pid = c.pid(leader);
        let s = Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap();
        assert!(s.success(), "kill -9 {pid}");
        let killed = now();
        let failover = wait_for(&format!("librdkafka's first acknowledgement after kill {round}"), &c, || {
            let (acks, _) = read_log(&log);
            acks.values().filter(|a| a.sent > killed).map(|a| a.acked - killed).reduce(f64::min)
        });
        println!(
            "kill {round}/{kills}: leader {leader} (pid {pid}, leader epoch {}) -> librdkafka's first acknowledgement after {:.0} ms",
            p["leader_epoch"],
            failover * 1000.0
        );
        failovers.push(failover);
        wait_for(&format!("broker {leader} to be restarted"), &c, || (c.restarts(leader) > restarts).then_some(()));
    }
    full_isr(&c, "kdrill");
    let before = acked(&log);
    wait_for("100 more acknowledgements", &c, || (acked(&log) >= before + 100).then_some(()));
    std::fs::write(&stop, b"").unwrap();
    let out = wait_output(producer.wait_with_output_timeout(Duration::from_secs(180)), &c);
    let (acks, errors) = read_log(&log);
    println!("librdkafka: {} (delivery errors: {errors:?})", out.trim());

    failovers.sort_by(f64::total_cmp);
    let at = |q: f64| failovers[((failovers.len() as f64 * q).ceil() as usize).clamp(1, failovers.len()) - 1];
    println!(
        "failover over {} kills (kill -9 -> librdkafka's first acks=all acknowledgement): p50={:.0} ms p99={:.0} ms max={:.0} ms",
        failovers.len(),
        at(0.5) * 1000.0,
        at(0.99) * 1000.0,
        failovers.last().unwrap() * 1000.0
    );

    // The checker: everything in partition 0 up to the high watermark (the leader's: a
    // follower's lags by a fetch round), over gRPC.
    let leader = full_isr(&c, "kdrill")["leader"].as_i64().unwrap() as i32;
    let end = c.partition0(leader, "kdrill").unwrap()["high_watermark"].as_u64().unwrap();
    let read = c.ok(
        leader,
        &[
            "consume",
            "kdrill",
            "--partition",
            "0",
            "--from-beginning",
            "--count",
            &end.to_string(),
            "--format",
            "json",
            "--timeout-ms",
            "30000",
        ],
    );
    let log_order: Vec<(u64, u64)> = read
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|r| {
            let i = r["value"].as_str()?.strip_prefix("kafka-")?.parse().ok()?;
            Some((r["offset"].as_u64()?, i))
        })
        .collect();
    let at_offset: BTreeMap<u64, u64> = log_order.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let duplicates = log_order.iter().filter(|(_, i)| !seen.insert(*i)).count();
    let reordered = log_order.windows(2).filter(|w| w[0].1 > w[1].1).count();
    let lost = acks.keys().filter(|i| !seen.contains(i)).count();
    let offsets_reused = acks.iter().filter(|(i, a)| at_offset.get(&a.offset).is_some_and(|v| v != *i)).count();
    println!(
        "acked={} lost={lost} duplicates={duplicates} reordered={reordered} offsets_reused={offsets_reused} read={} errors={}",
        acks.len(),
        log_order.len(),
        errors.len()
    );
    let missing: Vec<(&u64, u64)> =
        acks.iter().filter(|(i, _)| !seen.contains(i)).map(|(i, a)| (i, a.offset)).take(20).collect();
    assert_eq!(
        (lost, duplicates, reordered, offsets_reused),
        (0, 0, 0, 0),
        "lost (number, offset): {missing:?}; high watermark {end}"
    );
    assert!(errors.is_empty(), "librdkafka gave up on records: {errors:?}");
    assert!(acks.len() >= 200, "only {} acknowledged", acks.len());
}

/// One acknowledged record of the producer's log: its offset, when it was sent and
/// acknowledged (wall-clock seconds).
struct Ack {
    offset: u64,
    sent: f64,
    acked: f64,
}

/// The producer's log so far: acknowledged records by number, and delivery errors.
fn read_log(log: &Path) -> (BTreeMap<u64, Ack>, Vec<String>) {
    let mut acks = BTreeMap::new();
    let mut errors = Vec::new();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // The last line may be half written.
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let i = v["i"].as_u64().unwrap();
        if let Some(e) = v["error"].as_str() {
            errors.push(format!("{i}: {e}"));
            continue;
        }
        let ack = Ack {
            offset: v["offset"].as_u64().unwrap(),
            sent: v["sent"].as_f64().unwrap(),
            acked: v["acked"].as_f64().unwrap(),
        };
        acks.insert(i, ack);
    }
    (acks, errors)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

trait WaitTimeout {
    fn wait_with_output_timeout(self, limit: Duration) -> std::io::Result<std::process::Output>;
}

impl WaitTimeout for std::process::Child {
    /// `wait_with_output`, killing the child after `limit`.
    fn wait_with_output_timeout(mut self, limit: Duration) -> std::io::Result<std::process::Output> {
        let deadline = Instant::now() + limit;
        while self.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_with_output()
    }
}

fn wait_output(out: std::io::Result<std::process::Output>, c: &DevCluster) -> String {
    let out = out.unwrap();
    let stderr = std::fs::read_to_string(c.dir.path().join("kdrill.stderr")).unwrap_or_default();
    assert!(out.status.success(), "kafka_clients.py steady-produce ({}): {}", out.status, tail(&stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
