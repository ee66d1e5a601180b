//! What a Topic's status should be, given what the operator observed: a pure function,
//! so every branch (invalid spec, missing cluster, duplicate name, shrink, too few
//! brokers) is tested without an API server.

use std::collections::BTreeSet;

use sluice_controller::{BrokerInfo, PlacementError};
use sluice_crd::conditions::{DEGRADED, OFFLINE, PROGRESSING, READY, UNDER_REPLICATED};
use sluice_crd::{ClusterSpec, PartitionStatus, TopicSpec};

use super::validate;
use crate::conditions::Decided;
use crate::mapping;

/// What the reconciler observed about one Topic.
#[derive(Debug)]
pub struct Observed<'a> {
    pub metadata_name: &'a str,
    pub spec: &'a TopicSpec,
    /// Current `status.partitions`.
    pub partitions: &'a [PartitionStatus],
    /// The Cluster named by `spec.cluster`, if it exists.
    pub cluster: Option<&'a ClusterSpec>,
    /// An older Topic of the same cluster using the same topic name.
    pub older_duplicate: Option<&'a str>,
    /// Live brokers of the cluster.
    pub live: &'a [BrokerInfo],
}

/// The status to write (before timestamps) and an Event to publish if something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub topic_name: String,
    pub partitions: Vec<PartitionStatus>,
    pub conditions: Vec<Decided>,
    /// `(reason, message)` of a Warning Event.
    pub warning: Option<(String, String)>,
}

pub fn decide(o: &Observed<'_>) -> Decision {
    let topic_name = validate::topic_name(o.spec, o.metadata_name).to_string();
    let partitions = o.partitions.to_vec();
    let not_ready =
        |reason: &str, message: String, progressing: bool, warn: bool, partitions: Vec<PartitionStatus>| Decision {
            topic_name: topic_name.clone(),
            partitions,
            conditions: vec![
                Decided::new(READY, false, reason, message.clone()),
                Decided::new(
                    PROGRESSING,
                    progressing,
                    reason,
                    if progressing { message.clone() } else { String::new() },
                ),
                Decided::new(DEGRADED, false, "AsExpected", ""),
            ],
            warning: warn.then(|| (reason.to_string(), message)),
        };

    let mut problems = validate::problems(o.spec, o.metadata_name);
    if let Some(c) = o.cluster
        && o.spec.replication_factor > c.brokers
    {
        problems.push(format!(
            "spec.replicationFactor ({}) is larger than the {} brokers of Cluster {:?}",
            o.spec.replication_factor, c.brokers, o.spec.cluster
        ));
    }
    if !problems.is_empty() {
        return not_ready("InvalidSpec", problems.join("; "), false, true, partitions);
    }
    if o.cluster.is_none() {
        let msg = format!("waiting for Cluster {:?} in this namespace", o.spec.cluster);
        return not_ready("ClusterNotFound", msg, true, false, partitions);
    }
    if let Some(older) = o.older_duplicate {
        let msg = format!("topic name {topic_name:?} is already used by the older Topic {older:?}; rename this one");
        return not_ready("DuplicateTopicName", msg, false, true, partitions);
    }

    // The controller decides; this function only turns its answers into conditions.
    let live: BTreeSet<i32> = o.live.iter().map(|b| b.id).collect();
    let mut assigned = mapping::assignments(&partitions);
    sluice_controller::elect_leaders(&mut assigned, &live);
    let desired = usize::try_from(o.spec.partitions).unwrap_or(0);
    if desired < assigned.len() {
        let msg = format!(
            "spec.partitions is {desired} but the topic has {} partitions; partitions cannot be removed (set it back to {})",
            assigned.len(),
            assigned.len()
        );
        return not_ready("PartitionShrinkRefused", msg, false, true, mapping::partition_statuses(assigned));
    }
    let rf = usize::try_from(o.spec.replication_factor).unwrap_or(0);
    let partitions = match sluice_controller::place(&assigned, desired, rf, o.live) {
        Ok(p) => mapping::partition_statuses(p),
        Err(e @ PlacementError::NotEnoughBrokers { .. }) => {
            let msg = format!("{e}; waiting for brokers");
            return not_ready("InsufficientBrokers", msg, true, false, mapping::partition_statuses(assigned));
        }
    };

    let leaderless: Vec<i32> = partitions.iter().filter(|p| p.leader.is_none()).map(|p| p.partition).collect();
    let down: BTreeSet<i32> =
        partitions.iter().flat_map(|p| p.replicas.iter().copied()).filter(|r| !live.contains(r)).collect();
    let degraded = if down.is_empty() {
        Decided::new(DEGRADED, false, "AsExpected", "")
    } else {
        Decided::new(DEGRADED, true, "BrokersNotLive", format!("replicas on brokers {down:?} are not live"))
    };
    let ready = if leaderless.is_empty() {
        Decided::new(
            READY,
            true,
            "Placed",
            format!("{} partitions placed, every one has a live leader", partitions.len()),
        )
    } else {
        Decided::new(READY, false, "NoLeader", format!("partitions {leaderless:?} have no live in-sync replica"))
    };
    let mut conditions = vec![ready, Decided::new(PROGRESSING, false, "AsExpected", ""), degraded];
    conditions.extend(replica_conditions(&partitions, &live));
    Decision { topic_name, partitions, conditions, warning: None }
}

