//! Failover with the test controller: the leader stops and leadership moves to an ISR
//! follower: no acknowledged record is lost, and an idempotent producer's retry of a
//! batch the old leader had replicated is answered with its offset, not stored again.
//! Two quick leader changes with a follower holding a divergent suffix written at an
//! old epoch: after truncation by leader epoch every replica's log is byte-identical.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::cluster::{TestCluster, batch, consume_all, log_bytes, offsets, produce_request, wait_until};
use sluice_proto::v1 as pb;

const MIN_ISR_2: &[(&str, &str)] = &[("min.insync.replicas", "2")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_and_a_retry_makes_no_duplicate_after_failover() {
    let mut c = TestCluster::start(3, Duration::from_millis(1000)).await;
    c.ctl.create_topic("f", 1, MIN_ISR_2, |_| vec![1, 2, 3]);
    c.sync();
    let pid = 4242;
    let mut acked = Vec::new();
    let mut seq = 0;
    let mut client = c.client(1).await;
    for i in 0..20 {
        let tag = format!("f{i}");
        let r = client.produce(produce_request("f", 0, pb::Acks::All, batch(&tag, 5, Some((pid, 0, seq))))).await;
        r.expect("acks=all");
        acked.extend((0..5).map(|j| format!("{tag}-{j}")));
        seq += 5;
    }
    // One more batch the producer never learns the fate of (acks=1 here): the followers
    // have it, the leader dies before the answer would reach the producer.
    let in_flight = batch("lost-answer", 5, Some((pid, 0, seq)));
    let first = client.produce(produce_request("f", 0, pb::Acks::Leader, in_flight.clone())).await.expect("acks=1");
    let first_offset = first.into_inner().base_offset;
    wait_until("the followers have the in-flight batch", 60, || {
        (2..=3).all(|b| offsets(&c.broker(b), "f", 0).0 == 105)
    })
    .await;

    c.stop_broker(1).await;
    let moved = c.ctl.move_leader("f", 0, 2);
    assert_eq!(moved.leader_epoch, 1);
    let mut client = c.client(2).await;
    // The producer retries the batch on the new leader: same offset, stored once.
    let retry = client.produce(produce_request("f", 0, pb::Acks::All, in_flight)).await.expect("retry");
    assert_eq!(retry.into_inner().base_offset, first_offset);
    acked.extend((0..5).map(|j| format!("lost-answer-{j}")));
    seq += 5;
    for i in 0..10 {
        let tag = format!("g{i}");
        client
            .produce(produce_request("f", 0, pb::Acks::All, batch(&tag, 5, Some((pid, 0, seq)))))
            .await
            .expect("acks=all on the new leader");
        acked.extend((0..5).map(|j| format!("{tag}-{j}")));
        seq += 5;
    }
    let (consumed, hw) = consume_all(&mut client, "f", 0).await;
    let unique: BTreeSet<&String> = consumed.iter().collect();
    let lost = acked.iter().filter(|v| !unique.contains(v)).count();
    let duplicates = consumed.len() - unique.len();
    println!("acked={} consumed={} lost={lost} duplicates={duplicates} hw={hw}", acked.len(), consumed.len());
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(consumed, acked, "consumed in the order acknowledged");
    // The old leader comes back as a follower and ends with the same log.
    c.start_broker(1).await;
    wait_until("the old leader caught up", 60, || offsets(&c.broker(1), "f", 0).0 == offsets(&c.broker(2), "f", 0).0)
        .await;
    assert_eq!(log_bytes(&c.broker(1), "f", 0), log_bytes(&c.broker(2), "f", 0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_quick_leader_changes_leave_no_divergent_suffix() {
    let mut c = TestCluster::start(3, Duration::from_millis(1000)).await;
    c.ctl.create_topic("d", 1, MIN_ISR_2, |_| vec![1, 2, 3]);
    c.sync();
    let mut client = c.client(1).await;
    for i in 0..10 {
        client
            .produce(produce_request("d", 0, pb::Acks::All, batch(&format!("a{i}"), 3, None)))
            .await
            .expect("acks=all");
    }
    wait_until("all replicas have 30 records", 60, || (1..=3).all(|b| offsets(&c.broker(b), "d", 0).0 == 30)).await;
    // The followers stop; the leader takes acks=1 writes nobody else has (epoch 0).
    c.stop_broker(2).await;
    c.stop_broker(3).await;
    for i in 0..4 {
        client
            .produce(produce_request("d", 0, pb::Acks::Leader, batch(&format!("x{i}"), 2, None)))
            .await
            .expect("acks=1");
    }
    assert_eq!(offsets(&c.broker(1), "d", 0).0, 38);
    c.stop_broker(1).await;

    // First change: broker 2 leads at epoch 1 and writes; second change right after:
    // broker 3 leads at epoch 2 and writes.
    c.ctl.move_leader("d", 0, 2);
    c.start_broker(2).await;
    c.start_broker(3).await;
    let isr_is = |want: [i32; 2]| {
        let mut isr = c.ctl.placement("d", 0).isr;
        isr.sort();
        isr == want
    };
    wait_until("broker 2 leads with ISR [2, 3]", 60, || isr_is([2, 3])).await;
    let mut client = c.client(2).await;
    for i in 0..3 {
        client
            .produce(produce_request("d", 0, pb::Acks::All, batch(&format!("b{i}"), 4, None)))
            .await
            .expect("epoch 1");
    }
    c.ctl.move_leader("d", 0, 3);
    let mut client = c.client(3).await;
    let r = client
        .produce(produce_request("d", 0, pb::Acks::All, batch("c0", 5, None)))
        .await
        .expect("epoch 2")
        .into_inner();
    assert_eq!(r.base_offset, Some(42));

    // The old leader returns with its divergent epoch-0 suffix [30, 38).
    c.start_broker(1).await;
    wait_until("every replica ends at 47", 60, || (1..=3).all(|b| offsets(&c.broker(b), "d", 0).0 == 47)).await;
    let bytes = log_bytes(&c.broker(3), "d", 0);
    for b in 1..=2 {
        assert_eq!(log_bytes(&c.broker(b), "d", 0), bytes, "broker {b}'s log differs from the leader's");
    }
    let history = c.broker(1).replica_log("d", 0).unwrap().1.epoch_history().unwrap();
    assert_eq!(history, [(0, 0), (1, 30), (2, 42)]);
    let (values, _) = consume_all(&mut client, "d", 0).await;
    assert!(values.iter().all(|v| !v.starts_with('x')), "the uncommitted suffix is gone");
    c.shutdown().await;
}
