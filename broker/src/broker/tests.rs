//! Unit tests of the broker over a real log in a temporary directory: the leader epoch
//! stored with each batch, and retention runs at fake times.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use sluice_core::{BatchBuilder, Batches};

use super::{Acks, Broker, FetchParams, OffsetQuery};
use crate::{
    config::BrokerConfig,
    error::Result,
    metadata::{BrokerAddress, MetadataStore, PartitionPlacement, TopicSpec},
};

/// A metadata store in memory whose partitions have the leader epochs it is given.
#[derive(Debug, Default)]
struct FakeMetadata {
    topics: Mutex<Vec<TopicSpec>>,
    epochs: BTreeMap<(String, u32), i32>,
}

impl MetadataStore for FakeMetadata {
    fn topics(&self) -> Result<Vec<TopicSpec>> {
        Ok(self.topics.lock().expect("lock").clone())
    }
    fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.topics.lock().expect("lock").push(spec.clone());
        Ok(())
    }
    fn delete_topic(&self, name: &str) -> Result<()> {
        self.topics.lock().expect("lock").retain(|t| t.name != name);
        Ok(())
    }
    fn update_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.delete_topic(&spec.name)?;
        self.create_topic(spec)
    }
    fn leader_epoch(&self, topic: &str, partition: u32) -> i32 {
        self.epochs.get(&(topic.to_string(), partition)).copied().unwrap_or(0)
    }
    fn placement(&self, _topic: &str, partitions: u32) -> Vec<PartitionPlacement> {
        PartitionPlacement::led_by(0, partitions)
    }
    fn brokers(&self) -> Vec<BrokerAddress> {
        Vec::new()
    }
    fn broker_id(&self) -> i32 {
        0
    }
}

fn open(dir: &std::path::Path, metadata: Option<Arc<dyn MetadataStore>>) -> Broker {
    let mut config = BrokerConfig::standalone(dir, "127.0.0.1:0".parse().expect("addr"));
    config.metadata = metadata;
    // Retention deletes whole segments: one batch per segment here.
    config.segment_bytes = 1;
    // Reopened in the same process: sled's flusher thread of the previous open lets go
    // of the database's file lock a moment after the drop (later under load).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match Broker::open(config.clone()) {
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r.expect("open"),
        }
    }
}

fn records(n: u32, ts: i64) -> Bytes {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(ts + i64::from(i), None, Some(b"v"), &[]);
    }
    b.finish().expect("finish")
}

async fn stored_epochs(broker: &Broker, topic: &str, partition: u32) -> Vec<i32> {
    let params = FetchParams { offset: 0, max_wait: Duration::ZERO, min_bytes: 0, max_bytes: 0 };
    let read = broker.fetch(topic, partition, params).await.expect("fetch");
    Batches::new(read.batches).map(|b| b.expect("decode").header.partition_leader_epoch).collect()
}

#[tokio::test]
async fn produce_stores_the_partitions_leader_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let epochs = [(("orders".to_string(), 0), 5), (("orders".to_string(), 1), 8)].into();
    let meta = Arc::new(FakeMetadata { topics: Mutex::default(), epochs });
    let broker = open(dir.path(), Some(meta));
    broker.create_topic("orders", 2, 1, BTreeMap::new()).expect("create");
    for p in [0, 1, 0] {
        broker.produce("orders", p, Acks::Leader, records(2, 0)).await.expect("produce");
    }
    assert_eq!(stored_epochs(&broker, "orders", 0).await, [5, 5]);
    assert_eq!(stored_epochs(&broker, "orders", 1).await, [8]);
    broker.close().await;
}

#[tokio::test]
async fn standalone_epoch_is_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), None);
    broker.create_topic("t", 1, 1, BTreeMap::new()).expect("create");
    broker.produce("t", 0, Acks::Leader, records(1, 0)).await.expect("produce");
    assert_eq!(stored_epochs(&broker, "t", 0).await, [0]);
    broker.close().await;
}

/// Retention runs at fake times apply each topic's own limits, and survive a restart.
#[tokio::test]
async fn retention_runs_apply_each_topics_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), None);
    let config = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    broker.create_topic("short", 1, 1, config("retention.ms", "1000")).expect("create");
    broker.create_topic("forever", 1, 1, config("retention.ms", "-1")).expect("create");
    for topic in ["short", "forever"] {
        for ts in [0, 1000, 2000] {
            broker.produce(topic, 0, Acks::Leader, records(10, ts)).await.expect("produce");
        }
    }
    let earliest = |b: &Broker, t| b.list_offsets(t, 0, OffsetQuery::Earliest).expect("offsets").0;
    // Cutoff 0: every record is as recent.
    assert_eq!(broker.apply_retention(1000), 0);
    assert_eq!(earliest(&broker, "short"), 0);
    // Cutoff 500: the first batch (stamped 0..9) goes; cutoff 1500: the second.
    assert_eq!(broker.apply_retention(1500), 1);
    assert_eq!(earliest(&broker, "short"), 10);
    assert_eq!(broker.apply_retention(2500), 1);
    assert_eq!((earliest(&broker, "short"), earliest(&broker, "forever")), (20, 0));
    broker.flush().await.expect("flush");
    broker.close().await;
    drop(broker);

    let broker = open(dir.path(), None);
    assert_eq!(earliest(&broker, "short"), 20);
    assert_eq!(broker.apply_retention(2500), 0);
    assert_eq!(broker.apply_retention(1_000_000), 1);
    let latest = broker.list_offsets("short", 0, OffsetQuery::Latest).expect("offsets").0;
    assert_eq!((earliest(&broker, "short"), latest, earliest(&broker, "forever")), (30, 30, 0));
    broker.close().await;
}
