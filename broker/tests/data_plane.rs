//! The data plane over real sockets: an in-process broker on 127.0.0.1:0, the real
//! client, gRPC in between.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::TestBroker;
use sluice_client::{
    Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig, ProducerRecord, StartOffset,
    partitioner::partition_for_key, proto,
};

async fn consume_all(broker: &TestBroker, topic: &str, expect: usize) -> Vec<ConsumerRecord> {
    let mut c = Consumer::new(broker.client().await, ConsumerConfig::default());
    c.assign_topic(topic, StartOffset::Earliest).await.expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < expect && tokio::time::Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(500)).await.expect("poll"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_per_partition_order_and_dense_offsets() {
    let broker = TestBroker::start().await;
    broker.admin().await.create_topic("orders", 4, BTreeMap::new()).await.expect("create");
    let producer = Producer::new(broker.client().await, ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..4000u32 {
        let rec =
            ProducerRecord::new("orders").partition(i % 4).value(format!("{}:{i}", i % 4)).header("n", i.to_string());
        deliveries.push(producer.send(rec).await.expect("send"));
    }
    producer.flush().await;
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = d.await.expect("delivered");
        assert_eq!(meta.partition, i as u32 % 4);
        assert_eq!(meta.offset, Some(i as u64 / 4), "offsets are dense per partition");
    }
    let records = consume_all(&broker, "orders", 4000).await;
    assert_eq!(records.len(), 4000);
    for p in 0..4u32 {
        let values: Vec<String> = records
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..4000u32).filter(|i| i % 4 == p).map(|i| format!("{p}:{i}")).collect();
        assert_eq!(values, expected, "partition {p} keeps send order");
        let offsets: Vec<u64> = records.iter().filter(|r| r.partition == p).map(|r| r.offset).collect();
        assert_eq!(offsets, (0..1000).collect::<Vec<u64>>());
    }
    assert_eq!(records[0].headers[0].key, "n");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_where_the_partitioner_says() {
    let broker = TestBroker::start().await;
    broker.admin().await.create_topic("keyed", 6, BTreeMap::new()).await.expect("create");
    let producer = Producer::new(broker.client().await, ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let key = format!("customer-{i}");
        deliveries.push((key.clone(), producer.send(ProducerRecord::new("keyed").key(key).value("v")).await.unwrap()));
    }
    producer.flush().await;
    for (key, d) in deliveries {
        assert_eq!(d.await.unwrap().partition, partition_for_key(key.as_bytes(), 6), "{key}");
    }
    let records = consume_all(&broker, "keyed", 300).await;
    for r in &records {
        assert_eq!(r.partition, partition_for_key(r.key.as_ref().unwrap(), 6));
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_as_soon_as_data_arrives() {
    let broker = TestBroker::start().await;
    broker.admin().await.create_topic("poll", 1, BTreeMap::new()).await.expect("create");
    let mut raw = broker.client().await.raw();
    let fetch = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = raw
            .fetch(proto::FetchRequest {
                topic: "poll".into(),
                partition: 0,
                offset: 0,
                max_wait_ms: 20_000,
                min_bytes: 1,
                max_bytes: 0,
                replica_id: None,
                current_leader_epoch: None,
            })
            .await
            .expect("fetch");
        (started.elapsed(), r.into_inner())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fetch.is_finished(), "fetch waits while there is no data");
    let producer = Producer::new(broker.client().await, ProducerConfig::default());
    producer.send(ProducerRecord::new("poll").value("wake up")).await.unwrap().await.unwrap();
    let (waited, response) = tokio::time::timeout(Duration::from_secs(60), fetch).await.expect("answered").unwrap();
    // The fetch asked to wait 20 s; it must come back when the record arrived instead.
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    assert_eq!(response.high_watermark, 1);
    assert!(!response.batches.is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_earliest_latest() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    // Timestamps near 1970: keep them forever, or the first retention pass deletes them.
    admin
        .create_topic("times", 1, BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]))
        .await
        .expect("create");
    let producer =
        Producer::new(broker.client().await, ProducerConfig { linger: Duration::ZERO, ..Default::default() });
    for (i, ts) in [1_000i64, 2_000, 3_000, 3_000, 5_000].iter().enumerate() {
        let d = producer.send(ProducerRecord::new("times").value(i.to_string()).timestamp_ms(*ts)).await.unwrap();
        d.await.unwrap();
    }
    let at = |ts| admin.list_offset("times", 0, proto::OffsetSpec::Timestamp, ts);
    assert_eq!(at(0).await.unwrap(), (0, Some(1_000)));
    assert_eq!(at(2_000).await.unwrap(), (1, Some(2_000)));
    assert_eq!(at(2_500).await.unwrap(), (2, Some(3_000)));
    assert_eq!(at(4_000).await.unwrap(), (4, Some(5_000)));
    assert_eq!(at(9_000).await.unwrap(), (5, None), "later than every record: the high watermark");
    assert_eq!(admin.list_offset("times", 0, proto::OffsetSpec::Earliest, 0).await.unwrap().0, 0);
    assert_eq!(admin.list_offset("times", 0, proto::OffsetSpec::Latest, 0).await.unwrap().0, 5);
    broker.stop().await;
}

async fn produce_batches(broker: &TestBroker, topic: &str, batches: u32, per_batch: u32, ts: i64) {
    // A long linger: only `flush` seals a batch, so each loop iteration is one batch.
    let producer =
        Producer::new(broker.client().await, ProducerConfig { linger: Duration::from_secs(60), ..Default::default() });
    for b in 0..batches {
        for i in 0..per_batch {
            producer
                .send(ProducerRecord::new(topic).partition(0).value(vec![b as u8; 100]).timestamp_ms(ts + i64::from(i)))
                .await
                .unwrap();
        }
        // One flush per batch: each loop iteration becomes one stored batch.
        producer.flush().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_removes_old_batches_and_consumers_see_new_log_start() {
    // Retention deletes whole segments: one batch per segment here.
    let broker = TestBroker::start_with(|c| {
        c.retention_check_interval = Duration::from_millis(100);
        c.segment_bytes = 1;
    })
    .await;
    let admin = broker.admin().await;
    admin.create_topic("sized", 1, BTreeMap::new()).await.unwrap();
    produce_batches(&broker, "sized", 10, 10, sluice_broker::broker::now_ms()).await;
    let before = admin.describe_topic("sized").await.unwrap().partitions[0].clone();
    assert_eq!((before.log_start_offset, before.log_end_offset, before.batch_count), (0, 100, 10));
    // Keep roughly three batches' worth.
    let keep = before.size_bytes / 10 * 3;
    admin
        .alter_topic_config("sized", BTreeMap::from([("retention.bytes".to_string(), keep.to_string())]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let p = admin.describe_topic("sized").await.unwrap().partitions[0].clone();
        if p.log_start_offset > 0 || tokio::time::Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after.log_start_offset, 70, "seven whole batches deleted from the head");
    assert_eq!(after.batch_count, 3);
    assert!(after.size_bytes >= keep);
    assert_eq!(after.log_end_offset, 100, "the log end does not move");

    // A consumer at offset 0 is out of range; with no reset policy it sees the range.
    let mut strict = Consumer::new(
        broker.client().await,
        ConsumerConfig { auto_offset_reset: sluice_client::AutoOffsetReset::None, ..Default::default() },
    );
    strict.assign("sized", 0, StartOffset::Offset(0)).await.unwrap();
    let err = strict.poll(Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.kind(), Some(proto::ErrorCode::OffsetOutOfRange));
    assert_eq!(err.to_string(), "offset 0 is out of range for sized-0: valid offsets are 70 to 100");
    // With the default policy (earliest) it continues at the new log start.
    let records = consume_all(&broker, "sized", 30).await;
    assert_eq!(records.first().map(|r| r.offset), Some(70));
    assert_eq!(records.len(), 30);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_removes_expired_batches() {
    // Retention deletes whole segments: one batch per segment here.
    let broker = TestBroker::start_with(|c| {
        c.retention_check_interval = Duration::from_millis(100);
        c.segment_bytes = 1;
    })
    .await;
    let admin = broker.admin().await;
    admin.create_topic("timed", 1, BTreeMap::from([("retention.ms".to_string(), "60000".to_string())])).await.unwrap();
    let now = sluice_broker::broker::now_ms();
    // Two batches stamped two minutes ago (expired), then two fresh ones.
    produce_batches(&broker, "timed", 2, 5, now - 120_000).await;
    produce_batches(&broker, "timed", 2, 5, now).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let p = loop {
        let p = admin.describe_topic("timed").await.unwrap().partitions[0].clone();
        if p.log_start_offset > 0 || tokio::time::Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(p.log_start_offset, 10);
    assert_eq!(p.batch_count, 2);
    assert_eq!(admin.list_offset("timed", 0, proto::OffsetSpec::Earliest, 0).await.unwrap().0, 10);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_always_acknowledges_after_flush_and_reports_group_commits() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    admin.create_topic("durable", 4, BTreeMap::from([("durability".to_string(), "always".to_string())])).await.unwrap();
    let producer = Producer::new(broker.client().await, ProducerConfig::default());
    let mut ds = Vec::new();
    for i in 0..2000u32 {
        ds.push(producer.send(ProducerRecord::new("durable").partition(i % 4).value("x")).await.unwrap());
    }
    producer.flush().await;
    for d in ds {
        d.await.unwrap();
    }
    let metrics = broker.handle.as_ref().unwrap().broker().metrics().encode();
    assert!(metrics.contains("sluice_group_commit_requests_count"), "{metrics}");
    assert!(metrics.contains("durability=\"always\""), "{metrics}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_then_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = sluice_broker::BrokerConfig::standalone(dir.path(), "127.0.0.1:0".parse().unwrap());
    let h = sluice_broker::start(config.clone()).await.unwrap();
    let client = sluice_client::Client::connect(&h.addr.to_string()).await.unwrap();
    sluice_client::Admin::new(client.clone()).create_topic("keep", 2, BTreeMap::new()).await.unwrap();
    let producer = Producer::new(client, ProducerConfig::default());
    for i in 0..500u32 {
        producer.send(ProducerRecord::new("keep").partition(i % 2).value(i.to_string())).await.unwrap();
    }
    producer.flush().await;
    h.shutdown().await.unwrap();
    let h = sluice_broker::start(config).await.unwrap();
    let admin = sluice_client::Admin::new(sluice_client::Client::connect(&h.addr.to_string()).await.unwrap());
    let t = admin.describe_topic("keep").await.unwrap();
    assert_eq!(t.partitions.iter().map(|p| p.high_watermark).collect::<Vec<_>>(), vec![250, 250]);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_partition_gauges() {
    let broker = TestBroker::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    broker.admin().await.create_topic("observed", 1, BTreeMap::new()).await.unwrap();
    let producer = Producer::new(broker.client().await, ProducerConfig::default());
    producer.send(ProducerRecord::new("observed").value("x")).await.unwrap().await.unwrap();
    let addr = broker.handle.as_ref().unwrap().metrics_addr.unwrap();
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(body.contains("sluice_partition_high_watermark{topic=\"observed\",partition=\"0\"} 1"), "{body}");
    assert!(body.contains("sluice_produce_records_total{topic=\"observed\"} 1"), "{body}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_sees_a_changed_partition_count_after_metadata_max_age() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    admin.create_topic("growing", 1, BTreeMap::new()).await.unwrap();
    let producer = Producer::new(
        broker.client().await,
        ProducerConfig { metadata_max_age: Duration::from_millis(200), ..Default::default() },
    );
    let first = producer.send(ProducerRecord::new("growing").key("customer-7").value("a")).await.unwrap();
    assert_eq!(first.await.unwrap().partition, 0);
    // The topic now has 4 partitions (recreated: standalone topics do not grow in place).
    admin.delete_topic("growing").await.unwrap();
    admin.create_topic("growing", 4, BTreeMap::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let meta = producer.send(ProducerRecord::new("growing").key("customer-7").value("b")).await.unwrap();
    assert_eq!(meta.await.unwrap().partition, partition_for_key(b"customer-7", 4));
    broker.stop().await;
}
