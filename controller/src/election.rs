//! Leader election from the live replicas, as Kafka's controller does it when a broker
//! goes: the first live in-sync replica leads, and the leader epoch is bumped exactly
//! when the leader changes, so followers know where to truncate.
//!
//! Only in-sync replicas are eligible (clean election): a replica outside the ISR may
//! lack acknowledged records. A partition with no live in-sync replica has no leader
//! until one comes back.

use std::collections::BTreeSet;

use crate::model::PartitionAssignment;

/// Elects a new leader for `p` if its leader is not live: the first live in-sync
/// replica (in replica order), else none. Returns whether the leader changed; the leader
/// epoch is bumped exactly then (once when the leader goes with nobody to follow it,
/// once more when a replica comes back and leads).
pub fn elect_leader(p: &mut PartitionAssignment, live: &BTreeSet<i32>) -> bool {
    if p.leader.is_some_and(|l| live.contains(&l)) {
        return false;
    }
    let next = p.replicas.iter().copied().find(|r| p.isr.contains(r) && live.contains(r));
    if next == p.leader {
        return false;
    }
    p.leader = next;
    p.leader_epoch += 1;
    true
}

/// [`elect_leader`] for every partition; returns the partitions whose leader changed.
pub fn elect_leaders(partitions: &mut [PartitionAssignment], live: &BTreeSet<i32>) -> Vec<i32> {
    partitions.iter_mut().filter_map(|p| elect_leader(p, live).then_some(p.partition)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::place;
    use crate::placement::tests::brokers;

    fn partition(replicas: &[i32], isr: &[i32], leader: Option<i32>, epoch: i32) -> PartitionAssignment {
        PartitionAssignment {
            partition: 0,
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn leader_moves_to_live_isr_member_with_epoch_bump() {
        let mut ps = place(&[], 3, 3, &brokers(&[0, 1, 2])).unwrap();
        let before = ps.clone();
        assert!(elect_leaders(&mut ps, &[0, 1, 2].into()).is_empty());
        assert_eq!(ps, before);
        let moved = elect_leaders(&mut ps, &[1, 2].into());
        for (p, b) in ps.iter().zip(&before) {
            if b.leader == Some(0) {
                assert_ne!(p.leader, Some(0));
                assert_eq!(p.leader_epoch, 1);
                assert!(moved.contains(&p.partition));
            } else {
                assert_eq!(p, b);
                assert!(!moved.contains(&p.partition));
            }
        }
        elect_leaders(&mut ps, &BTreeSet::new());
        assert!(ps.iter().all(|p| p.leader.is_none()));
        let epochs: Vec<_> = ps.iter().map(|p| p.leader_epoch).collect();
        assert!(elect_leaders(&mut ps, &BTreeSet::new()).is_empty());
        assert_eq!(ps.iter().map(|p| p.leader_epoch).collect::<Vec<_>>(), epochs);
    }

    #[test]
    fn a_live_leader_stays_whatever_else_is_down() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], Some(1), 4);
        assert!(!elect_leader(&mut p, &[1].into()));
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 4));
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_first_live_in_sync_replica() {
        // Broker 1 is live but out of sync: it may lack acknowledged records.
        let mut p = partition(&[0, 1, 2], &[0, 2], Some(0), 4);
        assert!(elect_leader(&mut p, &[1, 2].into()));
        assert_eq!((p.leader, p.leader_epoch), (Some(2), 5));
        // Replica order decides among live in-sync replicas.
        let mut p = partition(&[2, 0, 1], &[0, 1, 2], Some(2), 0);
        elect_leader(&mut p, &[0, 1].into());
        assert_eq!((p.leader, p.leader_epoch), (Some(0), 1));
    }

    #[test]
    fn no_live_in_sync_replica_means_no_leader_until_one_returns() {
        let mut p = partition(&[0, 1], &[0], Some(0), 2);
        assert!(elect_leader(&mut p, &[1].into()), "the leader goes");
        assert_eq!((p.leader, p.leader_epoch), (None, 3));
        assert!(!elect_leader(&mut p, &[1].into()), "still nobody eligible: no further bump");
        assert_eq!(p.leader_epoch, 3);
        assert!(elect_leader(&mut p, &[0, 1].into()), "the in-sync replica is back");
        assert_eq!((p.leader, p.leader_epoch), (Some(0), 4));
    }
}
