//! The ConsumerGroup resource against a real control plane, the operator and a real
//! `sluice-broker` process in Kubernetes mode: the status shows state, members, their
//! partitions and per-partition lag within seconds of a change, `kubectl get` prints
//! them, `Lagging` follows the threshold, a reset waits for the members to leave and then
//! applies (consumers that come back start where it said), invalid resets are a
//! condition and one Event, the status is quiet at rest, the operator's `/metrics` has
//! the lag, and `deleteOffsetsOnRemoval` deletes the offsets on the broker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_client::{
    AutoOffsetReset, Client, GroupAdmin, GroupConfig, GroupConsumer, Producer, ProducerConfig, ProducerRecord, proto,
};
use sluice_crd::{Cluster, ConditionStatus, ConsumerGroup, ConsumerGroupState, ConsumerGroupStatus, Topic};
use support::brokers::{CLUSTER, broker_binary, broker_kubeconfig, object, start_broker};
use support::envtest::ControlPlane;
use support::{InProcessOperator, NS, metric, wait_for};

const GROUP: &str = "billing-v1";

fn condition<'a>(s: &'a ConsumerGroupStatus, type_: &str) -> Option<(&'a ConditionStatus, &'a str)> {
    s.conditions.iter().find(|c| c.type_ == type_).map(|c| (&c.status, c.reason.as_str()))
}

async fn wait_status(
    api: &Api<ConsumerGroup>,
    what: &str,
    check: impl Fn(&ConsumerGroupStatus) -> bool,
) -> ConsumerGroupStatus {
    let t0 = Instant::now();
    let s = wait_for(what, Duration::from_secs(60), || async {
        let s = api.get("billing").await.ok()?.status?;
        check(&s).then_some(s)
    })
    .await;
    println!("{what}: after {:.1} s", t0.elapsed().as_secs_f64());
    s
}

