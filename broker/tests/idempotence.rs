//! The idempotent producer against real brokers: retried batches are answered with their
//! original offset and stored once (through a proxy that loses responses, and after a
//! `kill -9` and restart), and sequence gaps and stale epochs are refused with clear
//! statuses, storing nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use common::{BrokerProcess, TestBroker, connect, free_port, proxy::FaultProxy};
use sluice_client::{
    Admin, AutoOffsetReset, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset,
    proto::{self, ErrorCode, sluice_client::SluiceClient},
};
use sluice_core::BatchBuilder;
use sluice_proto::error_detail;
use tonic::{Code, transport::Channel};

/// A batch of `values` from producer `pid` at `epoch`, first record at sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    // Now: retention would delete batches from 1970 at the broker's start.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut b = BatchBuilder::default();
    for v in values {
        b.push(now, None, Some(v.as_bytes()), &[]);
    }
    if pid >= 0 {
        b.set_producer(pid, epoch, seq);
    }
    b.finish().unwrap()
}

fn produce(batch: Bytes) -> proto::ProduceRequest {
    proto::ProduceRequest {
        topic: "idem".into(),
        partition: 0,
        acks: proto::Acks::All as i32,
        batch,
        producer_id: -1,
        base_sequence: -1,
    }
}

async fn new_producer_id(raw: &mut SluiceClient<Channel>) -> i64 {
    let r = raw.init_producer_id(proto::InitProducerIdRequest { transactional_id: None }).await.unwrap().into_inner();
    assert_eq!(r.producer_epoch, 0);
    assert!(r.producer_id >= 0);
    r.producer_id
}

async fn log_end(admin: &Admin, topic: &str) -> u64 {
    admin.list_offset(topic, 0, proto::OffsetSpec::Latest, 0).await.unwrap().0
}

#[track_caller]
fn assert_status(s: &tonic::Status, code: Code, error: ErrorCode, message: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(s.message(), message);
    let detail = error_detail(s).expect("an ErrorDetail in the status details");
    assert_eq!((detail.code, detail.retriable), (error as i32, false), "{detail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_and_stale_epochs_are_refused_and_a_retry_gets_its_original_offset() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    admin.create_topic("idem", 1, BTreeMap::new()).await.unwrap();
    let mut raw = broker.client().await.raw();
    let pid = new_producer_id(&mut raw).await;
    assert_ne!(new_producer_id(&mut raw).await, pid, "every call gives a new id");

    let first = batch(pid, 0, 0, &["a", "b"]);
    let r = raw.produce(produce(first.clone())).await.unwrap().into_inner();
    assert_eq!((r.base_offset, r.record_count), (Some(0), 2));
    let again = raw.produce(produce(first)).await.unwrap().into_inner();
    assert_eq!((again.base_offset, again.record_count), (Some(0), 2), "a retry gets the original offset");
    assert_eq!(log_end(&admin, "idem").await, 2, "and is not stored again");

    let s = raw.produce(produce(batch(pid, 0, 5, &["x"]))).await.unwrap_err();
    assert_status(
        &s,
        Code::FailedPrecondition,
        ErrorCode::OutOfOrderSequence,
        &format!(
            "out-of-order sequence on idem-0: producer {pid} (epoch 0) sent a batch starting at sequence 5, but the \
             next sequence expected is 2: a batch in between is missing. The producer must resend from the first \
             unacknowledged batch, or restart to get a new producer id"
        ),
    );
    let r = raw.produce(produce(batch(pid, 0, 2, &["c"]))).await.unwrap().into_inner();
    assert_eq!(r.base_offset, Some(2));

    // A newer epoch starts at 0 and fences the older one.
    let r = raw.produce(produce(batch(pid, 1, 0, &["d"]))).await.unwrap().into_inner();
    assert_eq!(r.base_offset, Some(3));
    let s = raw.produce(produce(batch(pid, 0, 3, &["late"]))).await.unwrap_err();
    assert_status(
        &s,
        Code::FailedPrecondition,
        ErrorCode::InvalidProducerEpoch,
        &format!(
            "idem-0: producer {pid} is fenced: its epoch 0 is older than the current epoch 1, so another instance \
             has taken over this producer id. Stop this instance"
        ),
    );
    let s = raw.produce(produce(batch(pid, 2, 4, &["y"]))).await.unwrap_err();
    assert_status(
        &s,
        Code::FailedPrecondition,
        ErrorCode::OutOfOrderSequence,
        &format!(
            "out-of-order sequence on idem-0: producer {pid} started epoch 2 at sequence 4; a new epoch must start \
             at sequence 0 (the current epoch is 1)"
        ),
    );
    assert_eq!(log_end(&admin, "idem").await, 4, "refused batches are not stored");

    // Batches without a producer id are not checked.
    let plain = batch(-1, -1, -1, &["p"]);
    assert_eq!(raw.produce(produce(plain.clone())).await.unwrap().into_inner().base_offset, Some(4));
    assert_eq!(raw.produce(produce(plain)).await.unwrap().into_inner().base_offset, Some(5));

    let s = raw.init_producer_id(proto::InitProducerIdRequest { transactional_id: Some("tx".into()) }).await;
    let s = s.unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);
    assert_eq!(
        s.message(),
        "transactions are not supported yet (transactional_id 'tx'); leave transactional_id unset for an idempotent \
         producer"
    );
    let metrics = broker.handle.as_ref().unwrap().broker().metrics().encode();
    for line in [
        "sluice_produce_duplicate_batches_total{topic=\"idem\"} 1",
        "sluice_produce_out_of_order_batches_total{topic=\"idem\"} 2",
        "sluice_produce_fenced_batches_total{topic=\"idem\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_and_restart_a_retry_gets_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let args = ["--durability", "always"];
    let mut broker = BrokerProcess::spawn(&data, port, &args);
    broker.wait_ready();
    let addr = broker.addr.clone();
    Admin::new(connect(&addr).await).create_topic("idem", 1, BTreeMap::new()).await.unwrap();
    let mut raw = connect(&addr).await.raw();
    let pid = new_producer_id(&mut raw).await;
    let batches: Vec<Bytes> = (0..3).map(|i| batch(pid, 0, 2 * i, &["x", "y"])).collect();
    let mut offsets = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        offsets.push(raw.produce(produce(b.clone())).await.unwrap().into_inner().base_offset.unwrap());
        if i == 0 {
            // Another producer's batch in between.
            raw.produce(produce(batch(-1, -1, -1, &["other"]))).await.unwrap();
        }
    }
    assert_eq!(offsets, [0, 3, 5]);

    broker.kill9();
    let mut broker = BrokerProcess::spawn(&data, port, &args);
    broker.wait_ready();
    let client = connect(&addr).await;
    let admin = Admin::new(client.clone());
    let mut raw = client.raw();
    // The last batch, whose answer the producer never saw, and an older one.
    for i in [2, 0, 1] {
        let r = raw.produce(produce(batches[i].clone())).await.unwrap().into_inner();
        assert_eq!(r.base_offset, Some(offsets[i]), "batch {i} after the restart: {}", broker.stderr());
    }
    assert_eq!(log_end(&admin, "idem").await, 7, "no second copy");
    let r = raw.produce(produce(batch(pid, 0, 6, &["z"]))).await.unwrap().into_inner();
    assert_eq!(r.base_offset, Some(7), "the sequence continues");
    let s = raw.produce(produce(batch(pid, 0, 9, &["gap"]))).await.unwrap_err();
    assert_eq!(error_detail(&s).unwrap().code, ErrorCode::OutOfOrderSequence as i32);
    let next = new_producer_id(&mut raw).await;
    assert!(next > pid, "ids continue after the persisted block: {next} after {pid}");
    assert!(broker.stderr().contains("producer state loaded"), "{}", broker.stderr());
    broker.kill9();
}

