//! Replication of 1,000 partitions between two brokers costs a bounded number of
//! ReplicaFetch RPCs: one request carries every partition a follower fetches from a
//! leader, so catching up 1,000 partitions takes a handful of requests, not one per
//! partition per round. Prints the catch-up time and the request count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{TestCluster, batch, offsets, produce_request, wait_until};
use sluice_proto::v1 as pb;

const PARTITIONS: u32 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_partitions_replicate_with_few_fetch_requests() {
    let t0 = Instant::now();
    let mut c = TestCluster::start(2, Duration::from_secs(60)).await;
    c.ctl.create_topic("big", PARTITIONS, &[("min.insync.replicas", "1")], |_| vec![1, 2]);
    c.sync();
    println!("cluster up with {PARTITIONS} partitions in {:?}", t0.elapsed());
    // The follower is away while the leader takes one batch on every partition.
    c.stop_broker(2).await;
    let mut client = c.client(1).await;
    let started = Instant::now();
    for p in 0..PARTITIONS {
        client
            .produce(produce_request("big", p, pb::Acks::Leader, batch(&format!("p{p}"), 3, None)))
            .await
            .expect("acks=1");
    }
    println!("{PARTITIONS} batches produced in {:?}", started.elapsed());

    c.start_broker(2).await;
    let follower = c.broker(2);
    let before = follower.metrics().replica_fetch_requests.get();
    let started = Instant::now();
    wait_until("the follower caught up on every partition", 120, || {
        (0..PARTITIONS).all(|p| offsets(&follower, "big", p).0 == 3)
    })
    .await;
    let took = started.elapsed();
    let requests = follower.metrics().replica_fetch_requests.get() - before;
    let served = c.broker(1).metrics().replica_fetch_served.get();
    println!("{PARTITIONS} partitions caught up in {took:?} with {requests} ReplicaFetch requests ({served} served)");
    // One request per partition per round would be at least 1,000.
    assert!(requests < u64::from(PARTITIONS) / 10, "{requests} ReplicaFetch requests for {PARTITIONS} partitions");
    // The high watermark follows on the leader once the follower reported its offsets.
    let leader = c.broker(1);
    wait_until("the leader's high watermark covers every partition", 60, || {
        (0..PARTITIONS).all(|p| offsets(&leader, "big", p) == (3, 3))
    })
    .await;
    println!("leader high watermarks at 3 after {:?}", started.elapsed());
    let stopping = Instant::now();
    c.shutdown().await;
    println!("cluster stopped in {:?}", stopping.elapsed());
}
