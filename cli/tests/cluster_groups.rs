#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Consumer groups in a local cluster (`sluice dev --brokers 3`): one coordinator per
//! group for the whole cluster, the leader of the group's `__consumer_offsets`
//! partition. Two `sluice consume --group` processes bootstrapped from different
//! brokers share one group; every broker shows its members and commits; `kill -9` of
//! the coordinator's broker moves the group to the new offsets leader, which continues
//! from the committed offsets: nothing is skipped, nothing committed is read again.
//! Kafka clients (librdkafka) bootstrapped from a broker that does not coordinate their
//! group follow FindCoordinator to the one that does.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;
mod kafka_env;

use common::{
    SLUICE,
    dev_cluster::{DevCluster, broker_bin, full_isr, tail, wait_for},
};

const TOPIC: &str = "jobs";
const GROUP: &str = "workers";
const PARTITIONS: u64 = 6;
/// Members' session timeout (the coordinator asks for heartbeats at a third of it).
const MEMBER_SESSION_MS: u64 = 3000;

/// A `sluice consume --group` process bootstrapped from one broker, printing JSON lines.
struct Member {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Member {
    fn start(c: &DevCluster, bootstrap: i32, n: usize) -> Self {
        let out = c.dir.path().join(format!("member-{n}.out"));
        let err = c.dir.path().join(format!("member-{n}.err"));
        let child = Command::new(SLUICE)
            .args(["--broker", &c.brokers[&bootstrap].grpc, "consume", TOPIC, "--group", GROUP, "--from-beginning"])
            .args(["--session-timeout-ms", &MEMBER_SESSION_MS.to_string(), "--format", "json"])
            .env("RUST_LOG", "info")
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Self { child, out, err }
    }

    /// (partition, offset, value) of every record printed so far.
    fn records(&self) -> Vec<(u64, u64, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| (v["partition"].as_u64().unwrap(), v["offset"].as_u64().unwrap(), v["value"].to_string()))
            .collect()
    }

    fn stderr(&self) -> String {
        tail(&std::fs::read_to_string(&self.err).unwrap_or_default())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `group describe --output json` as broker `b` answers it; `None` on a refusal (the
/// group not there yet, its coordinator moving).
fn describe(c: &DevCluster, b: i32) -> Option<Value> {
    let out = c.sluice(b, &["group", "describe", GROUP, "--output", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Partitions owned per member (by client id); panics when a partition has two owners.
fn owners(d: &Value) -> BTreeMap<String, BTreeSet<u64>> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeMap::new();
    for m in d["members"].as_array().unwrap() {
        let parts: BTreeSet<u64> =
            m["assignment"].as_array().unwrap().iter().map(|tp| tp["partition"].as_u64().unwrap()).collect();
        for p in &parts {
            assert!(seen.insert(*p), "partition {p} owned twice: {d}");
        }
        out.insert(m["client_id"].as_str().unwrap().to_string(), parts);
    }
    out
}

/// Committed offset per partition.
fn committed(d: &Value) -> BTreeMap<u64, u64> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["partition"].as_u64()?, p["committed"].as_u64()?)))
        .collect()
}

/// Produces `n` records `<prefix>-<i>` with acks=all through broker `b`; returns them as
/// `consume --format json` prints values (JSON strings).
fn produce(c: &DevCluster, b: i32, prefix: &str, n: usize) -> Vec<String> {
    let values: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    c.produce_with_acks(b, TOPIC, &input, "all");
    values.into_iter().map(|v| Value::String(v).to_string()).collect()
}

/// The coordinator of the group as broker `b` answers FindCoordinator (creating
/// `__consumer_offsets` on the cluster's first group request).
fn find_coordinator(c: &DevCluster, b: i32, group: &str) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = sluice_client::Client::connect(&c.brokers[&b].grpc).await.unwrap();
        let req = sluice_client::proto::FindCoordinatorRequest { group: group.into() };
        client.groups().find_coordinator(req).await.unwrap().into_inner().broker_id
    })
}

