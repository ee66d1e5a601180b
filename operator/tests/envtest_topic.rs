//! The Topic reconciler on a real control plane, with brokers played by Leases the test
//! renews: waiting for the cluster, placement on live brokers, quiet at rest, growing,
//! refused shrinking, duplicate names, leader failover when a broker dies, and deletion
//! through the finalizer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_crd::{Cluster, ConditionStatus, PartitionStatus, Topic};
use support::envtest::ControlPlane;
use support::{BrokerLeases, InProcessOperator, NS, wait_for};

/// How long "at rest" lasts; 10 s keeps CI short, `SLUICE_QUIET_SECONDS=30` for the full check.
fn quiet_seconds() -> u64 {
    std::env::var("SLUICE_QUIET_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

fn topic(name: &str, spec: serde_json::Value) -> Topic {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
        "metadata": { "name": name, "namespace": NS }, "spec": spec,
    }))
    .unwrap()
}

fn ready<K>(conditions: Option<&Vec<sluice_crd::Condition>>) -> Option<(ConditionStatus, String)> {
    let _ = std::marker::PhantomData::<K>;
    let c = conditions?.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason.clone()))
}

fn topic_ready(t: &Topic) -> Option<(ConditionStatus, String)> {
    ready::<Topic>(t.status.as_ref().map(|s| &s.conditions))
}

async fn wait_topic(api: &Api<Topic>, name: &str, status: ConditionStatus, reason: &str) -> Topic {
    let want = Some((status, reason.to_string()));
    wait_for(&format!("Topic {name} Ready={status:?} {reason}"), Duration::from_secs(30), || async {
        let t = api.get(name).await.unwrap();
        (topic_ready(&t) == want).then_some(t)
    })
    .await
}

fn partitions(t: &Topic) -> Vec<PartitionStatus> {
    t.status.as_ref().map(|s| s.partitions.clone()).unwrap_or_default()
}

fn leaders(ps: &[PartitionStatus]) -> BTreeMap<i32, usize> {
    let mut m = BTreeMap::new();
    for p in ps {
        *m.entry(p.leader.unwrap()).or_insert(0) += 1;
    }
    m
}

fn sts_fingerprint(sts: &StatefulSet) -> Option<String> {
    let mine: Vec<_> = sts
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some("sluice-operator"))
        .map(|m| format!("{:?}/{:?}", m.operation, m.time))
        .collect();
    Some(format!("generation {:?}, sluice-operator fields {mine:?}", sts.metadata.generation))
}

