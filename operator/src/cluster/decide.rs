//! What a Cluster's StatefulSet size and status should be, given what the operator
//! observed: pure, so validation, scale-down protection and conditions are unit-tested.
//! Which brokers a scale-down may remove is the controller's decision
//! ([`sluice_controller::scale_down`]); this module turns it into conditions.

use std::collections::BTreeSet;

use sluice_controller::HostedReplicas;
use sluice_crd::conditions::{DEGRADED, PROGRESSING, READY};
use sluice_crd::contract;
use sluice_crd::{BrokerStatus, Cluster};

use super::resources::broker_address;
use crate::conditions::Decided;

/// What the reconciler observed about one Cluster.
#[derive(Debug)]
pub struct Observed<'a> {
    pub cluster: &'a Cluster,
    /// Replicas of the existing StatefulSet, if there is one.
    pub current_replicas: Option<i32>,
    /// Ready replicas the StatefulSet reports.
    pub ready_replicas: i32,
    /// Ids of brokers whose Lease is current.
    pub live: &'a BTreeSet<i32>,
    /// Broker id → topic name → replicas of that topic on the broker.
    pub hosted: &'a HostedReplicas,
}

/// The decision for one Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// StatefulSet replicas to apply; `None`: the spec is invalid, leave the children alone.
    pub replicas: Option<i32>,
    pub brokers: Vec<BrokerStatus>,
    pub live_brokers: i32,
    pub conditions: Vec<Decided>,
    /// `(reason, message)` of a Warning Event.
    pub warning: Option<(String, String)>,
}

/// Problems with a Cluster spec that its schema cannot express.
pub fn problems(c: &Cluster) -> Vec<String> {
    let s = &c.spec;
    let mut out = Vec::new();
    if s.grpc_port == s.metrics_port {
        out.push(format!("spec.grpcPort and spec.metricsPort are both {}; they must differ", s.grpc_port));
    }
    for (field, port) in [("spec.grpcPort", s.grpc_port), ("spec.metricsPort", s.metrics_port)] {
        if port == sluice_crd::contract::KAFKA_PORT {
            out.push(format!("{field} is {port}, the brokers' Kafka port; choose another"));
        }
    }
    if let Some(key) = &s.topology_key
        && !valid_label_key(key)
    {
        out.push(format!("spec.topologyKey {key:?} is not a valid label key (like topology.kubernetes.io/zone)"));
    }
    // Every key becomes a broker setting the brokers read, or the spec is refused:
    // nothing is rendered into the ConfigMap that no broker honours.
    if let Err(problems) = contract::cluster_config_env(&s.config) {
        out.extend(problems);
    }
    out
}

fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && name.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

pub fn decide(o: &Observed<'_>) -> Decision {
    let c = o.cluster;
    let desired = c.spec.brokers;
    let problems = problems(c);
    if !problems.is_empty() {
        let msg = problems.join("; ");
        let size = o.current_replicas.unwrap_or(0);
        return Decision {
            replicas: None,
            brokers: broker_entries(o, size),
            live_brokers: live_count(o, size),
            conditions: vec![
                Decided::new(READY, false, "InvalidSpec", msg.clone()),
                Decided::new(PROGRESSING, false, "InvalidSpec", ""),
                Decided::new(DEGRADED, false, "AsExpected", ""),
            ],
            warning: Some(("InvalidSpec".into(), msg)),
        };
    }

    // Scaling down never removes a broker that still hosts replicas.
    let current = o.current_replicas.unwrap_or(desired);
    let sluice_controller::ScaleDown { brokers: replicas, blocked } =
        sluice_controller::scale_down(desired, current, o.hosted);
    let brokers = broker_entries(o, replicas);
    let live = live_count(o, replicas);
    let not_live: Vec<i32> = (0..replicas).filter(|id| !o.live.contains(id)).collect();

    let mut warning = None;
    let ready = if !blocked.is_empty() {
        let topics: BTreeSet<&String> = blocked.values().flat_map(|t| t.keys()).collect();
        let msg = format!(
            "cannot scale down to {desired} brokers: brokers {:?} still host partitions of topics {topics:?}; move or delete them first",
            blocked.keys().collect::<Vec<_>>()
        );
        warning = Some(("ScaleDownBlocked".to_string(), msg.clone()));
        Decided::new(READY, false, "ScaleDownBlocked", msg)
    } else if not_live.is_empty() {
        Decided::new(READY, true, "AllBrokersLive", format!("{live} of {replicas} brokers live"))
    } else {
        Decided::new(
            READY,
            false,
            "BrokersNotLive",
            format!("{live} of {replicas} brokers live; not live (no current Lease): {not_live:?}"),
        )
    };
    let progressing = if o.current_replicas != Some(replicas) || o.ready_replicas < replicas {
        Decided::new(PROGRESSING, true, "RollingOut", format!("{} of {replicas} broker pods ready", o.ready_replicas))
    } else {
        Decided::new(PROGRESSING, false, "AsExpected", "")
    };
    let degraded = if live > 0 && !not_live.is_empty() {
        Decided::new(DEGRADED, true, "BrokersNotLive", format!("brokers {not_live:?} are not live"))
    } else {
        Decided::new(DEGRADED, false, "AsExpected", "")
    };
    Decision {
        replicas: Some(replicas),
        brokers,
        live_brokers: live,
        conditions: vec![ready, progressing, degraded],
        warning,
    }
}

