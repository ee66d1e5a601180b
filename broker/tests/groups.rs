//! Consumer groups over real sockets: assignment and rebalancing with live consumers,
//! at-least-once across rebalances, independent groups, the refusals users see, reset
//! strategies, lag metrics, compaction of `__consumer_offsets`, and committed offsets
//! surviving a `kill -9` of the `sluice-broker` process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{BrokerProcess, TestBroker, free_port};
use sluice_client::{
    AutoOffsetReset, Client, ClientError, GroupAdmin, GroupConfig, GroupConsumer, Producer, ProducerConfig,
    ProducerRecord, RebalanceListener, TopicPartition, group::admin::ResetTo, proto as pb,
};

/// Short sessions so that crash tests finish quickly; heartbeats every 200 ms.
const SESSION: Duration = Duration::from_millis(600);

fn config(auto_commit: bool) -> GroupConfig {
    GroupConfig {
        session_timeout: SESSION,
        auto_commit_interval: auto_commit.then_some(Duration::from_millis(200)),
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..Default::default()
    }
}

async fn produce(client: &Client, topic: &str, partitions: u32, n: u64, prefix: &str) {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut pending = Vec::new();
    for i in 0..n {
        let r = ProducerRecord::new(topic).partition((i % u64::from(partitions)) as u32).value(format!("{prefix}{i}"));
        pending.push(producer.send(r).await.unwrap());
    }
    for d in pending {
        d.await.unwrap();
    }
}

/// Member id → partitions, as the coordinator sees ownership.
async fn owners(admin: &GroupAdmin, group: &str) -> BTreeMap<String, BTreeSet<(String, u32)>> {
    let d = admin.describe(group).await.unwrap();
    d.members
        .into_iter()
        .map(|m| (m.member_id, m.assignment.into_iter().map(|tp| (tp.topic, tp.partition)).collect()))
        .collect()
}

fn assert_disjoint(o: &BTreeMap<String, BTreeSet<(String, u32)>>) {
    let mut seen = BTreeSet::new();
    for parts in o.values() {
        for p in parts {
            assert!(seen.insert(p.clone()), "{p:?} owned by two members at once: {o:?}");
        }
    }
}

/// Polls in a task until told to stop; shares what it owns.
fn spawn_consumer(
    mut c: GroupConsumer,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (tokio::task::JoinHandle<GroupConsumer>, Arc<Mutex<BTreeSet<TopicPartition>>>) {
    let owned = Arc::new(Mutex::new(BTreeSet::new()));
    let o = owned.clone();
    let h = tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            c.poll(Duration::from_millis(50)).await.unwrap();
            *o.lock().unwrap() = c.assignment().clone();
        }
        c
    });
    (h, owned)
}