async fn patch_partitions(api: &Api<Topic>, name: &str, n: i32) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "partitions": n } }))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_placed_on_live_brokers_grow_refuse_shrink_and_are_finalized() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let client = cp.client().await;
    let operator = InProcessOperator::start(client.clone());
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);

    // A Topic whose Cluster does not exist yet waits, and proceeds when it appears.
    topics
        .create(
            &PostParams::default(),
            &topic("orders", json!({ "cluster": "kf", "partitions": 6, "replicationFactor": 2 })),
        )
        .await
        .unwrap();
    let t = wait_topic(&topics, "orders", ConditionStatus::False, "ClusterNotFound").await;
    assert!(t.finalizers().iter().any(|f| f == "sluice.dev/topic-data"));
    // Brokers are up (their Leases exist) before the Cluster appears, so the first
    // placement sees all three.
    let brokers = BrokerLeases::start(client.clone(), "kf", &[0, 1, 2], &[]);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), NS);
    wait_for("3 broker Leases", Duration::from_secs(10), || async {
        let n = leases.list(&ListParams::default().labels("sluice.dev/cluster=kf")).await.unwrap().items.len();
        (n == 3).then_some(())
    })
    .await;
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "kf", "namespace": NS }, "spec": { "brokers": 3 },
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &cluster).await.unwrap();
    let t = wait_topic(&topics, "orders", ConditionStatus::True, "Placed").await;
    let six = partitions(&t);
    println!("orders placement: {:?}", six.iter().map(|p| (p.partition, p.replicas.clone())).collect::<Vec<_>>());
    assert_eq!(six.len(), 6);
    for (i, p) in six.iter().enumerate() {
        assert_eq!(p.partition, i as i32);
        assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 2);
        assert!(p.replicas.iter().all(|r| (0..3).contains(r)));
        assert_eq!((p.leader, p.leader_epoch), (Some(p.replicas[0]), 0));
    }
    assert_eq!(leaders(&six).into_values().collect::<Vec<_>>(), vec![2, 2, 2]);
    assert_eq!(t.status.as_ref().unwrap().topic_name.as_deref(), Some("orders"));

    // The Cluster counts the replicas each broker hosts.
    wait_for("Cluster Ready with 4 replicas per broker", Duration::from_secs(20), || async {
        let c = clusters.get("kf").await.unwrap();
        let s = c.status?;
        (s.brokers.iter().all(|b| b.partitions == 4 && b.live)).then_some(())
    })
    .await;

    // Quiet at rest: no write to any object the operator manages (broker Leases are
    // still renewed every second, so reconciles keep happening).
    let quiet = quiet_seconds();
    let rv = || async {
        let mut v = vec![
            clusters.get("kf").await.unwrap().resource_version(),
            topics.get("orders").await.unwrap().resource_version(),
            // The controller-manager writes the StatefulSet's status; the operator's part is its
            // managed fields (a no-op apply would still stamp a new time there).
            sts_fingerprint(&Api::<StatefulSet>::namespaced(client.clone(), NS).get("kf").await.unwrap()),
            Api::<Service>::namespaced(client.clone(), NS).get("kf").await.unwrap().resource_version(),
            Api::<Service>::namespaced(client.clone(), NS).get("kf-brokers").await.unwrap().resource_version(),
            Api::<ConfigMap>::namespaced(client.clone(), NS).get("kf-config").await.unwrap().resource_version(),
            Api::<ServiceAccount>::namespaced(client.clone(), NS).get("kf-broker").await.unwrap().resource_version(),
            Api::<Role>::namespaced(client.clone(), NS).get("kf-broker").await.unwrap().resource_version(),
            Api::<RoleBinding>::namespaced(client.clone(), NS).get("kf-broker").await.unwrap().resource_version(),
        ];
        // The disruption controller writes the PDB's status: compare the operator's part.
        let jp = r#"jsonpath={.metadata.generation} {.metadata.managedFields[?(@.manager=="sluice-operator")].time}"#;
        let pdb = cp.kubectl(&["get", "pdb", "kf", "-o", jp], None);
        v.push(Some(String::from_utf8_lossy(&pdb.stdout).into_owned()));
        v
    };
    let before = rv().await;
    let reconciles = operator.counter("sluice_operator_reconciles_total");
    let writes = operator.counter("sluice_operator_status_writes_total");
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    assert_eq!(rv().await, before, "the operator wrote at rest");
    assert_eq!(operator.counter("sluice_operator_status_writes_total"), writes);
    println!(
        "quiet at rest for {quiet} s: 10 objects unchanged, {} reconciles, 0 writes",
        operator.counter("sluice_operator_reconciles_total") - reconciles
    );

    // Grow 6 → 9: existing partitions stay, new ones spread.
    patch_partitions(&topics, "orders", 9).await;
    let t = wait_for("9 partitions", Duration::from_secs(20), || async {
        let t = topics.get("orders").await.unwrap();
        (partitions(&t).len() == 9 && topic_ready(&t) == Some((ConditionStatus::True, "Placed".into()))).then_some(t)
    })
    .await;
    let nine = partitions(&t);
    assert_eq!(&nine[..6], &six[..]);
    assert_eq!(leaders(&nine).into_values().collect::<Vec<_>>(), vec![3, 3, 3]);

    // Scaling the Cluster down to 2 brokers would remove broker 2, which hosts replicas: refused.
    let scale = |n: i32| json!({ "spec": { "brokers": n } });
    clusters.patch("kf", &PatchParams::default(), &Patch::Merge(&scale(2))).await.unwrap();
    let c = wait_for("ScaleDownBlocked", Duration::from_secs(20), || async {
        let c = clusters.get("kf").await.unwrap();
        let ready = c.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
        (ready.reason == "ScaleDownBlocked").then_some((c, ready))
    })
    .await;
    println!("scale-down refused: {}", c.1.message.clone().unwrap_or_default());
    assert!(c.1.message.unwrap_or_default().contains("[2] still host partitions of topics {\"orders\"}"));
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get("kf").await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(3));
    clusters.patch("kf", &PatchParams::default(), &Patch::Merge(&scale(3))).await.unwrap();

    // What the 1.20 schema cannot check is checked by the operator.
    let bad = json!({ "cluster": "kf", "replicationFactor": 2, "minInsyncReplicas": 3 });
    topics.create(&PostParams::default(), &topic("bad-isr", bad)).await.unwrap();
    let t = wait_topic(&topics, "bad-isr", ConditionStatus::False, "InvalidSpec").await;
    let msg = t.status.unwrap().conditions[0].message.clone().unwrap_or_default();
    assert!(msg.contains("minInsyncReplicas (3) is larger than spec.replicationFactor (2)"), "{msg}");
    topics.delete("bad-isr", &DeleteParams::default()).await.unwrap();

    // Shrink 9 → 3: refused, status keeps 9, spec stays as written.
    patch_partitions(&topics, "orders", 3).await;
    let t = wait_topic(&topics, "orders", ConditionStatus::False, "PartitionShrinkRefused").await;
    let cond = t.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
    println!("shrink refused: {}", cond.message.clone().unwrap_or_default());
    assert_eq!(partitions(&t), nine);
    assert_eq!(t.spec.partitions, 3);
    assert_eq!(cond.observed_generation, t.metadata.generation);
    patch_partitions(&topics, "orders", 9).await;
    wait_topic(&topics, "orders", ConditionStatus::True, "Placed").await;

    // A second Topic with the same Kafka name: the older one keeps it.
    topics
        .create(&PostParams::default(), &topic("orders-copy", json!({ "cluster": "kf", "name": "orders" })))
        .await
        .unwrap();
    let dup = wait_topic(&topics, "orders-copy", ConditionStatus::False, "DuplicateTopicName").await;
    assert!(partitions(&dup).is_empty());
    assert_eq!(topic_ready(&topics.get("orders").await.unwrap()), Some((ConditionStatus::True, "Placed".into())));

    // Broker 2 dies: its partitions get a new leader (epoch + 1), new topics avoid it.
    brokers.kill(2);
    let t0 = Instant::now();
    let t = wait_for("leaders moved off broker 2", Duration::from_secs(20), || async {
        let t = topics.get("orders").await.unwrap();
        partitions(&t).iter().all(|p| p.leader != Some(2)).then_some(t)
    })
    .await;
    println!(
        "leaders moved off dead broker 2 {:.2} s after its Lease stopped being renewed",
        t0.elapsed().as_secs_f64()
    );
    for (after, before) in partitions(&t).iter().zip(&nine) {
        assert_eq!(after.replicas, before.replicas);
        if before.leader == Some(2) {
            assert_eq!(after.leader_epoch, 1);
            assert!(after.replicas.contains(&after.leader.unwrap()));
        } else {
            assert_eq!(after, before);
        }
    }
    assert_eq!(
        t.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Degraded").unwrap().status,
        ConditionStatus::True
    );
    topics
        .create(
            &PostParams::default(),
            &topic("events", json!({ "cluster": "kf", "partitions": 4, "replicationFactor": 2 })),
        )
        .await
        .unwrap();
    let ev = wait_topic(&topics, "events", ConditionStatus::True, "Placed").await;
    assert!(partitions(&ev).iter().all(|p| !p.replicas.contains(&2)), "{:?}", partitions(&ev));

    // Deletion goes through the finalizer, and completes although broker 2 is gone.
    topics.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("Topic orders deleted", Duration::from_secs(20), || async {
        topics.get_opt("orders").await.unwrap().is_none().then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let deleted = wait_for("TopicDeleted Event", Duration::from_secs(10), || async {
        events.list(&ListParams::default()).await.unwrap().items.into_iter().find(|e| {
            e.reason.as_deref() == Some("TopicDeleted")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("orders")
        })
    })
    .await;
    println!("deletion event: {}", deleted.note.clone().unwrap_or_default());
    assert!(deleted.note.unwrap_or_default().contains("skipped brokers not live: [2]"));
    // The duplicate now owns the name.
    wait_topic(&topics, "orders-copy", ConditionStatus::True, "Placed").await;
    operator.assert_few_failures(2.0);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_across_racks_when_the_cluster_sets_a_topology_key() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let client = cp.client().await;
    let operator = InProcessOperator::start(client.clone());
    let racks = [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")];
    let _brokers = BrokerLeases::start(client.clone(), "zoned", &[0, 1, 2, 3, 4, 5], &racks);
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "zoned", "namespace": NS },
        "spec": { "brokers": 6, "topologyKey": "topology.kubernetes.io/zone" },
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &cluster).await.unwrap();
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let spec = json!({ "cluster": "zoned", "partitions": 12, "replicationFactor": 3 });
    topics.create(&PostParams::default(), &topic("zoned-orders", spec)).await.unwrap();
    let t = wait_topic(&topics, "zoned-orders", ConditionStatus::True, "Placed").await;
    let rack = |id: i32| racks.iter().find(|(b, _)| *b == id).unwrap().1;
    let mut per_broker = BTreeMap::new();
    for p in partitions(&t) {
        let distinct: BTreeSet<&str> = p.replicas.iter().map(|&id| rack(id)).collect();
        assert_eq!(distinct.len(), 3, "partition {} replicas {:?} share a rack", p.partition, p.replicas);
        for r in p.replicas {
            *per_broker.entry(r).or_insert(0) += 1;
        }
    }
    println!("rack-aware placement, replicas per broker: {per_broker:?}");
    assert!(per_broker.values().all(|&n| n == 6), "{per_broker:?}");
    // Pods spread over the key too. The brokers are not handed it: none reads it, and
    // their Role cannot read Nodes; a broker's rack comes from SLUICE_RACK.
    // The Topic is placed from the Leases; the Cluster's objects come from its own
    // reconcile, which may still be running (or retrying) under load.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let cm = wait_for("ConfigMap zoned-config", Duration::from_secs(30), || async {
        cms.get_opt("zoned-config").await.ok().flatten()
    })
    .await;
    let data = cm.data.unwrap();
    assert!(!data.contains_key("SLUICE_TOPOLOGY_KEY"), "{data:?}");
    assert_eq!(data["SLUICE_CLUSTER"], "zoned");
    let stss = Api::<StatefulSet>::namespaced(client.clone(), NS);
    let sts =
        wait_for("StatefulSet zoned", Duration::from_secs(30), || async { stss.get_opt("zoned").await.ok().flatten() })
            .await;
    let anti = sts.spec.unwrap().template.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
    let keys: Vec<String> = anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap()
        .into_iter()
        .map(|w| w.pod_affinity_term.topology_key)
        .collect();
    assert_eq!(keys, ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
    operator.assert_few_failures(2.0);
    operator.stop().await;
}