fn live_count(o: &Observed<'_>, size: i32) -> i32 {
    i32::try_from(o.live.iter().filter(|&&id| id < size).count()).unwrap_or(i32::MAX)
}

fn broker_entries(o: &Observed<'_>, size: i32) -> Vec<BrokerStatus> {
    (0..size)
        .map(|id| BrokerStatus {
            id,
            address: broker_address(o.cluster, id),
            live: o.live.contains(&id),
            partitions: o.hosted_partitions(id),
        })
        .collect()
}

impl Observed<'_> {
    fn hosted_partitions(&self, id: i32) -> i32 {
        self.hosted.get(&id).map_or(0, |t| t.values().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::cluster;
    use serde_json::json;

    fn observe<'a>(
        c: &'a Cluster,
        current: Option<i32>,
        live: &'a BTreeSet<i32>,
        hosted: &'a HostedReplicas,
    ) -> Observed<'a> {
        Observed { cluster: c, current_replicas: current, ready_replicas: 0, live, hosted }
    }

    #[test]
    fn all_live_is_ready_some_live_is_degraded() {
        let c = cluster("c", json!({ "brokers": 3 }));
        let none = HostedReplicas::new();
        let all: BTreeSet<i32> = [0, 1, 2].into();
        let d = decide(&observe(&c, Some(3), &all, &none));
        assert_eq!(d.replicas, Some(3));
        assert_eq!((d.conditions[0].reason.as_str(), d.live_brokers), ("AllBrokersLive", 3));
        assert!(d.brokers.iter().all(|b| b.live));
        let two: BTreeSet<i32> = [0, 2].into();
        let d = decide(&observe(&c, Some(3), &two, &none));
        assert_eq!(d.conditions[0].reason, "BrokersNotLive");
        assert!(d.conditions[0].message.contains("[1]"));
        assert_eq!(d.conditions[2].reason, "BrokersNotLive");
        assert!(!d.brokers[1].live);
    }

    #[test]
    fn scale_down_keeps_brokers_that_host_partitions() {
        let c = cluster("c", json!({ "brokers": 2 }));
        let live: BTreeSet<i32> = [0, 1, 2, 3].into();
        let hosted: HostedReplicas = [(2, [("orders".to_string(), 2)].into())].into();
        let d = decide(&observe(&c, Some(4), &live, &hosted));
        assert_eq!(d.replicas, Some(3));
        assert_eq!(d.conditions[0].reason, "ScaleDownBlocked");
        assert!(d.conditions[0].message.contains("[2]") && d.conditions[0].message.contains("orders"));
        assert!(d.warning.is_some());
        assert_eq!(d.brokers[2].partitions, 2);
        let empty = HostedReplicas::new();
        assert_eq!(decide(&observe(&c, Some(4), &live, &empty)).replicas, Some(2));
    }

    #[test]
    fn invalid_spec_applies_nothing() {
        let c = cluster("c", json!({ "grpcPort": 9000, "metricsPort": 9000, "topologyKey": "bad key!" }));
        let d = decide(&observe(&c, None, &BTreeSet::new(), &HostedReplicas::new()));
        assert_eq!(d.replicas, None);
        assert_eq!(d.conditions[0].reason, "InvalidSpec");
        let msg = &d.conditions[0].message;
        assert!(msg.contains("both 9000") && msg.contains("topologyKey"), "{msg}");
        assert!(valid_label_key("topology.kubernetes.io/zone") && valid_label_key("rack"));
        assert!(!valid_label_key("a/b/c") && !valid_label_key("-x"));
    }

    #[test]
    fn config_keys_no_broker_reads_are_an_invalid_spec() {
        let c = cluster("c", json!({ "config": { "log.segment.bytes": "1", "retention.ms": "-1" } }));
        let d = decide(&observe(&c, Some(3), &BTreeSet::new(), &HostedReplicas::new()));
        assert_eq!((d.replicas, d.conditions[0].reason.as_str()), (None, "InvalidSpec"));
        let msg = &d.conditions[0].message;
        assert!(msg.contains("spec.config[\"log.segment.bytes\"] is not a broker setting"), "{msg}");
        assert_eq!(problems(&c).len(), 1, "retention.ms=-1 is a valid broker setting: {msg}");
        assert_eq!(d.warning.as_ref().map(|w| w.0.as_str()), Some("InvalidSpec"));
        let c = cluster("c", json!({ "config": { "cache.mb": "lots" } }));
        assert!(problems(&c)[0].contains("cache.mb=lots: expected a non-negative integer"), "{:?}", problems(&c));
        let c = cluster("c", json!({ "config": { "cache.mb": "512", "durability": "always" } }));
        assert!(problems(&c).is_empty());
    }
}
