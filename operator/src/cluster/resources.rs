//! The Kubernetes objects a Cluster is rendered into, as pure functions of the Cluster
//! (applied server-side by the reconciler, all owned by the Cluster).
//!
//! Names, for Cluster `c`: StatefulSet `c` (pods `c-0`, `c-1`, … — the ordinal is the
//! broker id), headless Service `c-brokers`, client Service `c`, ConfigMap `c-config`,
//! PodDisruptionBudget `c`, ServiceAccount/Role/RoleBinding `c-broker`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::Affinity;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use sluice_crd::Cluster;
use sluice_crd::contract::{self, broker_lease_name, env};

/// Where brokers keep their data inside the pod.
pub const DATA_DIR: &str = "/var/lib/sluice";

pub fn statefulset_name(c: &Cluster) -> String {
    c.name_any()
}
pub fn headless_service_name(c: &Cluster) -> String {
    format!("{}-brokers", c.name_any())
}
pub fn client_service_name(c: &Cluster) -> String {
    c.name_any()
}
pub fn config_map_name(c: &Cluster) -> String {
    format!("{}-config", c.name_any())
}
pub fn pdb_name(c: &Cluster) -> String {
    c.name_any()
}
pub fn broker_account_name(c: &Cluster) -> String {
    format!("{}-broker", c.name_any())
}

/// The gRPC address of broker `id`, through the headless Service.
pub fn broker_address(c: &Cluster, id: i32) -> String {
    let ns = c.namespace().unwrap_or_else(|| "default".into());
    format!("{}-{id}.{}.{ns}.svc:{}", statefulset_name(c), headless_service_name(c), c.spec.grpc_port)
}

/// Labels of every object of the cluster; the first two also select the broker pods.
pub fn labels(c: &Cluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(c);
    l.insert("app.kubernetes.io/component".into(), "broker".into());
    l.insert("app.kubernetes.io/managed-by".into(), "sluice-operator".into());
    l
}

fn selector_labels(c: &Cluster) -> BTreeMap<String, String> {
    [("app.kubernetes.io/name".to_string(), "sluice".to_string()), ("app.kubernetes.io/instance".into(), c.name_any())]
        .into()
}

fn meta(c: &Cluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: c.namespace(),
        labels: Some(labels(c)),
        owner_references: owner(c).map(|o| vec![o]),
        ..Default::default()
    }
}

fn owner(c: &Cluster) -> Option<OwnerReference> {
    c.controller_owner_ref(&())
}

