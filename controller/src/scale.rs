//! Which brokers a scale-down may remove: brokers go from the highest id down, and a
//! broker that still hosts a replica stays (with every broker below it) until its
//! replicas are moved or their topics deleted. Removing it would lose those replicas.

use std::collections::BTreeMap;

use crate::model::PartitionAssignment;

/// Broker id → topic name → replicas of that topic on the broker.
pub type HostedReplicas = BTreeMap<i32, BTreeMap<String, i32>>;

/// The replicas each broker hosts, over `topics` (topic name, its partitions).
pub fn hosted_replicas<'a>(topics: impl IntoIterator<Item = (&'a str, &'a [PartitionAssignment])>) -> HostedReplicas {
    let mut out = HostedReplicas::new();
    for (name, partitions) in topics {
        for p in partitions {
            for r in &p.replicas {
                *out.entry(*r).or_default().entry(name.to_string()).or_default() += 1;
            }
        }
    }
    out
}

/// How far a cluster of `current` brokers can go towards `desired`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleDown<'a> {
    /// Brokers to run: `desired`, raised to keep every broker that still hosts replicas.
    pub brokers: i32,
    /// Brokers at or above `desired` that still host replicas, with what they host.
    pub blocked: BTreeMap<i32, &'a BTreeMap<String, i32>>,
}

/// The broker count to apply when `current` brokers run and `desired` are wanted
/// (brokers are ids `0..count`): `desired`, unless a broker in `desired..current` still
/// hosts replicas.
pub fn scale_down(desired: i32, current: i32, hosted: &HostedReplicas) -> ScaleDown<'_> {
    let mut plan = ScaleDown { brokers: desired, blocked: BTreeMap::new() };
    for id in desired..current {
        if let Some(topics) = hosted.get(&id).filter(|t| !t.is_empty()) {
            plan.blocked.insert(id, topics);
            plan.brokers = plan.brokers.max(id + 1);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(partition: i32, replicas: &[i32]) -> PartitionAssignment {
        let replicas = replicas.to_vec();
        PartitionAssignment {
            partition,
            leader: replicas.first().copied(),
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            ..PartitionAssignment::default()
        }
    }

    #[test]
    fn hosted_replicas_count_per_broker_and_topic() {
        let orders = [partition(0, &[0, 1]), partition(1, &[1, 2])];
        let logs = [partition(0, &[1])];
        let hosted = hosted_replicas([("orders", &orders[..]), ("logs", &logs[..])]);
        let want: HostedReplicas = [
            (0, [("orders".to_string(), 1)].into()),
            (1, [("logs".to_string(), 1), ("orders".to_string(), 2)].into()),
            (2, [("orders".to_string(), 1)].into()),
        ]
        .into();
        assert_eq!(hosted, want);
    }

    #[test]
    fn only_brokers_without_replicas_are_removed() {
        let orders = [partition(0, &[0, 2])];
        let hosted = hosted_replicas([("orders", &orders[..])]);
        // 4 → 2: broker 3 is empty, broker 2 hosts orders-0, so 3 brokers stay.
        let plan = scale_down(2, 4, &hosted);
        assert_eq!(plan.brokers, 3);
        assert_eq!(plan.blocked.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(plan.blocked[&2]["orders"], 1);
        // Nothing hosted above the target: straight to it.
        assert_eq!(scale_down(1, 4, &HostedReplicas::new()), ScaleDown { brokers: 1, blocked: BTreeMap::new() });
        // An empty entry does not block.
        let empty: HostedReplicas = [(3, BTreeMap::new())].into();
        assert_eq!(scale_down(2, 4, &empty).brokers, 2);
    }

    #[test]
    fn growing_or_keeping_the_size_is_never_blocked() {
        let orders = [partition(0, &[0, 1, 2])];
        let hosted = hosted_replicas([("orders", &orders[..])]);
        assert_eq!(scale_down(5, 3, &hosted), ScaleDown { brokers: 5, blocked: BTreeMap::new() });
        assert_eq!(scale_down(3, 3, &hosted), ScaleDown { brokers: 3, blocked: BTreeMap::new() });
    }
}
