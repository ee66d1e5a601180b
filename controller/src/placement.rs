//! Partition placement, as a pure function of the current placement, the desired
//! partition count and the live brokers.
//!
//! New partitions go to the live brokers holding the fewest replicas of the topic
//! (ties broken by a rotation on the partition number, so equal loads still spread),
//! one replica per rack first when racks are known; the chosen replica leading the
//! fewest partitions leads. Existing partitions never move: only their leader
//! changes ([`crate::election`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{BrokerInfo, PartitionAssignment};

/// Why new partitions could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer live brokers than the replication factor.
    #[error("{live} live brokers, replication factor {needed} needs {needed}")]
    NotEnoughBrokers { live: usize, needed: usize },
}

/// `current` extended to `partitions` entries (never shortened).
pub fn place(
    current: &[PartitionAssignment],
    partitions: usize,
    replication_factor: usize,
    live: &[BrokerInfo],
) -> Result<Vec<PartitionAssignment>, PlacementError> {
    let mut out = current.to_vec();
    if out.len() >= partitions {
        return Ok(out);
    }
    if live.len() < replication_factor || replication_factor == 0 {
        return Err(PlacementError::NotEnoughBrokers { live: live.len(), needed: replication_factor });
    }
    let mut replicas: BTreeMap<i32, usize> = live.iter().map(|b| (b.id, 0)).collect();
    let mut leaders: BTreeMap<i32, usize> = replicas.clone();
    for p in &out {
        for r in &p.replicas {
            if let Some(n) = replicas.get_mut(r) {
                *n += 1;
            }
        }
        if let Some(n) = p.leader.and_then(|l| leaders.get_mut(&l)) {
            *n += 1;
        }
    }
    let racks_known = live.iter().any(|b| b.rack.is_some());
    for partition in out.len()..partitions {
        let mut chosen: Vec<&BrokerInfo> = Vec::with_capacity(replication_factor);
        let mut used_racks = BTreeSet::new();
        for _ in 0..replication_factor {
            // Fewest replicas first; among equals, fewest leaders, so the leader chosen
            // below has somewhere to go.
            let pick = live
                .iter()
                .enumerate()
                .filter(|(_, b)| !chosen.iter().any(|c| c.id == b.id))
                .min_by_key(|(i, b)| {
                    let rack_used = racks_known && b.rack.as_ref().is_some_and(|r| used_racks.contains(r));
                    let rotation = (i + live.len() - partition % live.len()) % live.len();
                    (rack_used, replicas[&b.id], leaders[&b.id], rotation)
                })
                .map(|(_, b)| b);
            let Some(b) = pick else { break };
            if let Some(r) = &b.rack {
                used_racks.insert(r.clone());
            }
            chosen.push(b);
        }
        let ids: Vec<i32> = chosen.iter().map(|b| b.id).collect();
        for id in &ids {
            *replicas.entry(*id).or_default() += 1;
        }
        out.push(PartitionAssignment {
            partition: i32::try_from(partition).unwrap_or(i32::MAX),
            replicas: ids.clone(),
            leader: None,
            isr: ids,
            ..PartitionAssignment::default()
        });
    }
    // Leaders of the new partitions: the replica leading the fewest partitions; among
    // equals, the one in the fewest partitions still to decide (it has fewer chances later).
    let first_new = current.len();
    for i in first_new..out.len() {
        let later = &out[i + 1..];
        let pick = out[i]
            .replicas
            .iter()
            .enumerate()
            .min_by_key(|&(pos, id)| (leaders[id], later.iter().filter(|p| p.replicas.contains(id)).count(), pos))
            .map(|(pos, _)| pos);
        if let Some(pos) = pick {
            let p = &mut out[i];
            let leader = p.replicas.remove(pos);
            p.replicas.insert(0, leader);
            p.isr = p.replicas.clone();
            p.leader = Some(leader);
            *leaders.entry(leader).or_default() += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn brokers(ids: &[i32]) -> Vec<BrokerInfo> {
        ids.iter().map(|&id| BrokerInfo::new(id)).collect()
    }

    fn counts(ps: &[PartitionAssignment]) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
        let mut replicas = BTreeMap::new();
        let mut leaders = BTreeMap::new();
        for p in ps {
            for r in &p.replicas {
                *replicas.entry(*r).or_insert(0) += 1;
            }
            *leaders.entry(p.leader.unwrap()).or_insert(0) += 1;
        }
        (replicas, leaders)
    }

    #[test]
    fn spreads_replicas_and_leaders_evenly() {
        let ps = place(&[], 6, 2, &brokers(&[0, 1, 2])).unwrap();
        assert_eq!(ps.len(), 6);
        let (replicas, leaders) = counts(&ps);
        assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.partition, i as i32);
            assert_eq!(p.leader, Some(p.replicas[0]));
            assert_eq!(p.isr, p.replicas);
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), 2);
        }
    }

    #[test]
    fn growing_keeps_existing_partitions_and_stays_even() {
        let six = place(&[], 6, 3, &brokers(&[0, 1, 2])).unwrap();
        let nine = place(&six, 9, 3, &brokers(&[0, 1, 2])).unwrap();
        assert_eq!(&nine[..6], &six[..]);
        let (_, leaders) = counts(&nine);
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
        let two = place(&[], 6, 2, &brokers(&[0, 1, 2])).unwrap();
        let grown = place(&two, 9, 2, &brokers(&[0, 1, 2])).unwrap();
        let (replicas, leaders) = counts(&grown);
        assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![6, 6, 6]);
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
        // Never shrinks.
        assert_eq!(place(&nine, 3, 3, &brokers(&[0, 1, 2])).unwrap(), nine);
    }

    #[test]
    fn only_live_brokers_and_refuses_too_few() {
        let ps = place(&[], 4, 1, &brokers(&[0, 2])).unwrap();
        assert!(ps.iter().all(|p| p.replicas[0] != 1));
        let err = place(&[], 1, 3, &brokers(&[0, 2])).unwrap_err();
        assert_eq!(err, PlacementError::NotEnoughBrokers { live: 2, needed: 3 });
        assert_eq!(err.to_string(), "2 live brokers, replication factor 3 needs 3");
        assert!(place(&[], 1, 0, &brokers(&[0, 2])).is_err(), "replication factor 0 places nothing");
    }

    #[test]
    fn rack_aware_puts_replicas_in_distinct_racks() {
        let live: Vec<BrokerInfo> = [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")]
            .iter()
            .map(|&(id, r)| BrokerInfo::in_rack(id, r))
            .collect();
        let rack = |id: i32| live.iter().find(|b| b.id == id).unwrap().rack.clone().unwrap();
        let ps = place(&[], 12, 3, &live).unwrap();
        for p in &ps {
            let racks: BTreeSet<_> = p.replicas.iter().map(|&id| rack(id)).collect();
            assert_eq!(racks.len(), 3, "{p:?}");
        }
        let (replicas, _) = counts(&ps);
        assert!(replicas.values().all(|&n| n == 6), "{replicas:?}");
    }
}
