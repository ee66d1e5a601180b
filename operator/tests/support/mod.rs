//! Helpers shared by the tests against a real control plane.
#![allow(dead_code)] // each test binary uses a different subset
// Test helpers report failures by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod brokers;
pub mod envtest;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams};
use sluice_crd::contract::{CLUSTER_LABEL, RACK_LABEL, REQUESTED_TOPICS_ANNOTATION, broker_lease_name};
use sluice_operator::context::Settings;
use sluice_operator::leader::LeaderSettings;
use sluice_operator::metrics::Metrics;
use sluice_operator::runtime::RunSettings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "default";

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator running inside the test process; stopped (Lease released) on drop.
pub struct InProcessOperator {
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl InProcessOperator {
    pub fn start(client: kube::Client) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()))
            .try_init();
        let metrics = Arc::new(Metrics::default());
        let settings = RunSettings {
            namespace: Some(NS.into()),
            leader: LeaderSettings {
                namespace: NS.into(),
                identity: "in-process".into(),
                duration_seconds: 4,
                grace_seconds: 1,
            },
            reconcile: Settings {
                recheck: Duration::from_secs(2),
                group_poll: Duration::from_secs(1),
                ..Settings::default()
            },
            metrics_addr: None,
        };
        let (tx, rx) = oneshot::channel();
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = sluice_operator::runtime::run(client, settings, m, shutdown).await {
                panic!("operator failed: {e}");
            }
        });
        Self { metrics, stop: Some(tx), task }
    }

    pub fn counter(&self, name: &str) -> f64 {
        metric(&self.metrics.encode(), name)
    }

    /// Asserts that reconciles failed at most `max` times (transient API errors such as a
    /// conflict or an object deleted mid-reconcile are retried and allowed), printing them.
    pub fn assert_few_failures(&self, max: f64) {
        let text = self.metrics.encode();
        let failures: Vec<&str> =
            text.lines().filter(|l| l.starts_with("sluice_operator_reconcile_failures_total")).collect();
        println!("reconcile failures: {failures:?}");
        assert!(metric(&text, "sluice_operator_reconcile_failures_total") <= max, "{failures:?}");
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sum of every sample of metric `name` (all label sets) in a text exposition.
pub fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Plays the brokers' side of liveness: holds and renews Lease `<cluster>-broker-<id>`
/// for each id until it is removed from the set (then the Lease is left to expire).
pub struct BrokerLeases {
    ids: Arc<std::sync::Mutex<BTreeMap<i32, bool>>>,
    task: JoinHandle<()>,
}

pub const BROKER_LEASE_SECONDS: i32 = 3;

impl BrokerLeases {
    pub fn start(client: kube::Client, cluster: &str, ids: &[i32], racks: &[(i32, &str)]) -> Self {
        Self::start_requesting(client, cluster, ids, racks, None)
    }

    /// [`Self::start`], each Lease also asking for `requested` topics (the annotation a
    /// broker writes when Kafka clients ask it for unknown topics).
    pub fn start_requesting(
        client: kube::Client,
        cluster: &str,
        ids: &[i32],
        racks: &[(i32, &str)],
        requested: Option<&str>,
    ) -> Self {
        let requested = requested.map(|r| BTreeMap::from([(REQUESTED_TOPICS_ANNOTATION.to_string(), r.to_string())]));
        let set: Arc<std::sync::Mutex<BTreeMap<i32, bool>>> =
            Arc::new(std::sync::Mutex::new(ids.iter().map(|&i| (i, true)).collect()));
        let racks: BTreeMap<i32, String> = racks.iter().map(|(i, r)| (*i, r.to_string())).collect();
        let cluster = cluster.to_string();
        let shared = set.clone();
        let task = tokio::spawn(async move {
            let api: Api<Lease> = Api::namespaced(client, NS);
            loop {
                let live: Vec<i32> = shared.lock().unwrap().iter().filter(|(_, on)| **on).map(|(i, _)| *i).collect();
                for id in live {
                    let name = broker_lease_name(&cluster, id);
                    let mut labels = BTreeMap::from([(CLUSTER_LABEL.to_string(), cluster.clone())]);
                    if let Some(r) = racks.get(&id) {
                        labels.insert(RACK_LABEL.into(), r.clone());
                    }
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(labels),
                            annotations: requested.clone(),
                            ..Default::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(format!("broker-{id}")),
                            lease_duration_seconds: Some(BROKER_LEASE_SECONDS),
                            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                            ..Default::default()
                        }),
                    };
                    let pp = PatchParams::apply("test-broker").force();
                    if let Err(e) = api.patch(&name, &pp, &Patch::Apply(&lease)).await {
                        eprintln!("renewing {name}: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        });
        Self { ids: set, task }
    }

    /// Stops renewing broker `id`'s Lease, as a killed broker would.
    pub fn kill(&self, id: i32) {
        self.ids.lock().unwrap().insert(id, false);
    }
}

impl Drop for BrokerLeases {
    fn drop(&mut self) {
        self.task.abort();
    }
}
