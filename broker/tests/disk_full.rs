//! A full disk: a `sluice-broker` process on a small tmpfs. Produce is refused with
//! RESOURCE_EXHAUSTED naming the disk, nothing refused is stored, reads keep working, and
//! once space is freed produce succeeds again without a restart. Needs root (mount);
//! under CI a missing mount fails, elsewhere the test prints SKIPPED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::{BrokerProcess, connect, free_port};
use sluice_client::{
    Admin, AutoOffsetReset, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    StartOffset,
};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Mounts a tmpfs of `size` on `dir`; false (after printing SKIPPED) when not possible.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(!ci(), "cannot mount a tmpfs (needs root)");
        println!("SKIPPED: cannot mount a tmpfs here (needs root)");
    }
    ok
}

/// Fills the filesystem of `dir` with `file` until `leave` bytes (plus the broker's
/// 8 MiB reserve) are free.
fn fill(dir: &Path, file: &Path, leave: u64) {
    let out = std::process::Command::new("stat").args(["-f", "-c", "%a %S", dir.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    let free = it.next().unwrap() * it.next().unwrap();
    let size = free.saturating_sub(leave + (8 << 20));
    std::fs::write(file, vec![1u8; size as usize]).unwrap();
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
    }
}

async fn read_all(addr: &str, topic: &str) -> Vec<String> {
    let client = connect(addr).await;
    let (hw, _) =
        Admin::new(client.clone()).list_offset(topic, 0, sluice_client::proto::OffsetSpec::Latest, 0).await.unwrap();
    let mut c = Consumer::new(
        client,
        ConsumerConfig { auto_offset_reset: AutoOffsetReset::None, check_crcs: true, ..Default::default() },
    );
    c.assign(topic, 0, StartOffset::Earliest).await.unwrap();
    let mut out = Vec::new();
    while c.position(topic, 0).unwrap() < hw {
        for r in c.poll(Duration::from_secs(5)).await.unwrap() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_produce_keeps_reads_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    if !mount_tmpfs(&mnt, "24m") {
        return;
    }
    let _unmount = Unmount(&mnt);
    let data = mnt.join("data");
    let filler = mnt.join("filler");
    let mut broker = BrokerProcess::spawn(&data, free_port(), &["--segment-bytes", "1048576"]);
    broker.wait_ready();
    let client = connect(&broker.addr).await;
    let admin = Admin::new(client.clone());
    for (topic, durability) in [("always", "always"), ("interval", "interval")] {
        admin
            .create_topic(topic, 1, BTreeMap::from([("durability".to_string(), durability.to_string())]))
            .await
            .unwrap();
    }
    let producer = Producer::new(
        client,
        ProducerConfig { linger: Duration::ZERO, delivery_timeout: Duration::from_millis(1500), ..Default::default() },
    );
    let value = "v".repeat(60_000);
    for topic in ["always", "interval"] {
        // Leave a few MiB free, then write until the disk is full.
        fill(&mnt, &filler, 3 << 20);
        let mut acked = 0usize;
        let err = loop {
            let d =
                producer.send(ProducerRecord::new(topic).partition(0).value(format!("{acked}-{value}"))).await.unwrap();
            match d.await {
                Ok(_) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 1000, "{topic}: the disk never filled");
        };
        // DiskFull is retriable: after the delivery timeout, the last attempt's error.
        let ClientError::Broker { code, message, .. } = err.cause() else { panic!("{topic}: {err}") };
        assert_eq!(*code, tonic::Code::ResourceExhausted, "{topic}: {message}");
        assert!(message.starts_with(&format!("disk full: {}", data.display())), "{topic}: {message}");
        assert!(message.contains("no space left on the device holding the data directory"), "{message}");
        // Nothing refused is stored, everything acknowledged is, and reads work.
        let stored = read_all(&broker.addr, topic).await;
        assert!(acked > 10, "{topic}: {acked} records before the disk filled");
        assert_eq!(stored.len(), acked, "{topic}: stored = acknowledged");
        for (i, v) in stored.iter().enumerate() {
            assert!(v.starts_with(&format!("{i}-")), "{topic}");
        }
        // Free space: produce succeeds again, no restart.
        std::fs::remove_file(&filler).ok();
        let m = producer.send(ProducerRecord::new(topic).partition(0).value("after")).await.unwrap().await.unwrap();
        assert_eq!(m.offset, Some(acked as u64), "{topic}: offsets continue");
        assert_eq!(read_all(&broker.addr, topic).await.last().map(String::as_str), Some("after"));
    }
    broker.kill9();
    // Everything acknowledged survives a restart.
    let mut broker = BrokerProcess::spawn(&data, free_port(), &[]);
    broker.wait_ready();
    assert_eq!(read_all(&broker.addr, "always").await.last().map(String::as_str), Some("after"));
    broker.kill9();
}