async fn produce(bootstrap: &str, per_partition: usize) {
    let producer = Producer::new(Client::connect(bootstrap).await.unwrap(), ProducerConfig::default());
    let mut deliveries = Vec::new();
    for p in 0..2 {
        for i in 0..per_partition {
            deliveries
                .push(producer.send(ProducerRecord::new("orders").partition(p).value(format!("v{i}"))).await.unwrap());
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
}

/// A group member that reads until it has `want` records, commits, and stays a member.
async fn member(bootstrap: &str, want: usize) -> (GroupConsumer, Vec<(u32, u64)>) {
    let config = GroupConfig {
        client_id: "billing-app".into(),
        auto_commit_interval: None,
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..GroupConfig::default()
    };
    let mut c =
        GroupConsumer::subscribe(Client::connect(bootstrap).await.unwrap(), &["orders"], GROUP, config).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want {
        assert!(Instant::now() < deadline, "read only {} of {want} records", got.len());
        got.extend(c.poll(Duration::from_millis(500)).await.unwrap().iter().map(|r| (r.partition, r.offset)));
    }
    c.commit_sync().await.unwrap();
    (c, got)
}

async fn events(client: &kube::Client, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), NS);
    let all = api.list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ConsumerGroup"))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

async fn patch_spec(api: &Api<ConsumerGroup>, spec: serde_json::Value) {
    api.patch("billing", &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_resource_shows_members_and_lag_and_resets_offsets_when_empty() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let bin = broker_binary();
    let client = cp.client().await;
    let operator = InProcessOperator::start(client.clone());
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &object("Cluster", CLUSTER, json!({ "brokers": 1 }))).await.unwrap();
    let kubeconfig = broker_kubeconfig(&cp, &client).await;
    let broker = start_broker(&bin, &cp, &kubeconfig, 0);
    topics
        .create(&PostParams::default(), &object("Topic", "orders", json!({ "cluster": CLUSTER, "partitions": 2 })))
        .await
        .unwrap();
    wait_for("broker 0 hosts orders", Duration::from_secs(60), || async {
        let c = Client::connect(&broker.addr).await.ok()?;
        let m = c.raw().metadata(proto::MetadataRequest { topics: vec!["orders".into()] }).await.ok()?.into_inner();
        (m.topics.first()?.partitions.len() == 2).then_some(())
    })
    .await;
    produce(&broker.addr, 10).await;

    // A resource for a group no client has used yet: the brokers know no such group.
    let spec = json!({ "cluster": CLUSTER, "groupId": GROUP, "lagThreshold": 15 });
    groups.create(&PostParams::default(), &object("ConsumerGroup", "billing", spec)).await.unwrap();
    let s = wait_status(&groups, "status of a group unknown to the brokers", |s| {
        s.state == ConsumerGroupState::Dead && condition(s, "Ready").is_some_and(|c| c.1 == "GroupNotFound")
    })
    .await;
    assert_eq!(condition(&s, "Ready").unwrap().0, &ConditionStatus::True);

    // A member reads everything and commits: Stable, 1 member owning both partitions, no lag.
    let (consumer, first) = member(&broker.addr, 20).await;
    assert_eq!(first.len(), 20);
    let s = wait_status(&groups, "Stable with one member and no lag", |s| {
        s.state == ConsumerGroupState::Stable && s.members == 1 && s.total_lag == 0 && s.partitions.len() == 2
    })
    .await;
    assert_eq!(s.coordinator, Some(0));
    assert_eq!(s.member_details[0].client_id, "billing-app");
    let mut owned = s.member_details[0].assignment.clone();
    owned.sort();
    assert_eq!(owned, ["orders-0", "orders-1"]);
    for p in &s.partitions {
        assert_eq!((p.committed_offset, p.log_end_offset, p.lag), (Some(10), 10, 0), "{p:?}");
    }
    assert_eq!(condition(&s, "Lagging"), Some((&ConditionStatus::False, "LagWithinThreshold")));

    // 20 more records: lag 20 > threshold 15.
    produce(&broker.addr, 10).await;
    let s = wait_status(&groups, "Lagging after 20 new records", |s| {
        s.total_lag == 20 && condition(s, "Lagging").is_some_and(|c| c.0 == &ConditionStatus::True)
    })
    .await;
    assert!(s.partitions.iter().all(|p| p.lag == 10 && p.log_end_offset == 20), "{:?}", s.partitions);
    let table = cp.kubectl(&["get", "consumergroups", "-n", NS], None);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    println!("{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CLUSTER", "STATE", "MEMBERS", "TOTAL-LAG", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["billing", CLUSTER, "Stable", "1", "20"]);
    // The operator's /metrics has the lag of the groups that have a resource.
    let text = operator.metrics.encode();
    assert_eq!(metric(&text, "sluice_consumer_group_total_lag"), 20.0, "{text}");
    assert_eq!(metric(&text, "sluice_consumer_group_lag"), 20.0);

    // Quiet at rest: nothing changes, nothing is written (5 polls).
    let rv = groups.get("billing").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(groups.get("billing").await.unwrap().metadata.resource_version, rv, "status written at rest");

    // A reset to the earliest offsets waits while the member is live...
    patch_spec(&groups, json!({ "offsetReset": { "to": "earliest" } })).await;
    let s = wait_status(&groups, "reset pending while a member is live", |s| {
        condition(s, "ResetPending") == Some((&ConditionStatus::True, "MembersActive"))
    })
    .await;
    assert!(s.last_reset.is_none());
    // ...and applies once it leaves; the status shows the new committed offsets.
    consumer.close().await.unwrap();
    let s = wait_status(&groups, "reset applied after the member left", |s| {
        condition(s, "ResetPending") == Some((&ConditionStatus::False, "Applied"))
            && s.partitions.iter().all(|p| p.committed_offset == Some(0))
    })
    .await;
    let applied = s.last_reset.clone().unwrap();
    assert!(!applied.dry_run);
    let lines: BTreeMap<u32, (Option<i64>, i64)> =
        applied.partitions.iter().map(|l| (l.partition, (l.from, l.to))).collect();
    assert_eq!(lines, BTreeMap::from([(0, (Some(10), 0)), (1, (Some(10), 0))]));
    assert_eq!(s.total_lag, 40);
    assert_eq!(events(&client, "OffsetsReset").await.len(), 1);
    // A consumer that comes back starts where the reset said: offset 0 of each partition.
    let (again, read) = member(&broker.addr, 40).await;
    for p in 0..2 {
        assert_eq!(read.iter().find(|(q, _)| *q == p).map(|r| r.1), Some(0), "partition {p} restarts at 0");
    }
    again.close().await.unwrap();
    // Applied once per change of offsetReset: the group now has committed 20 per
    // partition, and a change elsewhere in the spec does not apply the reset again.
    patch_spec(&groups, json!({ "lagThreshold": 1000 })).await;
    let s = wait_status(&groups, "the returning member's commits", |s| {
        s.partitions.iter().all(|p| p.committed_offset == Some(20))
            && condition(s, "Lagging").is_some_and(|c| c.0 == &ConditionStatus::False)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s2 = groups.get("billing").await.unwrap().status.unwrap();
    assert!(s2.partitions.iter().all(|p| p.committed_offset == Some(20)), "reset applied again: {:?}", s2.partitions);
    assert_eq!(s.last_reset.unwrap().generation, applied.generation);
    assert_eq!(events(&client, "OffsetsReset").await.len(), 1);

    // Invalid resets: a condition with a reason, and one Event, not a hot loop.
    let future = k8s_openapi::jiff::Timestamp::now().as_millisecond() + 86_400_000;
    patch_spec(&groups, json!({ "offsetReset": { "to": "timestamp", "timestampMs": future } })).await;
    let s = wait_status(&groups, "an invalid reset (timestamp in the future)", |s| {
        condition(s, "Ready") == Some((&ConditionStatus::False, "InvalidSpec"))
    })
    .await;
    let message = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone().unwrap();
    assert!(message.contains("in the future"), "{message}");
    assert_eq!(condition(&s, "ResetPending"), Some((&ConditionStatus::False, "InvalidReset")));
    patch_spec(&groups, json!({ "offsetReset": { "to": "latest", "topics": [{ "name": "nope" }] } })).await;
    let s = wait_status(&groups, "an invalid reset (unknown topic)", |s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.message.as_deref().is_some_and(|m| m.contains("nope")))
    })
    .await;
    println!("unknown topic: {:?}", s.conditions);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One Event when the spec became invalid (the second invalid spec keeps Ready False).
    assert_eq!(events(&client, "InvalidSpec").await.len(), 1);
    // A dry run shows the plan and applies nothing.
    patch_spec(&groups, json!({ "offsetReset": { "to": "shiftBy", "shiftBy": -5, "topics": [{ "name": "orders", "partitions": [1] }], "dryRun": true } }))
        .await;
    let s = wait_status(&groups, "a dry run planned", |s| {
        condition(s, "ResetPending") == Some((&ConditionStatus::True, "DryRun"))
    })
    .await;
    let plan = s.last_reset.unwrap();
    assert!(plan.dry_run);
    assert_eq!(plan.partitions.len(), 1);
    assert_eq!((plan.partitions[0].partition, plan.partitions[0].from, plan.partitions[0].to), (1, Some(20), 15));
    assert!(
        s.partitions.iter().all(|p| p.committed_offset == Some(20)),
        "a dry run changed offsets: {:?}",
        s.partitions
    );

    // Deleting the resource deletes the offsets on the broker only when asked to.
    patch_spec(&groups, json!({ "deleteOffsetsOnRemoval": true })).await;
    groups.delete("billing", &DeleteParams::default()).await.unwrap();
    wait_for("the ConsumerGroup to be gone", Duration::from_secs(60), || async {
        groups.get_opt("billing").await.unwrap().is_none().then_some(())
    })
    .await;
    let err = GroupAdmin::new(Client::connect(&broker.addr).await.unwrap()).describe(GROUP).await.unwrap_err();
    assert_eq!(err.kind(), Some(proto::ErrorCode::GroupNotFound), "{err}");
    assert_eq!(events(&client, "OffsetsDeleted").await.len(), 1);
    // The dry run was planned once, not again when deleteOffsetsOnRemoval changed.
    assert_eq!(events(&client, "OffsetResetPlanned").await.len(), 1);
    let text = operator.metrics.encode();
    assert_eq!(metric(&text, "sluice_consumer_group_total_lag"), 0.0, "series of a deleted group stay: {text}");
    operator.assert_few_failures(3.0);
    operator.stop().await;
}
