//! The broker–operator contract: every rule both sides must apply the same way, written
//! once and tested here. Nothing in this module touches kube or k8s-openapi types; the
//! adapters pass plain values (names, timestamps) in.
//!
//! - broker Leases: name, labels, annotation and the liveness rule;
//! - broker identity: the broker id from the pod name;
//! - topics: the Kafka-style name of a Topic resource, which of two Topics with one
//!   name wins, and the configuration a Topic spec hands the brokers;
//! - the Cluster's `spec.config` keys and the broker environment variables they become.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use sluice_core::{
    Durability,
    topic::{MIN_INSYNC_REPLICAS, TOPIC_CONFIG_KEYS, TopicConfig, UNCLEAN_LEADER_ELECTION},
};

/// Label on every broker Lease: the Cluster it belongs to.
pub const CLUSTER_LABEL: &str = "sluice.dev/cluster";
/// Label a broker puts on its Lease to say which rack/zone it runs in.
pub const RACK_LABEL: &str = "sluice.dev/rack";
/// Annotation a broker puts on its Lease: the address clients reach it at.
pub const ADDRESS_ANNOTATION: &str = "sluice.dev/address";
/// Annotation a broker puts on its Lease: Kafka topic names clients asked it for that do
/// not exist (Kafka's auto-creation), comma-separated. When the Cluster opts in
/// (`auto.create.topics.enable`) the operator creates a Topic resource for each.
pub const REQUESTED_TOPICS_ANNOTATION: &str = "sluice.dev/requested-topics";
/// Label on the Topic resources the operator created for [`REQUESTED_TOPICS_ANNOTATION`].
pub const AUTO_CREATED_LABEL: &str = "sluice.dev/auto-created";
/// At most this many names wait on one broker's Lease at a time.
pub const MAX_REQUESTED_TOPICS: usize = 32;
/// Finalizer the operator puts on Topics until every broker dropped their data.
pub const TOPIC_FINALIZER: &str = "sluice.dev/topic-data";
/// Finalizer the operator puts on ConsumerGroups: the group's committed offsets are
/// deleted on the brokers first when `spec.deleteOffsetsOnRemoval` says so.
pub const GROUP_FINALIZER: &str = "sluice.dev/group-offsets";

/// Name of the Lease broker `id` of `cluster` holds (Kafka's broker registration).
pub fn broker_lease_name(cluster: &str, id: i32) -> String {
    format!("{cluster}-broker-{id}")
}

/// The broker id of a Lease named by [`broker_lease_name`] for `cluster`.
pub fn broker_id_from_lease_name(cluster: &str, lease: &str) -> Option<i32> {
    lease.strip_prefix(cluster)?.strip_prefix("-broker-")?.parse().ok().filter(|id: &i32| *id >= 0)
}

/// The broker id from a StatefulSet pod name `<cluster>-<ordinal>`.
pub fn broker_id_from_pod_name(cluster: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok().filter(|id: &i32| *id >= 0)
}

/// When a broker Lease runs out: `renewTime` (else `acquireTime`) plus
/// `leaseDurationSeconds`; `None` when the Lease has no holder or lacks either field.
/// A Lease whose expiry is not after `now` means the broker is gone, as an expired
/// ephemeral znode did for Kafka. Both the operator (liveness, elections) and the
/// brokers (self-fencing, peers) decide with this function.
pub fn lease_expiry(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration_seconds: Option<i32>,
) -> Option<Timestamp> {
    holder.filter(|h| !h.is_empty())?;
    let duration = SignedDuration::from_secs(i64::from(duration_seconds?));
    renewed?.checked_add(duration).ok()
}

/// Whether a Lease with this holder, renewal time and duration is current at `now`.
pub fn lease_is_current(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration_seconds: Option<i32>,
    now: Timestamp,
) -> bool {
    lease_expiry(holder, renewed, duration_seconds).is_some_and(|expiry| expiry > now)
}

