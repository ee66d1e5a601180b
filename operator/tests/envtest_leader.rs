//! Leader election between two operator processes on a real control plane: exactly one
//! reconciles; after `kill -9` of the leader the other takes over within one lease
//! duration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use sluice_crd::{Cluster, Topic};
use support::envtest::ControlPlane;
use support::{NS, metric, wait_for};

/// Lease duration given to both processes (seconds).
const LEASE_SECONDS: u64 = 4;

struct Operator {
    identity: &'static str,
    metrics_port: u16,
    child: Child,
}

impl Operator {
    fn spawn(cp: &ControlPlane, identity: &'static str) -> Self {
        let metrics_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(cp.dir.path().join(format!("{identity}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
            .args(["run", "--identity", identity, "--namespace", NS, "--lease-namespace", NS])
            .args(["--lease-duration", &LEASE_SECONDS.to_string(), "--lease-grace", "1", "--recheck", "2"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { identity, metrics_port, child }
    }

    /// `name` from the process's /metrics, `None` while it is not serving.
    fn metric(&self, name: &str) -> Option<f64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains("sluice_operator_leader").then(|| metric(&body, name))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt("sluice-operator").await.ok()??.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_operator_reconciles_and_a_standby_takes_over_after_kill_9() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let client = cp.client().await;
    let mut ops = vec![Operator::spawn(&cp, "op-a"), Operator::spawn(&cp, "op-b")];
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    // The Lease is written before the new holder sets its gauge: wait for both.
    let first = wait_for("a leader", Duration::from_secs(30), || async {
        let h = holder(&leases).await?;
        let flags: Option<Vec<f64>> = ops.iter().map(|o| o.metric("sluice_operator_leader")).collect();
        flags.is_some_and(|f| f.iter().sum::<f64>() == 1.0).then_some(h)
    })
    .await;
    println!("leader: {first}");

    // Exactly one leader at every sample, and it is the Lease holder.
    for _ in 0..10 {
        let flags: Vec<f64> = ops.iter().map(|o| o.metric("sluice_operator_leader").unwrap()).collect();
        assert_eq!(flags.iter().sum::<f64>(), 1.0, "{flags:?}");
        let leader = ops.iter().position(|o| o.metric("sluice_operator_leader") == Some(1.0)).unwrap();
        assert_eq!(ops[leader].identity, first);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Only the leader reconciles.
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let c: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "kf", "namespace": NS }, "spec": { "brokers": 1 },
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &c).await.unwrap();
    wait_for("Cluster status", Duration::from_secs(20), || async { clusters.get("kf").await.unwrap().status }).await;
    let (leader_idx, standby_idx) = if ops[0].identity == first { (0, 1) } else { (1, 0) };
    assert!(ops[leader_idx].metric("sluice_operator_reconciles_total").unwrap() > 0.0);
    assert_eq!(ops[standby_idx].metric("sluice_operator_reconciles_total"), Some(0.0));

    // kill -9 the leader: the standby takes over within one lease duration.
    ops[leader_idx].child.kill().unwrap();
    let killed = Instant::now();
    let standby = &ops[standby_idx];
    wait_for("the standby to lead", Duration::from_secs(LEASE_SECONDS * 3), || async {
        (standby.metric("sluice_operator_leader") == Some(1.0)).then_some(())
    })
    .await;
    let took = killed.elapsed();
    println!(
        "failover: {} took over {:.2} s after kill -9 of {first} (lease duration {LEASE_SECONDS} s)",
        standby.identity,
        took.as_secs_f64()
    );
    // The Lease expires at most one duration after the kill; kube-lease-manager then waits
    // up to 1 s (random, against collisions) before taking it, and we poll /metrics.
    assert!(took <= Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(2), "failover took {took:?}");
    assert_eq!(holder(&leases).await.as_deref(), Some(standby.identity));

    // The new leader reconciles.
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let t: Topic = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
        "metadata": { "name": "after-failover", "namespace": NS }, "spec": { "cluster": "kf" },
    }))
    .unwrap();
    topics.create(&PostParams::default(), &t).await.unwrap();
    wait_for("Topic status from the new leader", Duration::from_secs(20), || async {
        topics.get("after-failover").await.unwrap().status
    })
    .await;
    assert!(standby.metric("sluice_operator_reconciles_total").unwrap() > 0.0);
    ops.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_reconciling_at_once() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let client = cp.client().await;
    let operator = support::InProcessOperator::start(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    wait_for("in-process leader", Duration::from_secs(20), || async {
        (operator.counter("sluice_operator_leader") == 1.0).then_some(())
    })
    .await;

    // Another process takes the Lease (as after a network partition healed on its side).
    // It keeps renewing, as a live holder does.
    let thief = {
        let leases = leases.clone();
        tokio::spawn(async move {
            loop {
                let now =
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
                let stolen = Lease {
                    metadata: kube::api::ObjectMeta { name: Some("sluice-operator".into()), ..Default::default() },
                    spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                        holder_identity: Some("thief".into()),
                        lease_duration_seconds: Some(60),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                let pp = kube::api::PatchParams::apply("thief").force();
                leases.patch("sluice-operator", &pp, &kube::api::Patch::Apply(&stolen)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let t0 = Instant::now();
    wait_for("controllers stopped", Duration::from_secs(LEASE_SECONDS * 2), || async {
        (operator.counter("sluice_operator_leader") == 0.0).then_some(())
    })
    .await;
    println!("controllers stopped {:.2} s after the Lease was taken", t0.elapsed().as_secs_f64());

    // Nothing is reconciled any more.
    let reconciles = operator.counter("sluice_operator_reconciles_total");
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let c: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "ignored", "namespace": NS }, "spec": { "brokers": 1 },
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &c).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(clusters.get("ignored").await.unwrap().status.is_none(), "a non-leader wrote status");
    assert_eq!(operator.counter("sluice_operator_reconciles_total"), reconciles);
    assert_eq!(holder(&leases).await.as_deref(), Some("thief"));
    thief.abort();
    operator.stop().await;
}
