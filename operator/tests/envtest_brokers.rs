//! Three real `sluice-broker` processes in Kubernetes mode against a real control plane
//! and the operator: each broker gets the identity and configuration its pod would get
//! from the StatefulSet (env from the ConfigMap, `POD_NAME`, its own 127.0.0.x address),
//! holds its Lease, hosts the partitions the Topic status places on it, and serves them
//! to a client bootstrapped at any broker. Covers placement on live brokers,
//! produce/consume on every partition, growth, deletion removing the data everywhere,
//! NOT_LEADER with the leader's address, admin RPCs refused, a `kill -9`ed broker
//! marked not live and avoided by new placements, and a graceful restart that keeps
//! every record of a live topic and none of a deleted one. Data is checked through
//! the brokers' gRPC API and metrics, never by opening their storage.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_client::{Client, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset, proto};
use sluice_crd::{Cluster, Topic};
use support::brokers::{BrokerProcess, CLUSTER, LEASE_SECONDS, broker_binary, broker_kubeconfig, object, start_broker};
use support::envtest::ControlPlane;
use support::{InProcessOperator, NS, wait_for};

/// Partition → (leader, replicas) once the Topic's status places `n` partitions.
async fn wait_placed(api: &Api<Topic>, name: &str, n: usize) -> BTreeMap<u32, (i32, Vec<i32>)> {
    wait_for(&format!("Topic {name} placed with {n} partitions"), Duration::from_secs(60), || async {
        let t = api.get(name).await.ok()?;
        let ps = &t.status.as_ref()?.partitions;
        (ps.len() == n && ps.iter().all(|p| p.leader.is_some()))
            .then(|| ps.iter().map(|p| (p.partition as u32, (p.leader.unwrap(), p.replicas.clone()))).collect())
    })
    .await
}

/// Waits until every broker's Metadata shows `topic` with `n` partitions (present or not).
async fn wait_brokers_see(brokers: &[&BrokerProcess], topic: &str, n: Option<usize>) {
    for b in brokers {
        wait_for(&format!("broker {} to see {topic} with {n:?} partitions", b.id), Duration::from_secs(60), || async {
            let c = Client::connect(&b.addr).await.ok()?;
            let m = c.raw().metadata(proto::MetadataRequest { topics: vec![] }).await.ok()?.into_inner();
            let seen = m.topics.iter().find(|t| t.name == topic).map(|t| t.partitions.len());
            (seen == n).then_some(())
        })
        .await;
    }
}

/// Waits until every one of `brokers` lists all of them at their addresses in its
/// Metadata, with the leaders of `placed` for `topic` (after a restart, each learns its
/// peers' new addresses from their Leases).
async fn wait_brokers_lead(brokers: &[&BrokerProcess], topic: &str, placed: &BTreeMap<u32, (i32, Vec<i32>)>) {
    let addrs: BTreeMap<i32, String> = brokers.iter().map(|b| (b.id, b.addr.clone())).collect();
    let leaders: BTreeMap<u32, i32> = placed.iter().map(|(p, (l, _))| (*p, *l)).collect();
    for b in brokers {
        wait_for(
            &format!("broker {} to see its peers and the leaders of {topic}", b.id),
            Duration::from_secs(60),
            || async {
                let c = Client::connect(&b.addr).await.ok()?;
                let m =
                    c.raw().metadata(proto::MetadataRequest { topics: vec![topic.into()] }).await.ok()?.into_inner();
                let seen: BTreeMap<i32, String> = m.brokers.iter().map(|b| (b.id, b.address.clone())).collect();
                let led: BTreeMap<u32, i32> =
                    m.topics.first()?.partitions.iter().map(|p| (p.partition, p.leader)).collect();
                (seen == addrs && led == leaders).then_some(())
            },
        )
        .await;
    }
}