/// Every record of partition 0 of `topic`, in offset order: (offset, value).
async fn read_all(addr: &str, topic: &str) -> Vec<(u64, String)> {
    let client = connect(addr).await;
    let end = log_end(&Admin::new(client.clone()), topic).await;
    let config = ConsumerConfig { auto_offset_reset: AutoOffsetReset::None, check_crcs: true, ..Default::default() };
    let mut c = Consumer::new(client, config);
    c.assign(topic, 0, StartOffset::Earliest).await.unwrap();
    let mut out = Vec::new();
    while c.position(topic, 0).unwrap() < end {
        for r in c.poll(Duration::from_secs(5)).await.unwrap() {
            out.push((r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_lost_by_the_network_create_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::spawn(&dir.path().join("data"), free_port(), &[]);
    broker.wait_ready();
    let addr = broker.addr.clone();
    Admin::new(connect(&addr).await).create_topic("lossy", 1, BTreeMap::new()).await.unwrap();
    let proxy = FaultProxy::start(&addr).await;
    let config = ProducerConfig {
        linger: Duration::from_millis(2),
        batch_size: 2048,
        retry_backoff: Duration::from_millis(20),
        ..Default::default()
    };
    let producer = Producer::new(connect(&proxy.addr).await, config);
    const RECORDS: usize = 4_000;
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        if i % 400 == 200 && !proxy.armed() {
            proxy.arm();
        }
        let record = ProducerRecord::new("lossy").partition(0).value(format!("v{i:06}"));
        deliveries.push(producer.send(record).await.unwrap());
        if i % 20 == 0 {
            // Spread over about a second, so the proxy cuts several connections.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    producer.flush().await;
    let mut acked = BTreeMap::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let m = d.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        acked.insert(format!("v{i:06}"), m.offset.unwrap());
    }
    let cuts = proxy.cuts();

    let stored = read_all(&addr, "lossy").await;
    let mut seen = BTreeMap::new();
    let (mut duplicates, mut reordered, mut previous) = (0, 0, None);
    for (offset, value) in &stored {
        if seen.insert(value.clone(), *offset).is_some() {
            duplicates += 1;
        }
        if previous.is_some_and(|p: &String| value < p) {
            reordered += 1;
        }
        previous = Some(value);
    }
    let lost = acked.iter().filter(|(v, o)| seen.get(*v) != Some(o)).count();
    println!(
        "acked {} stored {} lost {lost} duplicates {duplicates} reordered {reordered} (connections cut: {cuts})",
        acked.len(),
        stored.len()
    );
    assert!(cuts >= 3, "the proxy lost responses {cuts} times");
    assert_eq!((acked.len(), lost, duplicates, reordered), (RECORDS, 0, 0, 0));
    assert_eq!(stored.len(), RECORDS);
    broker.kill9();
}