/// `UnderReplicated` (partitions whose in-sync replicas, counting only live brokers, are
/// fewer than their replicas) and `Offline` (partitions with no leader), each naming the
/// partitions, as Kafka's under-replicated and offline partition counts do.
pub fn replica_conditions(partitions: &[PartitionStatus], live: &BTreeSet<i32>) -> [Decided; 2] {
    let under: Vec<i32> = partitions
        .iter()
        .filter(|p| p.isr.iter().filter(|r| live.contains(r)).count() < p.replicas.len())
        .map(|p| p.partition)
        .collect();
    let offline: Vec<i32> = partitions.iter().filter(|p| p.leader.is_none()).map(|p| p.partition).collect();
    [
        if under.is_empty() {
            Decided::new(UNDER_REPLICATED, false, "AllInSync", "")
        } else {
            Decided::new(
                UNDER_REPLICATED,
                true,
                "ReplicasOutOfSync",
                format!("partitions {under:?} have fewer live in-sync replicas than replicas"),
            )
        },
        if offline.is_empty() {
            Decided::new(OFFLINE, false, "AllLed", "")
        } else {
            Decided::new(
                OFFLINE,
                true,
                "NoLeader",
                format!("partitions {offline:?} have no leader: produce and fetch fail until a replica returns"),
            )
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::validate::tests::spec;
    use sluice_crd::ConditionStatus;

    fn cluster(brokers: i32) -> ClusterSpec {
        serde_json::from_value(serde_json::json!({ "brokers": brokers })).unwrap()
    }

    fn live(ids: &[i32]) -> Vec<BrokerInfo> {
        ids.iter().map(|&id| BrokerInfo::new(id)).collect()
    }

    fn ready(d: &Decision) -> (&str, bool) {
        let c = &d.conditions[0];
        (c.reason.as_str(), c.status == sluice_crd::ConditionStatus::True)
    }

    #[test]
    fn places_grows_and_refuses_shrink() {
        let c = cluster(3);
        let brokers = live(&[0, 1, 2]);
        let s6 = spec(6, 3);
        let o = Observed {
            metadata_name: "t",
            spec: &s6,
            partitions: &[],
            cluster: Some(&c),
            older_duplicate: None,
            live: &brokers,
        };
        let d6 = decide(&o);
        assert_eq!(ready(&d6), ("Placed", true));
        assert_eq!(d6.partitions.len(), 6);
        assert_eq!(d6.topic_name, "t");
        let s9 = spec(9, 3);
        let d9 = decide(&Observed { spec: &s9, partitions: &d6.partitions, ..o });
        assert_eq!(d9.partitions.len(), 9);
        assert_eq!(&d9.partitions[..6], &d6.partitions[..]);
        let s3 = spec(3, 3);
        let d3 = decide(&Observed { spec: &s3, partitions: &d9.partitions, ..o });
        assert_eq!(ready(&d3), ("PartitionShrinkRefused", false));
        assert_eq!(d3.partitions, d9.partitions);
        assert!(d3.warning.is_some());
    }

    #[test]
    fn waits_for_cluster_and_brokers_and_refuses_duplicates() {
        let c = cluster(3);
        let s = spec(2, 2);
        let none = live(&[]);
        let o = Observed {
            metadata_name: "t",
            spec: &s,
            partitions: &[],
            cluster: None,
            older_duplicate: None,
            live: &none,
        };
        let d = decide(&o);
        assert_eq!(ready(&d), ("ClusterNotFound", false));
        assert!(d.warning.is_none());
        let d = decide(&Observed { cluster: Some(&c), ..o });
        assert_eq!(ready(&d), ("InsufficientBrokers", false));
        assert_eq!(d.conditions[0].message, "0 live brokers, replication factor 2 needs 2; waiting for brokers");
        assert!(d.partitions.is_empty());
        let d = decide(&Observed { cluster: Some(&c), older_duplicate: Some("first"), ..o });
        assert_eq!(ready(&d), ("DuplicateTopicName", false));
        assert!(d.conditions[0].message.contains("\"first\""));
    }

    #[test]
    fn invalid_spec_and_replication_above_cluster_size() {
        let c = cluster(2);
        let s = spec(1, 3);
        let brokers = live(&[0, 1]);
        let o = Observed {
            metadata_name: "t",
            spec: &s,
            partitions: &[],
            cluster: Some(&c),
            older_duplicate: None,
            live: &brokers,
        };
        let d = decide(&o);
        assert_eq!(ready(&d), ("InvalidSpec", false));
        assert!(d.conditions[0].message.contains("larger than the 2 brokers"), "{:?}", d.conditions[0]);
        assert!(d.warning.is_some());
    }

    #[test]
    fn dead_leader_is_replaced_and_degraded_reported() {
        let c = cluster(3);
        let s = spec(3, 2);
        let all = live(&[0, 1, 2]);
        let o = Observed {
            metadata_name: "t",
            spec: &s,
            partitions: &[],
            cluster: Some(&c),
            older_duplicate: None,
            live: &all,
        };
        let placed = decide(&o).partitions;
        let two = live(&[1, 2]);
        let d = decide(&Observed { partitions: &placed, live: &two, ..o });
        assert_eq!(ready(&d), ("Placed", true));
        assert!(d.partitions.iter().all(|p| p.leader != Some(0)));
        assert_eq!(d.conditions[2].reason, "BrokersNotLive");
        let (under, offline) = (&d.conditions[3], &d.conditions[4]);
        let with_0: Vec<i32> = placed.iter().filter(|p| p.replicas.contains(&0)).map(|p| p.partition).collect();
        assert_eq!((under.type_, under.reason.as_str()), ("UnderReplicated", "ReplicasOutOfSync"));
        assert!(under.message.contains(&format!("{with_0:?}")), "{under:?} {with_0:?}");
        assert_eq!((offline.type_, offline.reason.as_str()), ("Offline", "AllLed"));
        // Every broker down: every partition is offline, and named.
        let d = decide(&Observed { partitions: &placed, live: &[], ..o });
        assert_eq!((d.conditions[4].reason.as_str(), d.conditions[4].status), ("NoLeader", ConditionStatus::True));
        assert!(d.conditions[4].message.contains("[0, 1, 2]"), "{:?}", d.conditions[4]);
        let all_live = decide(&Observed { partitions: &placed, ..o });
        assert_eq!(all_live.conditions[3].reason, "AllInSync");
    }
}
