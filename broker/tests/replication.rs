//! Replication between in-process brokers over real gRPC on loopback, with the test
//! controller of `common::cluster`: acks=all on RF=3 with min ISR 2 leaves every
//! replica's log byte-identical; consumers see only records below the high watermark;
//! a stopped follower leaves the ISR after the lag time, acks=all is refused with
//! NOT_ENOUGH_REPLICAS once the ISR is below min ISR, and a restarted follower catches
//! up and rejoins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::cluster::{TestCluster, batch, consume_all, log_bytes, offsets, produce_request, wait_until};
use sluice_proto::{
    error_detail,
    v1::{self as pb, sluice_client::SluiceClient},
};
use tonic::{Code, transport::Channel};

const MIN_ISR_2: &[(&str, &str)] = &[("min.insync.replicas", "2")];

/// Ten records tagged `tag` to s-0 with acks=all.
async fn produce(client: &mut SluiceClient<Channel>, tag: &str) -> Result<pb::ProduceResponse, tonic::Status> {
    client.produce(produce_request("s", 0, pb::Acks::All, batch(tag, 10, None))).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_leaves_every_replica_identical_and_consumers_see_only_committed_records() {
    let mut c = TestCluster::start(3, Duration::from_secs(60)).await;
    c.ctl.create_topic("r", 2, MIN_ISR_2, |p| if p == 0 { vec![1, 2, 3] } else { vec![2, 3, 1] });
    c.sync();
    let started = std::time::Instant::now();
    for (p, leader) in [(0u32, 1), (1, 2)] {
        let mut client = c.client(leader).await;
        for i in 0..30 {
            let r = client.produce(produce_request("r", p, pb::Acks::All, batch(&format!("p{p}-b{i}"), 4, None))).await;
            assert_eq!(r.expect("acks=all").into_inner().base_offset, Some(i * 4));
        }
    }
    println!("60 acks=all batches on RF=3 in {:?}", started.elapsed());
    for p in 0..2 {
        // acks=all answered: the leader's high watermark covers every batch.
        let leader = c.ctl.placement("r", p).leader.unwrap();
        assert_eq!(offsets(&c.broker(leader), "r", p), (120, 120));
        wait_until("every replica has the leader's log end and high watermark", 60, || {
            (1..=3).all(|b| offsets(&c.broker(b), "r", p) == (120, 120))
        })
        .await;
        let bytes = log_bytes(&c.broker(leader), "r", p);
        for b in 1..=3 {
            assert_eq!(log_bytes(&c.broker(b), "r", p), bytes, "broker {b}'s copy of r-{p} differs");
        }
        let (values, hw) = consume_all(&mut c.client(leader).await, "r", p).await;
        assert_eq!((values.len(), hw), (120, 120));
    }
    let epochs = c.broker(2).replica_log("r", 0).unwrap().1.epoch_history().unwrap();
    assert_eq!(epochs, [(0, 0)], "a follower keeps the leader's epochs");

    // Both followers of r-0 stop; the ISR keeps them for the (long) lag time, so the
    // high watermark cannot pass what they have: acks=1 appends stay invisible.
    c.stop_broker(2).await;
    c.stop_broker(3).await;
    let mut client = c.client(1).await;
    let r = client.produce(produce_request("r", 0, pb::Acks::Leader, batch("late", 5, None))).await;
    assert_eq!(r.expect("acks=1").into_inner().base_offset, Some(120));
    assert_eq!(offsets(&c.broker(1), "r", 0), (125, 120));
    let (values, hw) = consume_all(&mut client, "r", 0).await;
    assert_eq!((values.len(), hw), (120, 120), "records above the high watermark are not served");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_leaves_the_isr_and_rejoins_after_catching_up() {
    let mut c = TestCluster::start(3, Duration::from_millis(1000)).await;
    c.ctl.create_topic("s", 1, MIN_ISR_2, |_| vec![1, 2, 3]);
    c.sync();
    let mut client = c.client(1).await;
    let mut produced = 0u64;
    for i in 0..5 {
        produce(&mut client, &format!("a{i}")).await.expect("acks=all with a full ISR");
        produced += 10;
    }

    c.stop_broker(3).await;
    wait_until("the leader shrinks broker 3 out of the ISR", 60, || c.ctl.placement("s", 0).isr == [1, 2]).await;
    for i in 0..5 {
        produce(&mut client, &format!("b{i}")).await.expect("acks=all with ISR [1, 2] = min ISR");
        produced += 10;
    }

    c.stop_broker(2).await;
    wait_until("the ISR shrinks to the leader alone", 60, || c.ctl.placement("s", 0).isr == [1]).await;
    let refused = produce(&mut client, "c").await.expect_err("ISR 1 < min ISR 2");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("fewer than min.insync.replicas=2"), "{}", refused.message());
    assert_eq!(error_detail(&refused).expect("detail").code, pb::ErrorCode::NotEnoughReplicas as i32);
    // acks=1 still works; nothing it writes becomes visible while the ISR is too small.
    client.produce(produce_request("s", 0, pb::Acks::Leader, batch("d", 10, None))).await.expect("acks=1");
    produced += 10;
    assert_eq!(offsets(&c.broker(1), "s", 0).1, 100);

    c.start_broker(2).await;
    c.start_broker(3).await;
    wait_until("both followers rejoin the ISR", 60, || {
        let mut isr = c.ctl.placement("s", 0).isr;
        isr.sort();
        isr == [1, 2, 3]
    })
    .await;
    produce(&mut client, "e").await.expect("acks=all once the ISR is back");
    produced += 10;
    wait_until("every replica caught up", 60, || {
        (1..=3).all(|b| offsets(&c.broker(b), "s", 0) == (produced, produced))
    })
    .await;
    let bytes = log_bytes(&c.broker(1), "s", 0);
    for b in 2..=3 {
        assert_eq!(log_bytes(&c.broker(b), "s", 0), bytes, "broker {b}'s copy differs");
    }
    let shrinks = c.broker(1).metrics().isr_shrinks.get();
    let expands = c.broker(1).metrics().isr_expands.get();
    assert!(shrinks >= 2 && expands >= 1, "shrinks {shrinks}, expands {expands}");
    c.shutdown().await;
}