fn tcp_port(name: &str, port: i32) -> ServicePort {
    // `protocol` must be explicit: server-side apply before 1.20.6 fails without it.
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub fn headless_service(c: &Cluster) -> Service {
    Service {
        metadata: meta(c, headless_service_name(c)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Brokers find each other before they are ready (replication catches up).
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(c)),
            ports: Some(vec![tcp_port("grpc", c.spec.grpc_port), tcp_port("kafka", contract::KAFKA_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn client_service(c: &Cluster) -> Service {
    Service {
        metadata: meta(c, client_service_name(c)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(c)),
            ports: Some(vec![
                tcp_port("grpc", c.spec.grpc_port),
                tcp_port("kafka", contract::KAFKA_PORT),
                tcp_port("metrics", c.spec.metrics_port),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Broker settings as environment variables, loaded by the pods with `envFrom`: each
/// `spec.config` key as the variable the brokers read for it
/// ([`contract::cluster_config_env`]: `retention.ms` → `SLUICE_RETENTION_MS`), then the
/// settings the operator owns. `spec.topologyKey` is not passed on: it spreads the pods
/// (anti-affinity); a broker's rack is its `SLUICE_RACK`.
pub fn config_map(c: &Cluster) -> ConfigMap {
    // A Cluster whose config the contract refuses is an InvalidSpec (`decide::problems`)
    // and is never rendered; the empty map here is never applied.
    let mut data = contract::cluster_config_env(&c.spec.config).unwrap_or_default();
    data.insert(env::STANDALONE.into(), "false".into());
    // Kafka's auto-creation is off on Kubernetes unless the Cluster opts in (the broker's
    // own default is on, for standalone use).
    data.entry(env::AUTO_CREATE_TOPICS.into()).or_insert_with(|| "false".into());
    data.insert(env::CLUSTER.into(), c.name_any());
    data.insert(env::DATA_DIR.into(), DATA_DIR.into());
    data.insert(env::LISTEN.into(), format!("0.0.0.0:{}", c.spec.grpc_port));
    data.insert(env::METRICS_LISTEN.into(), format!("0.0.0.0:{}", c.spec.metrics_port));
    // Kafka clients reach each pod by its DNS name through the headless Service; the
    // broker advertises that host with this port.
    data.insert(env::KAFKA_LISTEN.into(), format!("0.0.0.0:{}", contract::KAFKA_PORT));
    ConfigMap { metadata: meta(c, config_map_name(c)), data: Some(data), ..Default::default() }
}

pub fn statefulset(c: &Cluster, replicas: i32) -> StatefulSet {
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let env = vec![
        field_env(env::POD_NAME, "metadata.name"),
        field_env(env::POD_NAMESPACE, "metadata.namespace"),
        EnvVar {
            name: env::ADVERTISED_ADDRESS.into(),
            value: Some(format!(
                "$({}).{}.$({}).svc:{}",
                env::POD_NAME,
                headless_service_name(c),
                env::POD_NAMESPACE,
                c.spec.grpc_port
            )),
            ..Default::default()
        },
    ];
    let container = Container {
        name: "broker".into(),
        image: Some(c.spec.image.clone()),
        env: Some(env),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: config_map_name(c), optional: None }),
            ..Default::default()
        }]),
        ports: Some(vec![
            ContainerPort { name: Some("grpc".into()), container_port: c.spec.grpc_port, ..Default::default() },
            ContainerPort { name: Some("kafka".into()), container_port: contract::KAFKA_PORT, ..Default::default() },
            ContainerPort { name: Some("metrics".into()), container_port: c.spec.metrics_port, ..Default::default() },
        ]),
        // gRPC probes need Kubernetes 1.24; the port being open is the readiness signal on older servers.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::String("grpc".into()), host: None }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String("metrics".into()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let spread = |key: &str, weight| WeightedPodAffinityTerm {
        weight,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector { match_labels: Some(selector_labels(c)), ..Default::default() }),
            topology_key: key.into(),
            ..Default::default()
        },
    };
    let mut anti = vec![spread("kubernetes.io/hostname", 100)];
    if let Some(key) = &c.spec.topology_key {
        anti.push(spread(key, 50));
    }
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: c.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(c.spec.storage.size.clone()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    StatefulSet {
        metadata: meta(c, statefulset_name(c)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(headless_service_name(c)),
            // Brokers do not depend on each other to start.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(selector_labels(c)), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(c)), ..Default::default() }),
                spec: Some(PodSpec {
                    service_account_name: Some(broker_account_name(c)),
                    // The broker bounds its shutdown (flush included) by its shutdown timeout;
                    // the pod gets that plus a margin before SIGKILL.
                    termination_grace_period_seconds: Some(contract::termination_grace_period_seconds(
                        contract::shutdown_timeout_ms(&c.spec.config),
                    )),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(anti),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        status: None,
    }
}

/// At most one broker down at a time, voluntarily. Returned as JSON because the
/// group/version differs by server (`policy/v1beta1` on 1.20, `policy/v1` from 1.21).
pub fn pdb(c: &Cluster, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": meta(c, pdb_name(c)),
        "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector_labels(c) },
        },
    })
}

pub fn service_account(c: &Cluster) -> ServiceAccount {
    ServiceAccount { metadata: meta(c, broker_account_name(c)), ..Default::default() }
}

/// Brokers read Clusters and Topics and manage their own Leases — nothing more.
pub fn role(c: &Cluster, brokers: i32) -> Role {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str], names: Option<Vec<String>>| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        resource_names: names,
        ..Default::default()
    };
    let leases: Vec<String> = (0..brokers).map(|id| broker_lease_name(&c.name_any(), id)).collect();
    Role {
        metadata: meta(c, broker_account_name(c)),
        rules: Some(vec![
            rule(&["sluice.dev"], &["clusters", "topics"], &["get", "list", "watch"], None),
            // `create` cannot be limited by name (the object does not exist yet).
            rule(&["coordination.k8s.io"], &["leases"], &["create"], None),
            rule(&["coordination.k8s.io"], &["leases"], &["get", "update", "patch"], Some(leases)),
        ]),
    }
}

pub fn role_binding(c: &Cluster) -> RoleBinding {
    RoleBinding {
        metadata: meta(c, broker_account_name(c)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: broker_account_name(c),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: broker_account_name(c),
            namespace: c.namespace(),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn cluster(name: &str, spec: serde_json::Value) -> Cluster {
        let mut c = Cluster::new(name, serde_json::from_value(spec).unwrap());
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("uid-1".into());
        c.metadata.generation = Some(1);
        c
    }

    #[test]
    fn objects_are_owned_named_and_ported() {
        let c = cluster("kf", json!({ "brokers": 3, "config": { "retention.ms": "1000" } }));
        let sts = statefulset(&c, 3);
        assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].controller, Some(true));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("kf-brokers"));
        for svc in [headless_service(&c), client_service(&c)] {
            for p in svc.spec.unwrap().ports.unwrap() {
                assert_eq!(p.protocol.as_deref(), Some("TCP"));
            }
        }
        let cm = config_map(&c).data.unwrap();
        assert_eq!(cm["SLUICE_RETENTION_MS"], "1000");
        assert_eq!(cm["SLUICE_LISTEN"], "0.0.0.0:9092");
        assert_eq!(cm["SLUICE_KAFKA_LISTEN"], "0.0.0.0:9093");
        assert_eq!(cm["SLUICE_METRICS_LISTEN"], "0.0.0.0:9644");
        assert_eq!((cm["SLUICE_STANDALONE"].as_str(), cm["SLUICE_CLUSTER"].as_str()), ("false", "kf"));
        assert_eq!(cm["SLUICE_DATA_DIR"], DATA_DIR);
        assert_eq!(broker_address(&c, 2), "kf-2.kf-brokers.ns.svc:9092");
        let rules = role(&c, 2).rules.unwrap();
        assert_eq!(rules[2].resource_names.as_ref().unwrap(), &["kf-broker-0", "kf-broker-1"]);
        assert_eq!(pdb(&c, "policy/v1beta1")["metadata"]["ownerReferences"][0]["kind"], "Cluster");
    }

    #[test]
    fn config_becomes_the_variables_brokers_read() {
        let c = cluster(
            "kf",
            json!({ "config": { "offsets.topic.num.partitions": "8", "cache.mb": " 512", "durability": "always" } }),
        );
        let cm = config_map(&c).data.unwrap();
        // The broker reads SLUICE_OFFSETS_TOPIC_PARTITIONS, not the key's spelling upper-cased.
        assert_eq!(cm["SLUICE_OFFSETS_TOPIC_PARTITIONS"], "8");
        assert!(!cm.contains_key("SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS"));
        assert_eq!((cm["SLUICE_CACHE_MB"].as_str(), cm["SLUICE_DURABILITY"].as_str()), ("512", "always"));
        let env = statefulset(&c, 1).spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["POD_NAME", "POD_NAMESPACE", "SLUICE_ADVERTISED_ADDRESS"]);
        assert_eq!(env[2].value.as_deref(), Some("$(POD_NAME).kf-brokers.$(POD_NAMESPACE).svc:9092"));
    }

    #[test]
    fn topology_key_spreads_pods_and_is_not_a_broker_setting() {
        let c = cluster("z", json!({ "topologyKey": "topology.kubernetes.io/zone" }));
        let cm = config_map(&c).data.unwrap();
        assert!(!cm.contains_key("SLUICE_TOPOLOGY_KEY"), "no broker reads it: {cm:?}");
        assert!(!cm.contains_key("SLUICE_RACK"), "a rack is per broker, not per cluster");
        let pod = statefulset(&c, 3).spec.unwrap().template.spec.unwrap();
        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        let keys: Vec<String> = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap()
            .into_iter()
            .map(|w| w.pod_affinity_term.topology_key)
            .collect();
        assert_eq!(keys, ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
    }

    #[test]
    fn the_pod_grace_period_covers_the_broker_shutdown_timeout() {
        let grace =
            |c: &Cluster| statefulset(c, 1).spec.unwrap().template.spec.unwrap().termination_grace_period_seconds;
        let default = cluster("kf", json!({}));
        assert_eq!(grace(&default), Some(15), "10 s shutdown timeout + 5 s margin, under Kubernetes' 30 s");
        let slow = cluster("kf", json!({ "config": { "shutdown.timeout.ms": "25000" } }));
        assert_eq!(grace(&slow), Some(30));
        assert_eq!(config_map(&slow).data.unwrap()[contract::env::SHUTDOWN_TIMEOUT_MS], "25000");
    }
}