/// A group call sent straight to another broker is answered NOT_COORDINATOR, naming the
/// coordinator (what the CLI and the client library follow).
fn assert_not_coordinator(c: &DevCluster, coordinator: i32) {
    use sluice_client::{ClientError, proto::ErrorCode};
    let other = (0..3).find(|b| *b != coordinator).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt
        .block_on(async {
            let client = sluice_client::Client::connect(&c.brokers[&other].grpc).await.unwrap();
            let req = sluice_client::proto::DescribeGroupRequest { group: GROUP.into() };
            client.groups().describe_group(req).await.map(|_| ())
        })
        .map_err(ClientError::from)
        .expect_err("describe on a broker that does not coordinate the group");
    assert_eq!(err.kind(), Some(ErrorCode::NotCoordinator), "{err}");
    let ClientError::Broker { detail, message, .. } = &err else { panic!("{err:?}") };
    assert_eq!(
        (detail.leader_id, detail.leader_address.as_str()),
        (coordinator, c.brokers[&coordinator].grpc.as_str())
    );
    assert!(detail.retriable, "{err:?}");
    println!("broker {other} answers: {message}");
}

#[test]
fn one_coordinator_per_group_across_the_cluster_survives_kill_9_of_its_broker() {
    let Some(bin) = broker_bin() else { return };
    let c = DevCluster::start(&bin, &[]);
    c.ok(0, &["topic", "create", TOPIC, "--partitions", &PARTITIONS.to_string()]);
    full_isr(&c, TOPIC);
    let first = produce(&c, 2, "a", 300);

    // Two members bootstrapped from different brokers join the same group; one of
    // them from the broker that will be killed (it must find the new coordinator
    // through the brokers it learned of).
    let doomed = find_coordinator(&c, 0, GROUP);
    let other = (doomed + 1) % 3;
    let members = [Member::start(&c, doomed, 0), Member::start(&c, other, 1)];
    let settled = wait_for("two members splitting the partitions 3 + 3, on every broker", &c, || {
        let all: Vec<Value> = (0..3).filter_map(|b| describe(&c, b)).collect();
        let split = |d: &Value| {
            let o = owners(d);
            o.len() == 2 && o.values().all(|p| p.len() == 3)
        };
        (all.len() == 3 && all.iter().all(split)).then(|| all[0].clone())
    });
    let coordinator = settled["coordinator"].as_i64().unwrap() as i32;
    assert_eq!(coordinator, doomed, "FindCoordinator and DescribeGroup agree");
    println!("coordinator: broker {coordinator}; members: {:?}", owners(&settled));
    assert_not_coordinator(&c, coordinator);

    // Every record read and committed, the same commits seen through every broker.
    wait_for("the first 300 records committed, as every broker reports", &c, || {
        let all: Vec<Value> = (0..3).filter_map(|b| describe(&c, b)).collect();
        let done = all.len() == 3
            && all.iter().all(|d| d["total_lag"] == 0 && committed(d).len() as u64 == PARTITIONS)
            && all.iter().all(|d| committed(d) == committed(&all[0]) && d["coordinator"] == coordinator);
        done.then_some(())
    });
    for b in 0..3 {
        let list = c.ok(b, &["group", "list", "--output", "json"]);
        let v: Value = serde_json::from_str(&list).unwrap();
        let g = v.as_array().unwrap().iter().find(|g| g["group"] == GROUP);
        assert!(g.is_some_and(|g| g["members"] == 2), "group list on broker {b}: {list}");
    }
    let before_kill: BTreeSet<String> = members.iter().flat_map(Member::records).map(|(_, _, v)| v).collect();
    assert_eq!(before_kill.len(), first.len(), "every first-phase record was read before the kill");

    // kill -9 the coordinator's broker: the group moves to the new leader of its
    // offsets partition, which reads the commits back from its replica.
    c.kill9(coordinator);
    let killed = Instant::now();
    let survivors: Vec<i32> = (0..3).filter(|b| *b != coordinator).collect();
    let moved = wait_for("the group coordinated by a surviving broker, its members at 3 + 3 again", &c, || {
        let d = describe(&c, survivors[0])?;
        let o = owners(&d);
        let moved = d["coordinator"] != coordinator && o.len() == 2 && o.values().all(|p| p.len() == 3);
        moved.then_some(d)
    });
    println!(
        "after kill -9 of broker {coordinator}: coordinator broker {}, members {:?}, {:?} after the kill \
         (broker session {} ms, member session {MEMBER_SESSION_MS} ms)",
        moved["coordinator"],
        owners(&moved),
        killed.elapsed(),
        common::dev_cluster::SESSION_MS
    );
    let second = produce(&c, survivors[1], "b", 300);

    let acknowledged: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records: Vec<(u64, u64, String)> = members.iter().flat_map(Member::records).collect();
        let seen: BTreeSet<&String> = records.iter().map(|(_, _, v)| v).collect();
        if acknowledged.iter().all(|v| seen.contains(v)) {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} records read; member 0:\n{}\nmember 1:\n{}\ncluster log:\n{}",
            seen.len(),
            acknowledged.len(),
            members[0].stderr(),
            members[1].stderr(),
            tail(&c.log())
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // The checker: per member and partition, offsets must rise except where a record
    // is read again (a duplicate, after a rebalance).
    let mut times: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, _, v) in &records {
        *times.entry(v).or_default() += 1;
    }
    let lost = acknowledged.iter().filter(|v| !times.contains_key(v)).count();
    let duplicated: usize = times.values().map(|n| n - 1).sum();
    let first_again: usize = first.iter().map(|v| times.get(v).map_or(0, |n| n - 1)).sum();
    let mut reordered = 0;
    for m in &members {
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        let mut read: BTreeSet<String> = BTreeSet::new();
        for (p, o, v) in m.records() {
            if last.get(&p).is_some_and(|l| o <= *l) && !read.contains(&v) {
                reordered += 1;
            }
            last.insert(p, o);
            read.insert(v);
        }
    }
    println!(
        "acknowledged={} lost={lost} duplicated={duplicated} (of the committed first phase: {first_again}) reordered={reordered}",
        acknowledged.len()
    );
    assert_eq!(lost, 0, "records skipped by the group");
    assert_eq!(first_again, 0, "records committed before the kill were read again: the new coordinator lost commits");
    assert_eq!(reordered, 0);
    assert!(duplicated <= second.len(), "duplicates beyond the uncommitted window");
    // The surviving brokers agree on the commits.
    wait_for("the last commits seen alike by both surviving brokers", &c, || {
        let all: Vec<Value> = survivors.iter().filter_map(|b| describe(&c, *b)).collect();
        (all.len() == 2 && all[0]["total_lag"] == 0 && committed(&all[0]) == committed(&all[1])).then_some(())
    });
}

