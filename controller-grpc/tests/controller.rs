//! The controller service over real gRPC on loopback: heartbeats and fencing, elections
//! on session expiry, AlterPartition's fencing, and state that survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use sluice_controller_grpc::{
    ControllerConfig, ControllerHandle, connect,
    pb::{self, AlterPartitionError, controller_client::ControllerClient},
    serve,
};
use tonic::transport::Channel;

async fn start(session: Duration, state_file: Option<PathBuf>) -> (ControllerHandle, ControllerClient<Channel>) {
    let config = ControllerConfig { listen: "127.0.0.1:0".parse().unwrap(), state_file, session_timeout: session };
    let handle = serve(config).await.unwrap();
    let client = connect(&handle.addr.to_string()).unwrap();
    (handle, client)
}

async fn heartbeat(c: &mut ControllerClient<Channel>, id: i32) -> pb::BrokerHeartbeatResponse {
    c.broker_heartbeat(pb::BrokerHeartbeatRequest {
        broker_id: id,
        grpc_address: format!("127.0.0.1:{}", 19_000 + id),
        kafka_address: format!("127.0.0.1:{}", 19_100 + id),
        rack: String::new(),
        incarnation: 1,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn create(c: &mut ControllerClient<Channel>, name: &str, rf: u32) -> pb::TopicMetadata {
    c.create_topic(pb::CreateTopicRequest {
        name: name.into(),
        partitions: 1,
        replication_factor: rf,
        config: [("min.insync.replicas".to_string(), "2".to_string())].into(),
    })
    .await
    .unwrap()
    .into_inner()
    .topic
    .unwrap()
}

/// Polls `f` every 50 ms until it answers, for up to 30 s.
async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_register_brokers_and_the_watch_sees_them() {
    let (handle, mut c) = start(Duration::from_secs(3), None).await;
    let mut watch = c.watch_metadata(pb::WatchMetadataRequest {}).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(first.brokers.is_empty());
    assert_eq!(first.session_timeout_ms, 3000);
    let r = heartbeat(&mut c, 4).await;
    assert!(!r.fenced);
    assert_eq!(r.session_timeout_ms, 3000);
    let next = watch.message().await.unwrap().unwrap();
    assert!(next.version > first.version);
    let b = &next.brokers[0];
    assert_eq!((b.id, b.fenced, b.kafka_address.as_str()), (4, false, "127.0.0.1:19104"));
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_leader_is_replaced_from_the_isr() {
    let session = Duration::from_millis(600);
    let (handle, mut c) = start(session, None).await;
    for id in 0..3 {
        heartbeat(&mut c, id).await;
    }
    let t = create(&mut c, "orders", 3).await;
    let before = t.partitions[0].clone();
    assert_eq!((before.replicas.len(), before.isr.len()), (3, 3));
    let leader = before.leader;
    let started = Instant::now();
    // Everybody but the leader keeps heartbeating.
    let after = wait_for("a new leader", async || {
        for id in (0..3).filter(|id| *id != leader) {
            heartbeat(&mut c, id).await;
        }
        let m = c.list_topics(pb::WatchMetadataRequest {}).await.unwrap().into_inner();
        let p = m.topics[0].partitions[0].clone();
        (p.leader != leader).then_some(p)
    })
    .await;
    println!("failover after {:?} (session {session:?})", started.elapsed());
    assert!(before.isr.contains(&after.leader) && after.leader >= 0, "{after:?}");
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(after.partition_epoch > before.partition_epoch);
    assert!(!after.isr.contains(&leader), "{after:?}");
    let m = c.list_topics(pb::WatchMetadataRequest {}).await.unwrap().into_inner();
    assert!(m.brokers.iter().any(|b| b.id == leader && b.fenced));
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_partition_is_fenced_by_leader_and_partition_epochs() {
    let (handle, mut c) = start(Duration::from_secs(30), None).await;
    for id in 0..3 {
        heartbeat(&mut c, id).await;
    }
    let p = create(&mut c, "orders", 3).await.partitions[0].clone();
    let follower = p.replicas.iter().copied().find(|r| *r != p.leader).unwrap();
    let shrink = |leader_id, leader_epoch, partition_epoch| pb::AlterPartitionRequest {
        topic: "orders".into(),
        partition: 0,
        leader_id,
        leader_epoch,
        partition_epoch,
        new_isr: p.isr.iter().copied().filter(|r| *r != follower).collect(),
    };
    let r = c.alter_partition(shrink(p.leader, p.leader_epoch - 1, p.partition_epoch)).await.unwrap().into_inner();
    assert_eq!(r.error(), AlterPartitionError::FencedLeaderEpoch, "{}", r.message);
    let r = c.alter_partition(shrink(follower, p.leader_epoch, p.partition_epoch)).await.unwrap().into_inner();
    assert_eq!(r.error(), AlterPartitionError::NotLeader, "{}", r.message);
    let r = c.alter_partition(shrink(p.leader, p.leader_epoch, p.partition_epoch + 1)).await.unwrap().into_inner();
    assert_eq!(r.error(), AlterPartitionError::InvalidUpdateVersion, "{}", r.message);
    assert_eq!(r.partition.unwrap().partition_epoch, p.partition_epoch, "the current state comes with a refusal");
    let r = c.alter_partition(shrink(p.leader, p.leader_epoch, p.partition_epoch)).await.unwrap().into_inner();
    assert_eq!(r.error(), AlterPartitionError::None, "{}", r.message);
    let now = r.partition.unwrap();
    assert_eq!((now.isr.len(), now.partition_epoch, now.leader_epoch), (2, p.partition_epoch + 1, p.leader_epoch));
    let r = c.alter_partition(shrink(p.leader, p.leader_epoch, p.partition_epoch)).await.unwrap().into_inner();
    assert_eq!(r.error(), AlterPartitionError::InvalidUpdateVersion, "the same change again is stale");
    let mut unknown = shrink(p.leader, p.leader_epoch, now.partition_epoch);
    unknown.topic = "nope".into();
    let r = c.alter_partition(unknown).await.unwrap().into_inner();
    assert_eq!(r.error(), AlterPartitionError::UnknownTopicOrPartition);
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_survives_a_controller_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("controller/state.json");
    let (handle, mut c) = start(Duration::from_secs(30), Some(file.clone())).await;
    for id in 0..3 {
        heartbeat(&mut c, id).await;
    }
    let t = create(&mut c, "orders", 3).await;
    let err = c
        .create_topic(pb::CreateTopicRequest { name: "orders".into(), partitions: 1, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    let before = c.list_topics(pb::WatchMetadataRequest {}).await.unwrap().into_inner();
    handle.shutdown().await.unwrap();
    assert!(file.exists());

    let (handle, mut c) = start(Duration::from_secs(30), Some(file)).await;
    let after = c.list_topics(pb::WatchMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(after.version, before.version);
    assert_eq!(after.topics, before.topics);
    assert_eq!(after.topics[0], t);
    assert_eq!(after.brokers.len(), 3, "known brokers are kept, with a fresh session");
    handle.shutdown().await.unwrap();
}