/// Produces `per_partition` records to each of `partitions` through a client
/// bootstrapped at `bootstrap`, then reads them all back through a client bootstrapped
/// at `read_from`; returns the records read per partition.
async fn round_trip(
    bootstrap: &str,
    read_from: &str,
    topic: &str,
    partitions: std::ops::Range<u32>,
    per_partition: usize,
) -> BTreeMap<u32, Vec<String>> {
    let producer = Producer::new(Client::connect(bootstrap).await.unwrap(), ProducerConfig::default());
    let mut deliveries = Vec::new();
    for p in partitions.clone() {
        for i in 0..per_partition {
            let r = ProducerRecord::new(topic).partition(p).key(format!("k{i}")).value(format!("{topic}-{p}-{i}"));
            deliveries.push(producer.send(r).await.unwrap());
        }
    }
    for d in deliveries {
        let meta = d.await.unwrap_or_else(|e| panic!("delivery to {topic} failed: {e}"));
        assert!(meta.offset.is_some());
    }
    producer.close().await;
    consume(read_from, topic, partitions, per_partition).await
}

/// Reads `per_partition` records of each of `partitions` from the earliest offset,
/// through a client bootstrapped at `read_from`; returns them per partition.
async fn consume(
    read_from: &str,
    topic: &str,
    partitions: std::ops::Range<u32>,
    per_partition: usize,
) -> BTreeMap<u32, Vec<String>> {
    let mut consumer = Consumer::new(Client::connect(read_from).await.unwrap(), ConsumerConfig::default());
    for p in partitions.clone() {
        consumer.assign(topic, p, StartOffset::Earliest).await.unwrap();
    }
    let want = per_partition * partitions.len();
    let mut got: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.values().map(Vec::len).sum::<usize>() < want {
        assert!(Instant::now() < deadline, "consumed only {got:?}");
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            got.entry(r.partition).or_default().push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    got
}

async fn scrape(b: &BrokerProcess) -> String {
    let mut s = tokio::net::TcpStream::connect(&b.metrics).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", b.metrics).as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Partition → log end offset of every partition of `topic` a broker hosts, from its
/// `/metrics` (`sluice_*partition_log_end_offset{topic,partition}`).
fn log_end_offsets(exposition: &str, topic: &str) -> BTreeMap<u32, u64> {
    let key = format!("partition_log_end_offset{{topic=\"{topic}\",partition=\"");
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (_, rest) = l.split_once(&key)?;
            let (partition, rest) = rest.split_once('"')?;
            Some((partition.parse().ok()?, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_broker_processes_serve_topics_placed_by_the_operator() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let bin = broker_binary();
    let client = cp.client().await;
    let _operator = InProcessOperator::start(client.clone());
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &object("Cluster", CLUSTER, json!({ "brokers": 3 }))).await.unwrap();

    let kubeconfig = broker_kubeconfig(&cp, &client).await;
    let mut brokers: Vec<BrokerProcess> = (0..3).map(|id| start_broker(&bin, &cp, &kubeconfig, id)).collect();
    let t0 = Instant::now();
    wait_for("3 live brokers in the Cluster status", Duration::from_secs(60), || async {
        let c = clusters.get(CLUSTER).await.ok()?;
        (c.status?.live_brokers == 3).then_some(())
    })
    .await;
    println!("3 broker processes live (Leases seen by the operator) after {:.1} s", t0.elapsed().as_secs_f64());
    for b in &brokers {
        let l = leases.get(&format!("{CLUSTER}-broker-{}", b.id)).await.unwrap();
        assert_eq!(l.spec.as_ref().unwrap().holder_identity.as_deref(), Some(format!("{CLUSTER}-{}", b.id).as_str()));
        assert_eq!(l.metadata.labels.as_ref().unwrap()["sluice.dev/cluster"], CLUSTER);
        assert_eq!(l.metadata.annotations.as_ref().unwrap()["sluice.dev/address"], b.addr);
        assert!(scrape(b).await.contains("sluice_broker_lease_held 1"), "lease gauge of broker {}", b.id);
    }

    // A Topic with 6 partitions: placed on live brokers, hosted where placed.
    topics
        .create(&PostParams::default(), &object("Topic", "orders", json!({ "cluster": CLUSTER, "partitions": 6 })))
        .await
        .unwrap();
    let placed = wait_placed(&topics, "orders", 6).await;
    let leaders: BTreeSet<i32> = placed.values().map(|(l, _)| *l).collect();
    assert_eq!(leaders, BTreeSet::from([0, 1, 2]), "leaders spread over the live brokers: {placed:?}");
    println!("orders placed: {placed:?}");
    let refs: Vec<&BrokerProcess> = brokers.iter().collect();
    wait_brokers_see(&refs, "orders", Some(6)).await;

    // Metadata from any broker: every live broker, leaders from the Topic status.
    // Each broker learns the others from their Leases (a watch): under load a renewal can
    // arrive late, so wait for the view to settle rather than sampling it once.
    let c1 = Client::connect(&brokers[1].addr).await.unwrap();
    let all: BTreeMap<i32, String> = brokers.iter().map(|b| (b.id, b.addr.clone())).collect();
    let mut last: BTreeMap<i32, String>;
    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = c1.raw().metadata(proto::MetadataRequest { topics: vec!["orders".into()] }).await.unwrap().into_inner();
        last = m.brokers.iter().map(|b| (b.id, b.address.clone())).collect();
        if last == all || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last, all, "broker 1 lists every live broker");
    for p in &m.topics[0].partitions {
        assert_eq!(p.leader, placed[&p.partition].0);
    }

    // A broker that does not lead a partition says so, and names the leader.
    let (p, (leader, _)) = placed.iter().find(|(_, (l, _))| *l != 1).unwrap();
    let err = c1
        .raw()
        .produce(proto::ProduceRequest { topic: "orders".into(), partition: *p, acks: 1, ..Default::default() })
        .await
        .unwrap_err();
    let err = sluice_client::ClientError::from(err);
    assert_eq!(err.kind(), Some(proto::ErrorCode::NotLeader), "{err}");
    let sluice_client::ClientError::Broker { detail, .. } = &err else { panic!("{err:?}") };
    assert_eq!((detail.leader_id, detail.leader_address.as_str()), (*leader, brokers[*leader as usize].addr.as_str()));
    println!("NOT_LEADER from broker 1 for orders-{p}: {err}");

    // Admin writes go through Topic resources.
    let err = c1
        .raw()
        .create_topic(proto::CreateTopicRequest { name: "x".into(), partitions: 1, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("Topic resource"), "{}", err.message());

    // Replication is not built: a topic with replication factor 2 refuses acks=all
    // (NOT_ENOUGH_REPLICAS) instead of pretending, and takes acks=1.
    topics
        .create(
            &PostParams::default(),
            &object("Topic", "replicated", json!({ "cluster": CLUSTER, "partitions": 1, "replicationFactor": 2 })),
        )
        .await
        .unwrap();
    wait_placed(&topics, "replicated", 1).await;
    wait_brokers_see(&refs, "replicated", Some(1)).await;
    let bootstrap = brokers[0].addr.clone();
    let send = |acks| {
        let bootstrap = bootstrap.clone();
        async move {
            let producer = Producer::new(
                Client::connect(&bootstrap).await.unwrap(),
                ProducerConfig { acks, ..Default::default() },
            );
            producer.send(ProducerRecord::new("replicated").partition(0).value("x")).await.unwrap().await
        }
    };
    let err = send(sluice_client::Acks::All).await.unwrap_err();
    assert_eq!(err.kind(), Some(proto::ErrorCode::NotEnoughReplicas), "{err}");
    assert!(err.to_string().contains("brokers do not replicate yet"), "{err}");
    send(sluice_client::Acks::Leader).await.unwrap();
    println!("replication factor 2: acks=all refused ({err}), acks=1 accepted");

    // Produce and consume every partition, bootstrapped at broker 0, read via broker 2.
    let t = Instant::now();
    let got = round_trip(&brokers[0].addr, &brokers[2].addr, "orders", 0..6, 50).await;
    for p in 0..6 {
        let want: Vec<String> = (0..50).map(|i| format!("orders-{p}-{i}")).collect();
        assert_eq!(got[&p], want, "partition {p}");
    }
    println!("6 partitions x 50 records produced via broker 0, consumed via broker 2 in {:?}", t.elapsed());

    // Config changes reach the brokers.
    topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "config": { "retention.ms": "3600000" } } })),
        )
        .await
        .unwrap();
    let owner = &brokers[placed[&0].0 as usize];
    wait_for("retention.ms applied on the leader of orders-0", Duration::from_secs(30), || async {
        let c = Client::connect(&owner.addr).await.ok()?;
        let d = c.raw().describe_topic(proto::DescribeTopicRequest { name: "orders".into() }).await.ok()?.into_inner();
        (d.topic?.config.get("retention.ms").map(String::as_str) == Some("3600000")).then_some(())
    })
    .await;
    // DescribeTopic on a broker: the partitions it hosts, leaders from the Topic status.
    let owner = &brokers[1];
    let d = Client::connect(&owner.addr)
        .await
        .unwrap()
        .raw()
        .describe_topic(proto::DescribeTopicRequest { name: "orders".into() })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    let hosted: Vec<(u32, i32)> = d.partitions.iter().map(|p| (p.partition, p.leader)).collect();
    let want: Vec<(u32, i32)> =
        placed.iter().filter(|(_, (_, r))| r.contains(&owner.id)).map(|(p, (l, _))| (*p, *l)).collect();
    assert_eq!(hosted, want, "broker {} describes the partitions it hosts", owner.id);

    // A broker that cannot renew its Lease stops leading: someone else holds broker 0's
    // Lease for longer than a lease duration, then lets it expire.
    let lease0 = format!("{CLUSTER}-broker-0");
    let stolen = Instant::now();
    let p0 = *placed.iter().find(|(_, (l, _))| *l == 0).unwrap().0;
    let c0 = Client::connect(&brokers[0].addr).await.unwrap();
    let producer0 = Producer::new(
        c0.clone(),
        ProducerConfig { delivery_timeout: Duration::from_millis(800), ..ProducerConfig::default() },
    );
    let produce0 = || async { producer0.send(ProducerRecord::new("orders").partition(p0).value("x")).await?.await };
    let mut refused = None;
    while stolen.elapsed() < Duration::from_secs(LEASE_SECONDS * 3) {
        let mut l = leases.get(&lease0).await.unwrap();
        let spec = l.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".into());
        spec.renew_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()));
        let _ = leases.replace(&lease0, &PostParams::default(), &l).await;
        if refused.is_none()
            && let Err(e) = produce0().await
        {
            assert_eq!(e.kind(), Some(proto::ErrorCode::NotLeader), "{e}");
            assert!(scrape(&brokers[0]).await.contains("sluice_broker_lease_held 0"));
            refused = Some((stolen.elapsed(), e.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (after_secs, message) = refused.expect("broker 0 kept leading without its Lease");
    println!("broker 0 without its Lease refused produce after {after_secs:?}: {message}");
    let back = Instant::now();
    wait_for("broker 0 leads again once the intruder's Lease expired", Duration::from_secs(30), || async {
        produce0().await.ok()
    })
    .await;
    println!(
        "broker 0 renewed its Lease and leads again {:.1} s after the intruder stopped",
        back.elapsed().as_secs_f64()
    );

    // Grow to 9: the new partitions are placed, hosted and served.
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "partitions": 9 } })))
        .await
        .unwrap();
    let placed9 = wait_placed(&topics, "orders", 9).await;
    for p in 0..6 {
        assert_eq!(placed9[&p], placed[&p], "existing partitions never move");
    }
    wait_brokers_see(&refs, "orders", Some(9)).await;
    let got = round_trip(&brokers[1].addr, &brokers[0].addr, "orders", 6..9, 20).await;
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 60);
    println!("grown to 9: placement of 6..9 {:?}", (6..9).map(|p| &placed9[&p]).collect::<Vec<_>>());

    // Delete: every broker drops the data.
    topics.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("Topic orders gone", Duration::from_secs(60), || async {
        topics.get_opt("orders").await.unwrap().is_none().then_some(())
    })
    .await;
    wait_brokers_see(&refs, "orders", None).await;
    for b in &brokers {
        let text = scrape(b).await;
        assert!(!text.contains("topic=\"orders\",partition"), "broker {} still reports orders partitions", b.id);
    }

    // kill -9 broker 2: its Lease expires, the Cluster marks it not live, new topics avoid it.
    brokers[2].kill();
    let killed = Instant::now();
    wait_for("broker 2 not live in the Cluster status", Duration::from_secs(60), || async {
        let s = clusters.get(CLUSTER).await.ok()?.status?;
        (s.live_brokers == 2 && s.brokers.iter().any(|b| b.id == 2 && !b.live)).then_some(())
    })
    .await;
    println!("broker 2 killed -> not live after {:.1} s (Lease {LEASE_SECONDS} s)", killed.elapsed().as_secs_f64());
    topics
        .create(&PostParams::default(), &object("Topic", "after", json!({ "cluster": CLUSTER, "partitions": 4 })))
        .await
        .unwrap();
    let after = wait_placed(&topics, "after", 4).await;
    assert!(after.values().all(|(l, r)| *l != 2 && !r.contains(&2)), "placement avoids broker 2: {after:?}");
    let live: Vec<&BrokerProcess> = brokers.iter().take(2).collect();
    wait_brokers_see(&live, "after", Some(4)).await;
    let got = round_trip(&brokers[0].addr, &brokers[1].addr, "after", 0..4, 10).await;
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 40);
    // The survivors no longer list broker 2.
    let m = c1.raw().metadata(proto::MetadataRequest { topics: vec![] }).await.unwrap().into_inner();
    assert_eq!(m.brokers.iter().map(|b| b.id).collect::<Vec<_>>(), vec![0, 1]);

    // Stop the survivors gracefully (flush, Lease released), then start all three again
    // on their data directories (broker 2 after its kill -9): what they serve afterwards
    // is what they kept. The deleted topic does not come back on any of them, and every
    // record of the live one is there.
    for b in brokers.iter_mut() {
        b.stop();
    }
    let l = leases.get(&format!("{CLUSTER}-broker-0")).await.unwrap();
    assert_eq!(l.spec.unwrap().holder_identity, None, "a stopped broker releases its Lease");
    let restarted: Vec<BrokerProcess> = (0..3).map(|id| start_broker(&bin, &cp, &kubeconfig, id)).collect();
    wait_for("the 3 restarted brokers live in the Cluster status", Duration::from_secs(60), || async {
        (clusters.get(CLUSTER).await.ok()?.status?.live_brokers == 3).then_some(())
    })
    .await;
    let after = wait_placed(&topics, "after", 4).await;
    let refs: Vec<&BrokerProcess> = restarted.iter().collect();
    wait_brokers_see(&refs, "after", Some(4)).await;
    wait_brokers_lead(&refs, "after", &after).await;
    wait_brokers_see(&refs, "orders", None).await;
    let got = consume(&restarted[1].addr, "after", 0..4, 10).await;
    for p in 0..4 {
        let want: Vec<String> = (0..10).map(|i| format!("after-{p}-{i}")).collect();
        assert_eq!(got[&p], want, "after-{p} after the restart");
    }
    for b in &restarted {
        let text = scrape(b).await;
        assert!(!text.contains("topic=\"orders\""), "broker {} serves the deleted topic again", b.id);
        let hosted: BTreeMap<u32, u64> =
            after.iter().filter(|(_, (_, r))| r.contains(&b.id)).map(|(p, _)| (*p, 10)).collect();
        assert_eq!(log_end_offsets(&text, "after"), hosted, "broker {}: log end offsets of 'after'", b.id);
    }
    println!("after a graceful restart: 'after' complete (4 x 10 records), nothing of the deleted 'orders'");
}