/// Waits until `check` holds for the coordinator's view, asserting no double
/// ownership at every sample; returns the time it took.
async fn wait_for(
    admin: &GroupAdmin,
    group: &str,
    limit: Duration,
    check: impl Fn(&BTreeMap<String, BTreeSet<(String, u32)>>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let o = owners(admin, group).await;
        assert_disjoint(&o);
        if check(&o) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not reached within {limit:?}: {o:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sizes(o: &BTreeMap<String, BTreeSet<(String, u32)>>) -> Vec<usize> {
    let mut v: Vec<usize> = o.values().map(BTreeSet::len).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_two_and_two_a_third_rebalances_a_leaver_hands_back() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    broker.admin().await.create_topic("orders", 4, BTreeMap::new()).await.unwrap();
    let admin = GroupAdmin::new(client.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sub = || GroupConsumer::subscribe(client.clone(), &["orders"], "g", config(true));

    let (a, a_owned) = spawn_consumer(sub().await.unwrap(), stop.clone());
    let (b, b_owned) = spawn_consumer(sub().await.unwrap(), stop.clone());
    let t = wait_for(&admin, "g", Duration::from_secs(60), |o| o.len() == 2 && sizes(o) == [2, 2]).await;
    println!("2 members: 2 + 2 after {t:?}");
    let (c, _) = spawn_consumer(sub().await.unwrap(), stop.clone());
    let t = wait_for(&admin, "g", Duration::from_secs(60), |o| o.len() == 3 && sizes(o) == [1, 1, 2]).await;
    println!("3 members: 1 + 1 + 2 after {t:?}");
    // The clients' own views agree and never overlap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a_owned.lock().unwrap().is_disjoint(&b_owned.lock().unwrap()));

    // A clean close hands the partitions back at once (no session timeout needed).
    let d = admin.describe("g").await.unwrap();
    assert_eq!(d.state, "Stable");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
    let a_id = a.member_id();
    a.close().await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (b, _) = spawn_consumer(b, stop.clone());
    let (c, _) = spawn_consumer(c, stop.clone());
    let t = wait_for(&admin, "g", Duration::from_secs(60), |o| !o.contains_key(&a_id) && sizes(o) == [2, 2]).await;
    println!("after a clean leave: 2 + 2 after {t:?}");
    assert!(t < SESSION, "a leave does not wait for the session timeout ({t:?})");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    b.await.unwrap().close().await.unwrap();
    c.await.unwrap().close().await.unwrap();
    assert_eq!(admin.describe("g").await.unwrap().state, "Empty");
    broker.stop().await;
}

/// Records values it has processed; commits after every poll (manual commit).
async fn process_until(
    c: &mut GroupConsumer,
    seen: &Mutex<HashMap<String, u32>>,
    stop: &std::sync::atomic::AtomicBool,
    owned: &Mutex<usize>,
) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let records = c.poll(Duration::from_millis(50)).await.unwrap();
        *owned.lock().unwrap() = c.assignment().len();
        if records.is_empty() {
            continue;
        }
        {
            let mut s = seen.lock().unwrap();
            for r in &records {
                *s.entry(String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()).or_default() += 1;
            }
        }
        // A commit can fail when the member was fenced meanwhile; the records are then
        // read again by the new owner (at-least-once).
        let _ = c.commit_sync().await;
    }
}

#[derive(Default)]
struct CountRevocations(Arc<Mutex<u32>>);

impl RebalanceListener for CountRevocations {
    fn on_revoked(&mut self, _: &[TopicPartition], commit: &mut BTreeMap<TopicPartition, u64>) {
        assert!(!commit.is_empty(), "positions are offered for commit");
        *self.0.lock().unwrap() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_commit_is_at_least_once_across_rebalances() {
    const N: u64 = 20_000;
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    broker.admin().await.create_topic("events", 4, BTreeMap::new()).await.unwrap();
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let revocations: Arc<Mutex<u32>> = Arc::default();
    let producer = {
        let client = client.clone();
        tokio::spawn(async move {
            for chunk in 0..20 {
                produce(&client, "events", 4, N / 20, &format!("c{chunk}-")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let owned: Vec<Arc<Mutex<usize>>> = (0..3).map(|_| Arc::default()).collect();
    let member = |stop: Arc<std::sync::atomic::AtomicBool>, owned: Arc<Mutex<usize>>| {
        let (client, seen, revocations) = (client.clone(), seen.clone(), revocations.clone());
        tokio::spawn(async move {
            let mut c = GroupConsumer::subscribe(client, &["events"], "alo", config(false)).await.unwrap();
            c.set_rebalance_listener(CountRevocations(revocations));
            process_until(&mut c, &seen, &stop, &owned).await;
            c
        })
    };
    // Each step waits until the live members share all 4 partitions, so that every join
    // is its own rebalance (under load, fixed sleeps let two joins fold into one).
    let settled = |live: &[usize]| {
        let counts: Vec<usize> = live.iter().map(|&m| *owned[m].lock().unwrap()).collect();
        counts.iter().sum::<usize>() == 4 && counts.iter().all(|&c| c > 0)
    };
    let wait_settled = |live: &'static [usize]| {
        let settled = &settled;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !settled(live) {
                assert!(Instant::now() < deadline, "members {live:?} never shared the 4 partitions");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Members come and go while records flow: 1 → 2 → 3 → 2 (a close) → 1 (a crash:
    // dropped without close).
    let stops: Vec<_> = (0..3).map(|_| Arc::new(std::sync::atomic::AtomicBool::new(false))).collect();
    let m0 = member(stops[0].clone(), owned[0].clone());
    wait_settled(&[0]).await;
    let m1 = member(stops[1].clone(), owned[1].clone());
    wait_settled(&[0, 1]).await;
    let m2 = member(stops[2].clone(), owned[2].clone());
    wait_settled(&[0, 1, 2]).await;
    stops[1].store(true, std::sync::atomic::Ordering::Relaxed);
    m1.await.unwrap().close().await.unwrap();
    wait_settled(&[0, 2]).await;
    stops[2].store(true, std::sync::atomic::Ordering::Relaxed);
    m2.abort();
    let _ = m2.await;
    producer.await.unwrap();
    // The survivor reads everything that is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < N as usize {
        assert!(Instant::now() < deadline, "only {} of {N} records processed", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stops[0].store(true, std::sync::atomic::Ordering::Relaxed);
    m0.await.unwrap().close().await.unwrap();
    {
        let seen = seen.lock().unwrap();
        let duplicates: u32 = seen.values().map(|c| c - 1).sum();
        println!(
            "{} records processed, {duplicates} duplicates, {} revocations",
            seen.len(),
            revocations.lock().unwrap()
        );
        assert_eq!(seen.len(), N as usize, "every record processed at least once");
        // Duplicates come only from work not yet committed when a member vanished: at most
        // what one poll returns per partition, far below this bound.
        assert!(duplicates < (N / 4) as u32, "{duplicates} duplicates");
        assert!(*revocations.lock().unwrap() >= 2, "partitions were revoked during the test");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_each_receive_every_record() {
    const N: u64 = 2_000;
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    broker.admin().await.create_topic("news", 3, BTreeMap::new()).await.unwrap();
    produce(&client, "news", 3, N, "n").await;
    let mut totals = Vec::new();
    for group in ["one", "two"] {
        let mut members = Vec::new();
        for _ in 0..2 {
            members.push(GroupConsumer::subscribe(client.clone(), &["news"], group, config(true)).await.unwrap());
        }
        let mut values = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while values.len() < N as usize && Instant::now() < deadline {
            for m in members.iter_mut() {
                for r in m.poll(Duration::from_millis(20)).await.unwrap() {
                    values.insert(r.value.unwrap());
                }
            }
        }
        totals.push(values.len());
        for m in members {
            m.close().await.unwrap();
        }
    }
    assert_eq!(totals, vec![N as usize, N as usize]);
    // Both groups committed everything: no lag left.
    let admin = GroupAdmin::new(client.clone());
    for group in ["one", "two"] {
        let d = admin.describe(group).await.unwrap();
        assert_eq!(d.total_lag, 0, "{group}: {d:?}");
    }
    let listed: Vec<String> = admin.list().await.unwrap().into_iter().map(|g| g.group).collect();
    assert_eq!(listed, vec!["one", "two"]);
    broker.stop().await;
}

fn kind(e: &ClientError) -> pb::ErrorCode {
    e.kind().unwrap_or_else(|| panic!("not a broker error: {e}"))
}

async fn heartbeat(
    client: &Client,
    member: &str,
    epoch: i32,
    owned: &[u32],
) -> Result<pb::HeartbeatResponse, ClientError> {
    let req = pb::HeartbeatRequest {
        group: "raw".into(),
        member_id: member.into(),
        member_epoch: epoch,
        topics: vec!["t".into()],
        owned: owned.iter().map(|p| pb::TopicPartition { topic: "t".into(), partition: *p }).collect(),
        session_timeout_ms: SESSION.as_millis() as u32,
        strategy: 0,
        client_id: "raw".into(),
    };
    Ok(client.groups().heartbeat(req).await?.into_inner())
}

async fn commit(client: &Client, member: &str, epoch: i32, partition: u32, offset: u64) -> Result<(), ClientError> {
    let req = pb::OffsetCommitRequest {
        group: "raw".into(),
        member_id: member.into(),
        member_epoch: epoch,
        offsets: vec![pb::CommittedOffset { topic: "t".into(), partition, offset, ..Default::default() }],
    };
    client.groups().offset_commit(req).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_refusals() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    broker.admin().await.create_topic("t", 2, BTreeMap::new()).await.unwrap();
    produce(&client, "t", 2, 10, "v").await;
    let admin = GroupAdmin::new(client.clone());

    let e = admin.describe("nobody").await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::GroupNotFound);
    assert_eq!(e.to_string(), "group 'nobody' does not exist");

    // Member a joins and owns both partitions; b joins and waits for one.
    let a = heartbeat(&client, "", 0, &[]).await.unwrap();
    assert_eq!(a.assignment.len(), 2);
    assert_eq!(a.heartbeat_interval_ms, SESSION.as_millis() as u32 / 3);
    let owned: Vec<u32> = a.assignment.iter().map(|tp| tp.partition).collect();
    let b = heartbeat(&client, "", 0, &[]).await.unwrap();
    assert!(b.assignment.is_empty() && b.reconciling);
    // a is asked to give one up and does.
    let a = heartbeat(&client, &a.member_id, a.member_epoch, &owned).await.unwrap();
    let kept: Vec<u32> = a.assignment.iter().map(|tp| tp.partition).collect();
    assert_eq!(kept.len(), 1);
    let a = heartbeat(&client, &a.member_id, a.member_epoch, &kept).await.unwrap();
    let b = heartbeat(&client, &b.member_id, b.member_epoch, &[]).await.unwrap();
    let b_part = b.assignment[0].partition;
    assert_ne!(b_part, kept[0]);

    // Commit for a partition the member does not own.
    let e = commit(&client, &a.member_id, a.member_epoch, b_part, 1).await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::PartitionNotOwned);
    assert!(e.to_string().contains(&format!("does not own t-{b_part}")), "{e}");
    // Commit with a stale epoch (a fenced zombie).
    let e = commit(&client, &a.member_id, a.member_epoch - 1, kept[0], 1).await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::FencedMemberEpoch);
    assert!(e.to_string().contains("is fenced"), "{e}");
    // Commit beyond the log end.
    let e = commit(&client, &a.member_id, a.member_epoch, kept[0], 1_000).await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::OffsetOutOfRange);
    assert!(e.to_string().contains("valid offsets are 0 to 5"), "{e}");
    commit(&client, &a.member_id, a.member_epoch, kept[0], 3).await.unwrap();

    // Reset and delete while members are live: refused, naming them.
    let e = admin.reset_offsets("raw", "t", ResetTo::Earliest, true).await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::GroupNotEmpty);
    for id in [&a.member_id, &b.member_id] {
        assert!(e.to_string().contains(id.as_str()), "{e}");
    }
    assert_eq!(kind(&admin.delete("raw").await.unwrap_err()), pb::ErrorCode::GroupNotEmpty);

    // b stops heartbeating (a crash): after the session timeout a gets everything.
    let started = Instant::now();
    let mut a = a;
    let mut owned = kept;
    loop {
        a = heartbeat(&client, &a.member_id, a.member_epoch, &owned).await.unwrap();
        owned = a.assignment.iter().map(|tp| tp.partition).collect();
        if owned.len() == 2 {
            break;
        }
        assert!(started.elapsed() < SESSION * 5, "b's partition never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("crashed member's partition moved after {:?} (session {SESSION:?})", started.elapsed());
    assert!(started.elapsed() >= SESSION / 2);
    let e = commit(&client, &b.member_id, b.member_epoch, b_part, 1).await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::UnknownMemberId, "{e}");
    let e = heartbeat(&client, &b.member_id, b.member_epoch, &[b_part]).await.unwrap_err();
    assert_eq!(kind(&e), pb::ErrorCode::UnknownMemberId, "{e}");

    // After a leaves, the group is empty and can be deleted.
    client
        .groups()
        .leave_group(pb::LeaveGroupRequest { group: "raw".into(), member_id: a.member_id.clone() })
        .await
        .unwrap();
    assert_eq!(admin.delete("raw").await.unwrap(), 1);
    assert_eq!(kind(&admin.describe("raw").await.unwrap_err()), pb::ErrorCode::GroupNotFound);
    assert_eq!(kind(&admin.delete("raw").await.unwrap_err()), pb::ErrorCode::GroupNotFound);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offsets_plans_and_applies_each_strategy() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    broker.admin().await.create_topic("r", 2, BTreeMap::new()).await.unwrap();
    // Offsets 0..10 of each partition stamped a minute ago, 10..20 half a minute ago:
    // explicit timestamps, so that the test does not depend on how the clock moves
    // while it runs (and recent ones, so that retention keeps them).
    let now = sluice_broker::broker::now_ms();
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    for i in 0..40u32 {
        let ts = if i < 20 { now - 60_000 } else { now - 30_000 };
        let r = ProducerRecord::new("r").partition(i % 2).value(format!("v{i}")).timestamp_ms(ts);
        producer.send(r).await.unwrap().await.unwrap();
    }
    let middle = now - 45_000;
    let admin = GroupAdmin::new(client.clone());
    let committed = || async { admin.committed("rg", &[]).await.unwrap().iter().map(|o| o.offset).collect::<Vec<_>>() };

    // Each strategy: the dry run shows the plan and changes nothing; execute applies it.
    let cases = [
        (ResetTo::Latest, vec![20, 20], false),
        (ResetTo::Earliest, vec![0, 0], false),
        (ResetTo::Offset(7), vec![7, 7], false),
        (ResetTo::ShiftBy(5), vec![12, 12], false),
        (ResetTo::ShiftBy(-100), vec![0, 0], true),
        (ResetTo::Timestamp(middle), vec![10, 10], false),
        (ResetTo::Offset(1_000), vec![20, 20], true),
    ];
    for (to, expected, clamped) in cases {
        let before = committed().await;
        let plan = admin.reset_offsets("rg", "r", to, false).await.unwrap();
        assert!(!plan.executed);
        let new: Vec<u64> = plan.plan.iter().map(|l| l.new_offset).collect();
        assert_eq!(new, expected, "{to:?} plan");
        assert!(plan.plan.iter().all(|l| l.clamped == clamped && l.log_end_offset == 20), "{to:?}: {plan:?}");
        assert_eq!(committed().await, before, "{to:?}: a dry run writes nothing");
        let done = admin.reset_offsets("rg", "r", to, true).await.unwrap();
        assert!(done.executed);
        assert_eq!(committed().await, expected, "{to:?} executed");
    }
    // A member then starts from the reset offsets (7 here, then reset to 20 → nothing).
    admin.reset_offsets("rg", "r", ResetTo::Offset(15), true).await.unwrap();
    let mut c = GroupConsumer::subscribe(client.clone(), &["r"], "rg", config(false)).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 10 && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(100)).await.unwrap().into_iter().map(|r| r.offset));
    }
    got.sort();
    assert_eq!(got, vec![15, 15, 16, 16, 17, 17, 18, 18, 19, 19]);
    assert_eq!(
        kind(&admin.reset_offsets("rg", "nope", ResetTo::Earliest, false).await.unwrap_err()),
        pb::ErrorCode::GroupNotEmpty
    );
    c.close().await.unwrap();
    let e = admin.reset_offsets("rg", "nope", ResetTo::Earliest, false).await.unwrap_err();
    assert_eq!(e.to_string(), "unknown topic 'nope'");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_exported_and_offsets_topic_is_hidden_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let mut config = sluice_broker::BrokerConfig::standalone(dir.path(), "127.0.0.1:0".parse().unwrap());
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.groups.compact_after_records = 50;
        config.groups.offsets_partitions = 2;
        sluice_broker::start(config).await.unwrap()
    };
    let handle = start().await;
    let client = Client::connect(&handle.addr.to_string()).await.unwrap();
    let admin = sluice_client::Admin::new(client.clone());
    admin.create_topic("m", 2, BTreeMap::new()).await.unwrap();
    produce(&client, "m", 2, 100, "x").await;
    let names: Vec<String> = admin.list_topics(false).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["m"], "internal topics are hidden by default");
    let all = admin.list_topics(true).await.unwrap();
    assert!(all.iter().any(|t| t.name == "__consumer_offsets" && t.internal && t.partitions == 2));
    // Clients cannot write offsets around the coordinator, nor delete its topic.
    let batch = {
        let mut b = sluice_core::BatchBuilder::default();
        b.push(0, Some(b"k"), Some(b"v"), &[]);
        b.finish().unwrap()
    };
    let req = pb::ProduceRequest { topic: "__consumer_offsets".into(), batch, acks: 1, ..Default::default() };
    let e = ClientError::from(client.raw().produce(req).await.unwrap_err());
    assert_eq!(
        e.to_string(),
        "invalid request: '__consumer_offsets' is an internal topic; clients cannot produce to it"
    );
    let e = admin.delete_topic("__consumer_offsets").await.unwrap_err();
    assert!(e.to_string().contains("internal topic and cannot be deleted"), "{e}");

    // 500 commits of one group: the offsets partition stays small.
    let groups = GroupAdmin::new(client.clone());
    for i in 0..250u64 {
        groups.reset_offsets("lagging", "m", ResetTo::Offset(i % 40), true).await.unwrap();
    }
    let d = admin.describe_topic("__consumer_offsets").await.unwrap();
    let records: u64 = d.partitions.iter().map(|p| p.log_end_offset - p.log_start_offset).sum();
    println!("__consumer_offsets after 500 offset records: {records} retained");
    assert!(records <= 120, "compaction keeps the partition small: {records} records retained");

    let metrics = reqwest_metrics(handle.metrics_addr.unwrap()).await;
    assert!(metrics.contains(r#"sluice_consumer_group_lag{group="lagging",topic="m",partition="0"} 41"#), "{metrics}");
    assert!(metrics.contains(r#"sluice_consumer_group_committed_offset{group="lagging",topic="m",partition="1"} 9"#));

    // Replay after a restart (on compacted data) gives the same offsets.
    handle.shutdown().await.unwrap();
    let handle = start().await;
    let client = Client::connect(&handle.addr.to_string()).await.unwrap();
    let offsets: Vec<u64> =
        GroupAdmin::new(client).committed("lagging", &[]).await.unwrap().iter().map(|o| o.offset).collect();
    assert_eq!(offsets, vec![9, 9]);
    handle.shutdown().await.unwrap();
}

/// GET /metrics over a plain TCP socket (no HTTP client dependency needed).
async fn reqwest_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_kill_9_and_members_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut broker = BrokerProcess::spawn(&data, port, &[]);
    broker.wait_ready();
    let addr = broker.addr.clone();
    let client = Client::connect(&addr).await.unwrap();
    sluice_client::Admin::new(client.clone()).create_topic("k", 2, BTreeMap::new()).await.unwrap();
    produce(&client, "k", 2, 100, "before").await;

    let mut c = GroupConsumer::subscribe(client.clone(), &["k"], "survivor", config(false)).await.unwrap();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 100 && Instant::now() < deadline {
        for r in c.poll(Duration::from_millis(100)).await.unwrap() {
            seen.insert(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(seen.len(), 100);
    c.commit_sync().await.unwrap();
    let old_member = c.member_id();

    broker.kill9();
    let mut broker = BrokerProcess::spawn(&data, port, &[]);
    broker.wait_ready();
    let admin = GroupAdmin::new(Client::connect(&addr).await.unwrap());
    let committed: Vec<u64> = admin.committed("survivor", &[]).await.unwrap().iter().map(|o| o.offset).collect();
    assert_eq!(committed, vec![50, 50], "committed offsets survive kill -9");

    // The same consumer object rejoins on its own (its heartbeat is refused by the new
    // coordinator, which knows no members) and continues from the committed offsets:
    // nothing committed before the crash is read again.
    produce(&Client::connect(&addr).await.unwrap(), "k", 2, 10, "after").await;
    let mut after = BTreeMap::<String, u32>::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while after.len() < 10 || c.member_id() == old_member || c.member_id().is_empty() || c.assignment().len() < 2 {
        assert!(Instant::now() < deadline, "never rejoined and caught up: {after:?}");
        for r in c.poll(Duration::from_millis(50)).await.unwrap() {
            *after.entry(String::from_utf8(r.value.unwrap().to_vec()).unwrap()).or_default() += 1;
        }
    }
    assert!(after.keys().all(|v| v.starts_with("after")), "nothing committed is read again: {after:?}");
    // Records read before the rejoin were not committed, so they come again (at least
    // once); wait until both partitions are caught up.
    while c.positions().values().any(|&p| p < 55) {
        assert!(Instant::now() < deadline, "never caught up: {:?}", c.positions());
        for r in c.poll(Duration::from_millis(50)).await.unwrap() {
            *after.entry(String::from_utf8(r.value.unwrap().to_vec()).unwrap()).or_default() += 1;
        }
    }
    println!("after the restart: {} records read {} times in all", after.len(), after.values().sum::<u32>());
    c.commit_sync().await.unwrap();
    let d = admin.describe("survivor").await.unwrap();
    assert_eq!((d.members.len(), d.total_lag), (1, 0));
    c.close().await.unwrap();
    drop(broker);
}
