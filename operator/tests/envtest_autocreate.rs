//! Kafka's `auto.create.topics.enable` on Kubernetes, end to end: a real `sluice-broker`
//! process in Kubernetes mode with the environment its pod gets from the Cluster's
//! ConfigMap, the in-process operator, and kcat (librdkafka, Debian's package) as the
//! Kafka client. With the Cluster opted in, producing to a topic that does not exist
//! makes the broker ask for it on its Lease, the operator creates the Topic resource
//! (labelled, with the Cluster's `num.partitions`, one Event), and kcat's retry lands the
//! records, which kcat then reads back. Without the opt-in the ConfigMap turns it off
//! and a client gets UNKNOWN_TOPIC_OR_PARTITION, with no Topic created.
//!
//! kcat comes from `tests/kafka_compat/install-kcat.sh` (run by `scripts/test.sh`); under
//! CI (`CI=true`) a missing one fails the test, elsewhere it prints `SKIPPED`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_crd::{Cluster, Topic};
use support::brokers::{CLUSTER, broker_binary, broker_kubeconfig, free_port, object, start_broker_env};
use support::envtest::{ControlPlane, is_ci};
use support::{InProcessOperator, NS, wait_for};

fn kcat() -> Option<&'static str> {
    if Command::new("kcat").arg("-V").output().is_ok_and(|o| o.status.success()) {
        return Some("kcat");
    }
    let why = "kcat is not installed (tests/kafka_compat/install-kcat.sh installs it)";
    assert!(!is_ci(std::env::var("CI").ok().as_deref()), "required under CI: {why}");
    println!("SKIPPED: {why}");
    None
}

/// The broker environment the operator's ConfigMap holds for Kafka auto-creation.
async fn configmap_env(client: &kube::Client) -> Vec<(String, String)> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = wait_for("the Cluster's ConfigMap", Duration::from_secs(30), || async {
        cms.get_opt(&format!("{CLUSTER}-config")).await.ok()?
    })
    .await;
    let data = cm.data.unwrap_or_default();
    ["SLUICE_AUTO_CREATE_TOPICS", "SLUICE_DEFAULT_PARTITIONS"]
        .iter()
        .filter_map(|k| Some((k.to_string(), data.get(*k)?.clone())))
        .collect()
}

fn kcat_produce(kcat: &str, bootstrap: &str, topic: &str, lines: &str) -> std::process::Output {
    let mut p = Command::new(kcat)
        .args(["-b", bootstrap, "-P", "-t", topic, "-p", "0", "-X", "message.timeout.ms=30000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    p.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_client_asking_for_a_new_topic_gets_one_when_the_cluster_opts_in() {
    let Some(kcat) = kcat() else { return };
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let bin = broker_binary();
    let client = cp.client().await;
    let _operator = InProcessOperator::start(client.clone());
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let spec = json!({ "brokers": 1, "config": { "auto.create.topics.enable": "true", "num.partitions": "2" } });
    clusters.create(&PostParams::default(), &object("Cluster", CLUSTER, spec)).await.unwrap();
    let env = configmap_env(&client).await;
    assert_eq!(
        env,
        vec![("SLUICE_AUTO_CREATE_TOPICS".into(), "true".into()), ("SLUICE_DEFAULT_PARTITIONS".into(), "2".into())]
    );
    let kubeconfig = broker_kubeconfig(&cp, &client).await;
    let kafka = format!("127.0.0.11:{}", free_port("127.0.0.11"));
    let mut env = env;
    env.push(("SLUICE_KAFKA_LISTEN".into(), kafka.clone()));
    let mut broker = start_broker_env(&bin, &cp, &kubeconfig, 0, &env);
    wait_for("the broker to be live", Duration::from_secs(60), || async {
        (clusters.get(CLUSTER).await.ok()?.status?.live_brokers == 1).then_some(())
    })
    .await;

    // kcat produces to a topic nobody created: the broker asks, the operator creates.
    let t0 = Instant::now();
    let out = kcat_produce(kcat, &kafka, "clicks.v1", "one\ntwo\nthree\n");
    assert!(out.status.success(), "kcat -P: {}", String::from_utf8_lossy(&out.stderr));
    println!("kcat produced to the unknown topic clicks.v1 in {:.1} s", t0.elapsed().as_secs_f64());
    let t = topics.get("clicks.v1").await.expect("the operator created Topic clicks.v1");
    assert_eq!(t.metadata.labels.as_ref().unwrap()["sluice.dev/auto-created"], "true");
    assert_eq!((t.spec.cluster.as_str(), t.spec.partitions, t.spec.name.as_deref()), (CLUSTER, 2, None));
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let notes = wait_for("the TopicAutoCreated Event", Duration::from_secs(10), || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("TopicAutoCreated"))
            .filter_map(|e| e.note)
            .collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("Kafka topic 'clicks.v1'") && notes[0].contains("broker(s) 0"), "{notes:?}");
    println!("Event TopicAutoCreated: {}", notes[0]);

    // kcat reads back what it wrote.
    let c = Command::new(kcat)
        .args(["-b", &kafka, "-C", "-t", "clicks.v1", "-p", "0", "-o", "beginning", "-c", "3", "-e", "-q"])
        .output()
        .unwrap();
    assert!(c.status.success(), "kcat -C: {}", String::from_utf8_lossy(&c.stderr));
    assert_eq!(String::from_utf8_lossy(&c.stdout), "one\ntwo\nthree\n");

    // A Kafka name that is not a resource name: a resource of its own, spec.name keeps it.
    let out = kcat_produce(kcat, &kafka, "Billing_Events", "x\n");
    assert!(out.status.success(), "kcat -P: {}", String::from_utf8_lossy(&out.stderr));
    let all = topics.list(&ListParams::default()).await.unwrap().items;
    let billing =
        all.iter().find(|t| t.spec.name.as_deref() == Some("Billing_Events")).expect("Topic for Billing_Events");
    assert!(billing.metadata.name.as_deref().unwrap().starts_with("auto-billing-events-"), "{:?}", billing.metadata);

    // Opted out (the default): the broker restarts with the ConfigMap's new env and a
    // client asking for an unknown topic gets UNKNOWN_TOPIC_OR_PARTITION; nothing is made.
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "config": null } })))
        .await
        .unwrap();
    let env = wait_for("the ConfigMap to turn auto-creation off", Duration::from_secs(30), || async {
        let env = configmap_env(&client).await;
        (env == vec![("SLUICE_AUTO_CREATE_TOPICS".to_string(), "false".to_string())]).then_some(env)
    })
    .await;
    broker.stop();
    let mut env = env;
    env.push(("SLUICE_KAFKA_LISTEN".into(), kafka.clone()));
    let _broker = start_broker_env(&bin, &cp, &kubeconfig, 0, &env);
    let md = wait_for("kcat metadata for an unknown topic", Duration::from_secs(60), || async {
        let out = Command::new(kcat).args(["-b", &kafka, "-L", "-t", "nobody-made-this", "-J"]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let t = v["topics"].as_array()?.first()?.clone();
        t.get("error").is_some().then_some(t)
    })
    .await;
    println!("opted out: kcat -L -t nobody-made-this -> {md}");
    assert!(md["error"].as_str().unwrap_or_default().contains("Unknown topic"), "{md}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(topics.get_opt("nobody-made-this").await.unwrap().is_none(), "no Topic without the opt-in");
}