/// The Kafka-style name of a Topic resource: `spec.name`, else `metadata.name`.
pub fn topic_name<'a>(spec_name: Option<&'a str>, metadata_name: &'a str) -> &'a str {
    spec_name.unwrap_or(metadata_name)
}

/// The names a [`REQUESTED_TOPICS_ANNOTATION`] value lists (empty entries dropped).
pub fn requested_topics(annotation: &str) -> Vec<String> {
    annotation.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect()
}

/// The resource name of a Topic auto-created for Kafka topic `kafka_name`: the name
/// itself when it is a valid resource name (lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit), else `auto-<lowercased, other
/// characters as '-'>-<8 hex digits of a hash of the name>` (with `spec.name` keeping
/// the Kafka name), so two Kafka names never share a resource.
pub fn auto_topic_resource_name(kafka_name: &str) -> String {
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !kafka_name.is_empty()
        && kafka_name.len() <= 200
        && kafka_name.chars().all(valid)
        && edge(kafka_name.chars().next())
        && edge(kafka_name.chars().last())
    {
        return kafka_name.to_string();
    }
    // FNV-1a: stable across releases and platforms (the name must not change).
    let hash = kafka_name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let body: String = kafka_name
        .chars()
        .take(200)
        .map(|c| {
            if valid(c) {
                c
            } else if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let body = body.trim_matches(|c| c == '-' || c == '.');
    format!("auto-{body}-{hash:08x}")
}

/// Whether a Cluster's `spec.config` opts in to auto-creating topics that Kafka clients
/// ask for (`auto.create.topics.enable`, off by default on Kubernetes).
pub fn auto_create_topics(config: &BTreeMap<String, String>) -> bool {
    config.get(AUTO_CREATE_TOPICS).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Partitions of an auto-created topic: the Cluster's `num.partitions`, else 1 (Kafka's
/// default).
pub fn auto_create_partitions(config: &BTreeMap<String, String>) -> i32 {
    config.get(NUM_PARTITIONS).and_then(|v| v.trim().parse().ok()).filter(|n: &i32| *n >= 1).unwrap_or(1)
}

/// The Cluster `spec.config` key of Kafka's `auto.create.topics.enable`.
pub const AUTO_CREATE_TOPICS: &str = "auto.create.topics.enable";
/// The Cluster `spec.config` key of Kafka's `num.partitions`.
pub const NUM_PARTITIONS: &str = "num.partitions";

/// The sort key that decides which of two Topic resources with one Kafka-style name
/// owns it: the smaller key (older creation time, then resource name) wins. Both the
/// operator (which marks the loser) and the brokers (which ignore it) order by this.
pub fn topic_precedence(created: Option<Timestamp>, resource_name: &str) -> (Option<Timestamp>, &str) {
    (created, resource_name)
}

/// The configuration a Topic spec gives the brokers: the spec's `durability` and its
/// `config` map. Every key must be one the brokers honour ([`TOPIC_CONFIG_KEYS`]); the
/// result is checked with the brokers' own parser, so a spec the operator accepts is
/// one every broker applies. `Err` holds sentences for an `InvalidSpec` condition.
pub fn topic_config(
    durability: Durability,
    config: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let (honoured, problems) = split_topic_config(durability, config);
    if problems.is_empty() { Ok(honoured) } else { Err(problems) }
}

/// What a broker applies of a Topic spec: the part of [`topic_config`] that is valid
/// (the operator reports the rest; a broker never applies a key it does not honour).
pub fn honoured_topic_config(durability: Durability, config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    split_topic_config(durability, config).0
}

fn split_topic_config(
    durability: Durability,
    config: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for (k, v) in config {
        if k == "durability" {
            problems.push(format!("spec.config[{k:?}]: set spec.durability instead"));
        } else if k == MIN_INSYNC_REPLICAS {
            problems.push(format!("spec.config[{k:?}]: set spec.minInsyncReplicas instead"));
        } else if k == UNCLEAN_LEADER_ELECTION {
            problems.push(format!(
                "spec.config[{k:?}] is not honoured in Kubernetes mode yet (the operator does not elect leaders outside the ISR)"
            ));
        } else if !TOPIC_CONFIG_KEYS.contains(&k.as_str()) {
            problems.push(format!(
                "spec.config[{k:?}] is not a topic config the brokers honour (known: {})",
                TOPIC_CONFIG_KEYS
                    .iter()
                    .filter(|k| !matches!(**k, "durability" | MIN_INSYNC_REPLICAS | UNCLEAN_LEADER_ELECTION))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if let Err(e) = TopicConfig::default().with_overrides(&BTreeMap::from([(k.clone(), v.clone())])) {
            problems.push(format!("spec.config: {e}"));
        } else {
            out.insert(k.clone(), v.trim().to_string());
        }
    }
    out.insert("durability".into(), durability.as_str().into());
    (out, problems)
}

/// Environment variables of the broker process. The broker's command line reads each
/// of these (`sluice-broker --help` lists them); the operator sets them.
/// The port of the brokers' Kafka-protocol listener (`kafka` on pods and Services).
/// Kafka's conventional 9092 is the gRPC port (`spec.grpcPort`).
pub const KAFKA_PORT: i32 = 9093;

pub mod env {
    pub const STANDALONE: &str = "SLUICE_STANDALONE";
    pub const CLUSTER: &str = "SLUICE_CLUSTER";
    pub const NAMESPACE: &str = "SLUICE_NAMESPACE";
    pub const DATA_DIR: &str = "SLUICE_DATA_DIR";
    pub const LISTEN: &str = "SLUICE_LISTEN";
    pub const METRICS_LISTEN: &str = "SLUICE_METRICS_LISTEN";
    /// The Kafka-protocol listener (`--kafka-listen`).
    pub const KAFKA_LISTEN: &str = "SLUICE_KAFKA_LISTEN";
    pub const ADVERTISED_ADDRESS: &str = "SLUICE_ADVERTISED_ADDRESS";
    pub const BROKER_ID: &str = "SLUICE_BROKER_ID";
    pub const RACK: &str = "SLUICE_RACK";
    pub const LEASE_DURATION_SECONDS: &str = "SLUICE_LEASE_DURATION_SECONDS";
    /// Set from the downward API (`metadata.name`).
    pub const POD_NAME: &str = "POD_NAME";
    /// Set from the downward API (`metadata.namespace`).
    pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
    pub const DURABILITY: &str = "SLUICE_DURABILITY";
    pub const FLUSH_INTERVAL_MS: &str = "SLUICE_FLUSH_INTERVAL_MS";
    pub const RETENTION_MS: &str = "SLUICE_RETENTION_MS";
    pub const RETENTION_BYTES: &str = "SLUICE_RETENTION_BYTES";
    pub const MAX_MESSAGE_BYTES: &str = "SLUICE_MAX_MESSAGE_BYTES";
    pub const RETENTION_CHECK_INTERVAL_MS: &str = "SLUICE_RETENTION_CHECK_INTERVAL_MS";
    pub const CACHE_MB: &str = "SLUICE_CACHE_MB";
    pub const OFFSETS_TOPIC_PARTITIONS: &str = "SLUICE_OFFSETS_TOPIC_PARTITIONS";
    pub const GROUP_HEARTBEAT_INTERVAL_MS: &str = "SLUICE_GROUP_HEARTBEAT_INTERVAL_MS";
    pub const GROUP_MIN_SESSION_TIMEOUT_MS: &str = "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS";
    pub const LOG_FORMAT: &str = "SLUICE_LOG_FORMAT";
    /// Bound on a broker's shutdown after SIGTERM; the pod's grace period follows it
    /// ([`super::termination_grace_period_seconds`]).
    pub const SHUTDOWN_TIMEOUT_MS: &str = "SLUICE_SHUTDOWN_TIMEOUT_MS";
    pub const IDLE_CONNECTION_TIMEOUT_MS: &str = "SLUICE_IDLE_CONNECTION_TIMEOUT_MS";
    pub const MAX_CONCURRENT_STREAMS: &str = "SLUICE_MAX_CONCURRENT_STREAMS";
    pub const HTTP2_KEEPALIVE_INTERVAL_MS: &str = "SLUICE_HTTP2_KEEPALIVE_INTERVAL_MS";
    pub const HTTP2_KEEPALIVE_TIMEOUT_MS: &str = "SLUICE_HTTP2_KEEPALIVE_TIMEOUT_MS";
    pub const TCP_KEEPALIVE_MS: &str = "SLUICE_TCP_KEEPALIVE_MS";
    /// Kafka's `auto.create.topics.enable` (`--auto-create-topics`).
    pub const AUTO_CREATE_TOPICS: &str = "SLUICE_AUTO_CREATE_TOPICS";
    /// Kafka's `num.partitions` (`--default-partitions`).
    pub const DEFAULT_PARTITIONS: &str = "SLUICE_DEFAULT_PARTITIONS";
}

/// The keys a Cluster's `spec.config` may set, Kafka-style, and the broker environment
/// variable each becomes. A key not in this table is refused (an `InvalidSpec`
/// condition), never silently dropped.
pub const CLUSTER_CONFIG_KEYS: [(&str, &str); 13] = [
    ("durability", env::DURABILITY),
    ("flush.interval.ms", env::FLUSH_INTERVAL_MS),
    ("retention.ms", env::RETENTION_MS),
    ("retention.bytes", env::RETENTION_BYTES),
    ("max.message.bytes", env::MAX_MESSAGE_BYTES),
    ("retention.check.interval.ms", env::RETENTION_CHECK_INTERVAL_MS),
    ("cache.mb", env::CACHE_MB),
    ("offsets.topic.num.partitions", env::OFFSETS_TOPIC_PARTITIONS),
    ("group.heartbeat.interval.ms", env::GROUP_HEARTBEAT_INTERVAL_MS),
    ("group.min.session.timeout.ms", env::GROUP_MIN_SESSION_TIMEOUT_MS),
    ("shutdown.timeout.ms", env::SHUTDOWN_TIMEOUT_MS),
    (AUTO_CREATE_TOPICS, env::AUTO_CREATE_TOPICS),
    (NUM_PARTITIONS, env::DEFAULT_PARTITIONS),
];

/// A broker's default shutdown bound (`--shutdown-timeout-ms`): well under Kubernetes'
/// default grace period of 30 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 10_000;
/// What a broker pod gets beyond its shutdown timeout before SIGKILL: process exit and
/// the Lease release after the flush.
pub const SHUTDOWN_MARGIN_SECONDS: u64 = 5;

/// The broker shutdown timeout a Cluster's `spec.config` gives (`shutdown.timeout.ms`),
/// else the default. An unparsable value is refused by [`cluster_config_env`].
pub fn shutdown_timeout_ms(config: &BTreeMap<String, String>) -> u64 {
    config.get("shutdown.timeout.ms").and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_MS)
}

/// The broker pods' `terminationGracePeriodSeconds` for a shutdown timeout: the timeout
/// rounded up to whole seconds plus [`SHUTDOWN_MARGIN_SECONDS`], so that a broker that
/// keeps its bound is never SIGKILLed.
pub fn termination_grace_period_seconds(shutdown_timeout_ms: u64) -> i64 {
    i64::try_from(shutdown_timeout_ms.div_ceil(1000) + SHUTDOWN_MARGIN_SECONDS).unwrap_or(i64::MAX)
}

/// The broker environment of a Cluster's `spec.config`: each key mapped to its
/// variable, its value checked as the broker will parse it. `Err` holds sentences for
/// an `InvalidSpec` condition.
pub fn cluster_config_env(config: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for (k, v) in config {
        let Some((_, var)) = CLUSTER_CONFIG_KEYS.iter().find(|(key, _)| key == k) else {
            problems.push(format!(
                "spec.config[{k:?}] is not a broker setting (known: {})",
                CLUSTER_CONFIG_KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        let v = v.trim();
        let valid = match k.as_str() {
            "durability" => v.parse::<Durability>().map(|_| ()),
            "retention.ms" | "retention.bytes" | "max.message.bytes" => TopicConfig::default()
                .with_overrides(&BTreeMap::from([(k.clone(), v.to_string())]))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            AUTO_CREATE_TOPICS => match v {
                "true" | "false" => Ok(()),
                _ => Err(format!("{k}={v}: expected true or false")),
            },
            NUM_PARTITIONS => match v.parse::<u32>() {
                Ok(1..=10_000) => Ok(()),
                _ => Err(format!("{k}={v}: expected a partition count from 1 to 10000")),
            },
            _ => v.parse::<u64>().map(|_| ()).map_err(|_| format!("{k}={v}: expected a non-negative integer")),
        };
        match valid {
            Ok(()) => {
                out.insert(var.to_string(), v.to_string());
            }
            Err(e) => problems.push(format!("spec.config: {e}")),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lease_names_and_ids_round_trip() {
        assert_eq!(broker_lease_name("dev", 2), "dev-broker-2");
        assert_eq!(broker_id_from_lease_name("dev", "dev-broker-2"), Some(2));
        assert_eq!(broker_id_from_lease_name("dev", "other-broker-2"), None);
        assert_eq!(broker_id_from_lease_name("dev", "dev-broker--1"), None);
        assert_eq!(broker_id_from_pod_name("dev", "dev-0"), Some(0));
        assert_eq!(broker_id_from_pod_name("dev", "dev-x"), None);
        assert_eq!(broker_id_from_pod_name("dev", "devs-1"), None);
        assert_eq!(broker_id_from_pod_name("demo", "demo-12"), Some(12));
        assert_eq!(broker_id_from_pod_name("my-cluster", "my-cluster-2"), Some(2));
        assert_eq!(broker_id_from_pod_name("demo", "other-1"), None);
        assert_eq!(broker_id_from_pod_name("demo", "demo--1"), None);
        assert_eq!(broker_id_from_pod_name("demo", "demo1"), None);
    }

    #[test]
    fn a_lease_is_current_until_renew_time_plus_duration() {
        let renewed = Some(ts(100));
        assert!(lease_is_current(Some("dev-0"), renewed, Some(10), ts(109)));
        assert!(!lease_is_current(Some("dev-0"), renewed, Some(10), ts(110)), "expiry itself is not current");
        assert!(!lease_is_current(None, renewed, Some(10), ts(101)), "no holder: released");
        assert!(!lease_is_current(Some(""), renewed, Some(10), ts(101)));
        assert!(!lease_is_current(Some("dev-0"), None, Some(10), ts(101)));
        assert!(!lease_is_current(Some("dev-0"), renewed, None, ts(101)));
        assert_eq!(lease_expiry(Some("dev-0"), renewed, Some(10)), Some(ts(110)));
    }

    #[test]
    fn the_older_topic_wins_a_name() {
        let older = topic_precedence(Some(ts(1)), "b");
        let newer = topic_precedence(Some(ts(2)), "a");
        assert!(older < newer);
        assert!(topic_precedence(Some(ts(1)), "a") < topic_precedence(Some(ts(1)), "b"));
        assert_eq!(topic_name(Some("orders"), "orders-v1"), "orders");
        assert_eq!(topic_name(None, "orders-v1"), "orders-v1");
    }

    #[test]
    fn topic_config_is_what_brokers_honour() {
        let ok = topic_config(Durability::Always, &map(&[("retention.ms", " 1000")])).unwrap_or_default();
        assert_eq!(ok, map(&[("durability", "always"), ("retention.ms", "1000")]));
        let err = topic_config(Durability::Interval, &map(&[("segment.bytes", "1048576")])).unwrap_err();
        assert!(err[0].contains("[\"segment.bytes\"] is not a topic config the brokers honour"), "{err:?}");
        let err = topic_config(Durability::Interval, &map(&[("retention.ms", "1 week")])).unwrap_err();
        assert!(err[0].contains("retention.ms=1 week"), "{err:?}");
        let err = topic_config(Durability::Interval, &map(&[("durability", "always")])).unwrap_err();
        assert!(err[0].contains("spec.durability"), "{err:?}");
        let honoured =
            honoured_topic_config(Durability::Interval, &map(&[("retention.ms", "5"), ("unknown.key", "x")]));
        assert_eq!(honoured, map(&[("durability", "interval"), ("retention.ms", "5")]));
    }

    #[test]
    fn cluster_config_becomes_broker_env_or_is_refused() {
        let env = cluster_config_env(&map(&[("retention.ms", "-1"), ("durability", "always")])).unwrap_or_default();
        assert_eq!(env, map(&[("SLUICE_DURABILITY", "always"), ("SLUICE_RETENTION_MS", "-1")]));
        let err = cluster_config_env(&map(&[("log.segment.bytes", "1")])).unwrap_err();
        assert!(err[0].contains("not a broker setting"), "{err:?}");
        let err = cluster_config_env(&map(&[("flush.interval.ms", "soon")])).unwrap_err();
        assert!(err[0].contains("flush.interval.ms=soon"), "{err:?}");
        let err = cluster_config_env(&map(&[("durability", "maybe")])).unwrap_err();
        assert!(err[0].contains("'maybe'"), "{err:?}");
    }

    #[test]
    fn the_pod_grace_period_follows_the_shutdown_timeout() {
        assert_eq!(shutdown_timeout_ms(&map(&[])), DEFAULT_SHUTDOWN_TIMEOUT_MS);
        assert_eq!(shutdown_timeout_ms(&map(&[("shutdown.timeout.ms", "20000")])), 20_000);
        assert!(termination_grace_period_seconds(DEFAULT_SHUTDOWN_TIMEOUT_MS) < 30, "under Kubernetes' default");
        assert_eq!(termination_grace_period_seconds(10_000), 15);
        assert_eq!(termination_grace_period_seconds(10_001), 16);
        let env = cluster_config_env(&map(&[("shutdown.timeout.ms", "20000")])).unwrap_or_default();
        assert_eq!(env, map(&[(env::SHUTDOWN_TIMEOUT_MS, "20000")]));
    }

    #[test]
    fn auto_created_topics_get_a_resource_name_of_their_own() {
        assert_eq!(auto_topic_resource_name("orders.v1"), "orders.v1");
        assert_eq!(auto_topic_resource_name("events-2"), "events-2");
        let a = auto_topic_resource_name("Orders_V1");
        assert!(a.starts_with("auto-orders-v1-") && a.len() == "auto-orders-v1-".len() + 8, "{a}");
        assert_ne!(a, auto_topic_resource_name("orders_v1"), "case-distinct Kafka names stay distinct");
        assert_eq!(a, auto_topic_resource_name("Orders_V1"), "stable");
        let b = auto_topic_resource_name("_internal");
        assert!(b.starts_with("auto-internal-"), "{b}");
        assert_eq!(requested_topics(" a, b,,c "), vec!["a", "b", "c"]);
        assert!(requested_topics("").is_empty());
    }

    #[test]
    fn auto_creation_is_opted_in_by_the_cluster_config() {
        assert!(!auto_create_topics(&map(&[])));
        assert!(auto_create_topics(&map(&[("auto.create.topics.enable", "true")])));
        assert!(!auto_create_topics(&map(&[("auto.create.topics.enable", "false")])));
        assert_eq!(auto_create_partitions(&map(&[])), 1);
        assert_eq!(auto_create_partitions(&map(&[("num.partitions", "6")])), 6);
        let env = cluster_config_env(&map(&[("auto.create.topics.enable", "true"), ("num.partitions", "6")]))
            .unwrap_or_default();
        assert_eq!(env, map(&[(env::AUTO_CREATE_TOPICS, "true"), (env::DEFAULT_PARTITIONS, "6")]));
        let err = cluster_config_env(&map(&[("auto.create.topics.enable", "yes")])).unwrap_err();
        assert!(err[0].contains("expected true or false"), "{err:?}");
        let err = cluster_config_env(&map(&[("num.partitions", "0")])).unwrap_err();
        assert!(err[0].contains("from 1 to 10000"), "{err:?}");
    }
}
