//! Many partitions are cheap: a `sluice-broker` process creates a topic of 2,000
//! partitions in seconds, answers other calls meanwhile, and spends almost no disk on
//! partitions that hold no data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use common::{BrokerProcess, connect, free_port};
use sluice_client::{Admin, Producer, ProducerConfig, ProducerRecord};

const PARTITIONS: u32 = 2_000;

fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() { disk_bytes(&e.path()) } else { m.len() };
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_of_thousands_of_partitions_is_created_quickly_while_the_broker_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::spawn(&data, free_port(), &[]);
    broker.wait_ready();
    let admin = Admin::new(connect(&broker.addr).await);
    admin.create_topic("small", 1, BTreeMap::new()).await.unwrap();
    let before = disk_bytes(&data);

    // Other calls keep being answered while the big topic is created.
    let lister = {
        let admin = Admin::new(connect(&broker.addr).await);
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for _ in 0..40 {
                let started = Instant::now();
                tokio::time::timeout(Duration::from_secs(30), admin.list_topics(false))
                    .await
                    .expect("answered")
                    .unwrap();
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            slowest
        })
    };
    let started = Instant::now();
    admin.create_topic("big", PARTITIONS, BTreeMap::new()).await.unwrap();
    let took = started.elapsed();
    let slowest = lister.await.unwrap();
    assert!(took < Duration::from_secs(60), "creating {PARTITIONS} partitions took {took:?}");
    println!("{PARTITIONS} partitions created in {took:?}; slowest concurrent list_topics {slowest:?}");
    assert_eq!(admin.partition_count("big").await.unwrap(), PARTITIONS);

    // No data, no files: the topic costs its metadata only.
    assert!(!data.join("big-0").exists());
    let grown = disk_bytes(&data).saturating_sub(before);
    assert!(grown < 16 << 20, "an empty topic of {PARTITIONS} partitions took {grown} bytes");

    // Data creates the partition's directory; a restart opens all partitions quickly.
    let producer = Producer::new(connect(&broker.addr).await, ProducerConfig::default());
    producer.send(ProducerRecord::new("big").partition(1234).value("x")).await.unwrap().await.unwrap();
    assert!(data.join("big-1234").join("00000000000000000000.log").exists());
    broker.kill9();
    let started = Instant::now();
    let mut broker = BrokerProcess::spawn(&data, free_port(), &[]);
    broker.wait_ready();
    assert!(started.elapsed() < Duration::from_secs(20), "restart took {:?}", started.elapsed());
    let admin = Admin::new(connect(&broker.addr).await);
    admin.delete_topic("big").await.unwrap();
    assert!(!data.join("big-1234").exists(), "deletion unlinks the partition directories");
}
