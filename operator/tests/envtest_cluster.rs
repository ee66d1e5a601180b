//! The Cluster reconciler on a real control plane: owned children, status from broker
//! Leases, garbage collection by the controller-manager, and invalid specs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use sluice_crd::{Cluster, ConditionStatus};
use support::envtest::ControlPlane;
use support::{BROKER_LEASE_SECONDS, BrokerLeases, InProcessOperator, NS, wait_for};

fn cluster(name: &str, spec: serde_json::Value) -> Cluster {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": name, "namespace": NS }, "spec": spec,
    }))
    .unwrap()
}

fn ready(c: &Cluster) -> Option<(ConditionStatus, String)> {
    let cond = c.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((cond.status, cond.reason.clone()))
}

fn assert_owned<K: Resource>(obj: &K, owner: &Cluster) {
    let refs = obj.meta().owner_references.clone().unwrap_or_default();
    assert_eq!(refs.len(), 1, "{:?} owners", obj.meta().name);
    assert_eq!(refs[0].kind, "Cluster");
    assert_eq!(refs[0].uid, owner.uid().unwrap());
    assert_eq!(refs[0].controller, Some(true));
    let managers: Vec<_> = obj.meta().managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
    assert!(managers.iter().any(|m| m == "sluice-operator"), "{managers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_objects_are_owned_report_liveness_and_are_garbage_collected() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let client = cp.client().await;
    let operator = InProcessOperator::start(client.clone());
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &cluster("kf", json!({ "brokers": 3 }))).await.unwrap();

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let t0 = Instant::now();
    let sts =
        wait_for("StatefulSet kf", Duration::from_secs(30), || async { sts_api.get_opt("kf").await.unwrap() }).await;
    println!("StatefulSet applied {:.2} s after the Cluster was created", t0.elapsed().as_secs_f64());
    let kf = clusters.get("kf").await.unwrap();
    assert_owned(&sts, &kf);
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    for name in ["kf", "kf-brokers"] {
        let svc = svcs.get(name).await.unwrap();
        assert_owned(&svc, &kf);
        assert!(svc.spec.unwrap().ports.unwrap().iter().all(|p| p.protocol.as_deref() == Some("TCP")));
    }
    assert_owned(&Api::<ConfigMap>::namespaced(client.clone(), NS).get("kf-config").await.unwrap(), &kf);
    assert_owned(&Api::<ServiceAccount>::namespaced(client.clone(), NS).get("kf-broker").await.unwrap(), &kf);
    assert_owned(&Api::<Role>::namespaced(client.clone(), NS).get("kf-broker").await.unwrap(), &kf);
    assert_owned(&Api::<RoleBinding>::namespaced(client.clone(), NS).get("kf-broker").await.unwrap(), &kf);
    let pdb = cp.kubectl(
        &[
            "get",
            "pdb",
            "kf",
            "-o",
            "jsonpath={.apiVersion} {.metadata.ownerReferences[0].kind} {.spec.maxUnavailable}",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&pdb.stdout),
        "policy/v1beta1 Cluster 1",
        "{}",
        String::from_utf8_lossy(&pdb.stderr)
    );

    // The controller-manager creates the broker pods (they stay Pending: there is no kubelet).
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    wait_for("3 broker pods", Duration::from_secs(30), || async {
        let n = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=kf")).await.unwrap().items.len();
        (n == 3).then_some(())
    })
    .await;

    // No broker Lease yet: not ready, with one entry per broker.
    let c = wait_for("status BrokersNotLive", Duration::from_secs(20), || async {
        let c = clusters.get("kf").await.unwrap();
        (ready(&c) == Some((ConditionStatus::False, "BrokersNotLive".into()))).then_some(c)
    })
    .await;
    let status = c.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.brokers.len(), 3);
    assert_eq!(status.brokers[2].address, "kf-2.kf-brokers.default.svc:9092");

    // Brokers take their Leases → all live, Ready.
    let leases = BrokerLeases::start(client.clone(), "kf", &[0, 1, 2], &[]);
    let t0 = Instant::now();
    wait_for("Ready AllBrokersLive", Duration::from_secs(20), || async {
        let c = clusters.get("kf").await.unwrap();
        (ready(&c) == Some((ConditionStatus::True, "AllBrokersLive".into()))).then_some(())
    })
    .await;
    println!("all 3 brokers live in status {:.2} s after their Leases appeared", t0.elapsed().as_secs_f64());

    // Broker 1 dies: its Lease expires and the status says so.
    leases.kill(1);
    let t0 = Instant::now();
    let c = wait_for("broker 1 not live", Duration::from_secs(20), || async {
        let c = clusters.get("kf").await.unwrap();
        (c.status.as_ref().is_some_and(|s| s.live_brokers == 2 && !s.brokers[1].live)).then_some(c)
    })
    .await;
    println!(
        "broker 1 marked not live {:.2} s after its last renewal stopped (Lease duration {BROKER_LEASE_SECONDS} s)",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(ready(&c), Some((ConditionStatus::False, "BrokersNotLive".into())));
    let degraded = c.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!((degraded.status, degraded.reason.as_str()), (ConditionStatus::True, "BrokersNotLive"));
    drop(leases);
    operator.assert_few_failures(2.0);

    // Deleting the Cluster garbage-collects everything it owns.
    clusters.delete("kf", &DeleteParams::default()).await.unwrap();
    let t0 = Instant::now();
    wait_for("owned objects garbage-collected", Duration::from_secs(90), || async {
        let left = [
            sts_api.get_opt("kf").await.unwrap().is_some(),
            svcs.get_opt("kf").await.unwrap().is_some(),
            svcs.get_opt("kf-brokers").await.unwrap().is_some(),
            Api::<ConfigMap>::namespaced(client.clone(), NS).get_opt("kf-config").await.unwrap().is_some(),
            Api::<ServiceAccount>::namespaced(client.clone(), NS).get_opt("kf-broker").await.unwrap().is_some(),
            Api::<Role>::namespaced(client.clone(), NS).get_opt("kf-broker").await.unwrap().is_some(),
            Api::<RoleBinding>::namespaced(client.clone(), NS).get_opt("kf-broker").await.unwrap().is_some(),
        ];
        let pdb_left = cp.kubectl(&["get", "pdb", "kf", "--ignore-not-found", "-o", "name"], None).stdout;
        (left.iter().all(|l| !l) && pdb_left.is_empty()).then_some(())
    })
    .await;
    println!("owned objects garbage-collected {:.2} s after the Cluster was deleted", t0.elapsed().as_secs_f64());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cluster_spec_is_reported_without_hot_loop() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let client = cp.client().await;
    let operator = InProcessOperator::start(client.clone());
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    // Valid for the schema, invalid for Sluice: one port for gRPC and metrics.
    clusters
        .create(&PostParams::default(), &cluster("bad", json!({ "grpcPort": 9000, "metricsPort": 9000 })))
        .await
        .unwrap();
    let c = wait_for("Ready=False InvalidSpec", Duration::from_secs(20), || async {
        let c = clusters.get("bad").await.unwrap();
        (ready(&c) == Some((ConditionStatus::False, "InvalidSpec".into()))).then_some(c)
    })
    .await;
    let msg = c.status.as_ref().unwrap().conditions[0].message.clone().unwrap_or_default();
    println!("InvalidSpec message: {msg}");
    assert!(msg.contains("grpcPort and spec.metricsPort are both 9000"), "{msg}");
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let ev = wait_for("InvalidSpec Event", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await.unwrap().items;
        list.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bad")
                && e.reason.as_deref() == Some("InvalidSpec")
        })
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert!(Api::<StatefulSet>::namespaced(client.clone(), NS).get_opt("bad").await.unwrap().is_none());

    // No hot loop: nothing written for 6 s, and only the periodic rechecks (every 2 s).
    let rv = c.resource_version();
    let reconciles = operator.counter("sluice_operator_reconciles_total");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = clusters.get("bad").await.unwrap();
    assert_eq!(after.resource_version(), rv, "status rewritten at rest");
    let delta = operator.counter("sluice_operator_reconciles_total") - reconciles;
    println!("reconciles of an invalid Cluster in 6 s at rest: {delta}");
    assert!(delta <= 6.0, "{delta} reconciles in 6 s");
    assert_eq!(operator.counter("sluice_operator_status_writes_total"), 1.0);
    let events_now = events.list(&ListParams::default()).await.unwrap().items;
    let bad_events: Vec<_> =
        events_now.iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bad")).collect();
    assert_eq!(bad_events.len(), 1, "one Event, not one per reconcile");

    // Fixing the spec recovers.
    let fix = json!({ "spec": { "metricsPort": 9644 } });
    clusters.patch("bad", &PatchParams::default(), &Patch::Merge(&fix)).await.unwrap();
    wait_for("StatefulSet after the fix", Duration::from_secs(20), || async {
        Api::<StatefulSet>::namespaced(client.clone(), NS).get_opt("bad").await.unwrap()
    })
    .await;
    // The status follows the StatefulSet in the same reconcile: wait for it too.
    wait_for("Cluster status observing generation 2", Duration::from_secs(20), || async {
        let c = clusters.get("bad").await.unwrap();
        (c.status.as_ref().and_then(|s| s.observed_generation) == Some(2)).then_some(())
    })
    .await;
    operator.stop().await;
}
