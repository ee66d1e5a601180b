#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The producer's delivery timeout against a broker that stops answering (a proxy that
//! keeps the connection open and drops every byte): records fail with
//! `DeliveryTimeout` once the timeout, counted from their append across every retry,
//! has passed, and the producer works again once the broker answers.

mod common;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::TestBroker;
use sluice_client::{Client, ClientError, Producer, ProducerConfig, ProducerRecord};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Forwards bytes between clients and the broker until stalled; while stalled, reads and
/// drops everything in both directions, connections open: a broker that hangs.
struct StallProxy {
    addr: String,
    stalled: Arc<AtomicBool>,
}

impl StallProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stalled = Arc::new(AtomicBool::new(false));
        let s = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(&upstream).await else { continue };
                let (cr, cw) = client.into_split();
                let (br, bw) = broker.into_split();
                tokio::spawn(pump(cr, bw, s.clone()));
                tokio::spawn(pump(br, cw, s.clone()));
            }
        });
        Self { addr, stalled }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn setup(config: ProducerConfig) -> (TestBroker, StallProxy, Producer) {
    let broker = TestBroker::start().await;
    broker.admin().await.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let proxy = StallProxy::start(broker.addr.to_string()).await;
    let producer = Producer::new(Client::connect(&proxy.addr).await.unwrap(), config);
    // Learns the producer id and the partition count while the broker answers.
    producer.send(ProducerRecord::new("t").partition(0).value("first")).await.unwrap().await.unwrap();
    (broker, proxy, producer)
}

/// Sends one record and waits for its outcome (a test bound far above any timeout here:
/// without one, a hung broker would hang the record for ever).
async fn send(producer: &Producer, value: &str) -> (Result<sluice_client::RecordMetadata, ClientError>, Duration) {
    let start = Instant::now();
    let delivery = producer.send(ProducerRecord::new("t").partition(0).value(value.to_string())).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(90), delivery).await.expect("the record never completed");
    (outcome, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_fails_the_record_at_its_delivery_timeout() {
    let delivery_timeout = Duration::from_secs(3);
    let config = ProducerConfig {
        delivery_timeout,
        request_timeout: Duration::from_millis(400),
        retry_backoff: Duration::from_millis(50),
        ..ProducerConfig::default()
    };
    let (broker, proxy, producer) = setup(config).await;
    proxy.stall(true);
    let (outcome, took) = send(&producer, "hung").await;
    let err = outcome.expect_err("acknowledged by a broker that does not answer");
    println!("failed after {took:?}: {err}");
    let ClientError::DeliveryTimeout { timeout, attempts, last } = &err else {
        panic!("not a delivery timeout: {err:?}")
    };
    assert_eq!(*timeout, delivery_timeout);
    assert!(*attempts >= 2, "each attempt waits at most the request timeout, then retries: {attempts}");
    let last = last.as_deref().expect("a last error");
    assert!(matches!(last, ClientError::Transport(m) if m.starts_with("no answer within")), "{last:?}");
    assert!(took >= delivery_timeout, "failed before its timeout: {took:?}");
    let message = err.to_string();
    assert!(message.starts_with("record not acknowledged within the delivery timeout of 3s ("), "{message}");
    assert!(message.contains("attempts; last error: request to broker failed: no answer within"), "{message}");
    assert!(!err.is_retriable());

    // Answering again: the producer recovers (a new producer id for the partition, whose
    // sequence has a hole where the failed record was).
    proxy.stall(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match send(&producer, "after").await.0 {
            Ok(meta) => {
                assert!(meta.offset.is_some());
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never delivered again: {e}"),
        }
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_timeout_bounds_an_attempt_longer_than_itself() {
    // One attempt would wait 60 s for an answer; the record's timeout ends it at 2 s.
    let delivery_timeout = Duration::from_secs(2);
    let config =
        ProducerConfig { delivery_timeout, request_timeout: Duration::from_secs(60), ..ProducerConfig::default() };
    let (broker, proxy, producer) = setup(config).await;
    proxy.stall(true);
    let (outcome, took) = send(&producer, "hung").await;
    let err = outcome.expect_err("acknowledged by a broker that does not answer");
    println!("failed after {took:?}: {err}");
    assert!(matches!(err, ClientError::DeliveryTimeout { attempts: 1, .. }), "{err:?}");
    assert!(took >= delivery_timeout, "failed before its timeout: {took:?}");
    proxy.stall(false);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_queued_behind_a_hung_batch_fails_at_its_timeout_too() {
    // Without idempotence one batch is in flight per partition: the second record waits
    // in its partition's queue behind the first, whose answer never comes. Both fail
    // with DeliveryTimeout; neither waits for the 60 s request timeout. (That the
    // timeout counts from the append is the accumulator's `created`, tested there.)
    let delivery_timeout = Duration::from_secs(2);
    let config = ProducerConfig {
        delivery_timeout,
        request_timeout: Duration::from_secs(60),
        enable_idempotence: false,
        ..ProducerConfig::default()
    };
    let (broker, proxy, producer) = setup(config).await;
    proxy.stall(true);
    let start = Instant::now();
    let first = producer.send(ProducerRecord::new("t").partition(0).value("1")).await.unwrap();
    // Let the first batch go out before the second is appended.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = producer.send(ProducerRecord::new("t").partition(0).value("2")).await.unwrap();
    let e1 = tokio::time::timeout(Duration::from_secs(50), first).await.unwrap().expect_err("first delivered");
    let e2 = tokio::time::timeout(Duration::from_secs(50), second).await.unwrap().expect_err("second delivered");
    println!("both failed after {:?}: {e1} / {e2}", start.elapsed());
    assert!(matches!(e1, ClientError::DeliveryTimeout { attempts: 1, .. }), "{e1:?}");
    let ClientError::DeliveryTimeout { attempts, .. } = e2 else { panic!("{e2:?}") };
    assert!(attempts <= 1, "{attempts}");
    proxy.stall(false);
    broker.stop().await;
}