#[test]
fn librdkafka_members_follow_find_coordinator_and_every_broker_sees_their_commits() {
    let Some(bin) = broker_bin() else { return };
    let Some(python) = kafka_env::python() else { return };
    let c = DevCluster::start(&bin, &[]);
    c.ok(0, &["topic", "create", "grouped", "--partitions", "6"]);
    full_isr(&c, "grouped");
    let coordinator = find_coordinator(&c, 0, "g3");
    let bootstrap = (coordinator + 1) % 3;
    // Three confluent-kafka members split six partitions, commit every record, one
    // leaves, the two others take over (see kafka_clients.py `group`).
    let r = kafka_env::py(&python, &["group", &c.brokers[&bootstrap].kafka, "grouped", "g3"]);
    assert_eq!(r["before"], serde_json::json!([2, 2, 2]), "{r}");
    assert_eq!(r["after"], serde_json::json!([3, 3]), "{r}");
    for b in 0..3 {
        let out = c.ok(b, &["group", "describe", "g3", "--output", "json"]);
        let d: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(d["coordinator"], coordinator, "broker {b}: {d}");
        let want: BTreeMap<u64, u64> = (0..6).map(|p| (p, 110)).collect();
        assert_eq!(committed(&d), want, "broker {b}: {d}");
    }
    println!("bootstrapped from broker {bootstrap}; coordinator broker {coordinator}; commits alike on all three");
}
