//! Leader election, as Kafka's controller does it when a broker goes (with KIP-966's
//! eligible leader replicas): a partition whose leader is not live gets, in order,
//!
//! 1. the first live in-sync replica (in replica order): a clean election;
//! 2. else the first live eligible leader replica (ELR): it was removed from the ISR
//!    while the ISR was below `min.insync.replicas`, so the high watermark has not
//!    moved since and it holds every committed record; the ISR becomes that replica;
//! 3. else the last known leader, when it is live again and the ISR and ELR are empty
//!    (it was the last member of the ISR);
//! 4. else, only if the topic allows unclean election, any live replica — which can
//!    lose acknowledged records (those the new leader never received);
//! 5. else nobody: the partition is offline (leader `None`) and remembers its last
//!    leader.
//!
//! The leader epoch is bumped exactly when the leader changes, the partition epoch on
//! every change.

use std::collections::BTreeSet;

use crate::model::PartitionAssignment;

/// What the topic allows an election to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionPolicy {
    /// Kafka's `unclean.leader.election.enable`: an out-of-sync replica may lead.
    pub allow_unclean: bool,
}

impl ElectionPolicy {
    /// Clean elections only (Kafka's default).
    pub const CLEAN: Self = Self { allow_unclean: false };
}

/// How a leader was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectedFrom {
    Isr,
    Elr,
    LastLeader,
    Unclean,
    /// Nobody eligible is live: offline.
    Nobody,
}

/// Elects a new leader for `p` if its leader is not live (see the module docs). Returns
/// how, when the leader changed.
pub fn elect_leader_with(
    p: &mut PartitionAssignment,
    live: &BTreeSet<i32>,
    policy: ElectionPolicy,
) -> Option<ElectedFrom> {
    if p.leader.is_some_and(|l| live.contains(&l)) {
        return None;
    }
    let first_live = |set: &[i32]| p.replicas.iter().copied().find(|r| set.contains(r) && live.contains(r));
    let (next, from) = if let Some(l) = first_live(&p.isr) {
        (Some(l), ElectedFrom::Isr)
    } else if let Some(l) = first_live(&p.elr) {
        (Some(l), ElectedFrom::Elr)
    } else if let Some(l) = p.last_leader.filter(|l| p.isr.is_empty() && p.elr.is_empty() && live.contains(l)) {
        (Some(l), ElectedFrom::LastLeader)
    } else if let Some(l) = policy.allow_unclean.then(|| first_live(&p.replicas)).flatten() {
        (Some(l), ElectedFrom::Unclean)
    } else {
        (None, ElectedFrom::Nobody)
    };
    if next == p.leader {
        return None;
    }
    if let Some(old) = p.leader {
        p.last_leader = Some(old);
    }
    p.leader = next;
    p.leader_epoch += 1;
    p.partition_epoch += 1;
    if let Some(l) = next {
        match from {
            ElectedFrom::Isr | ElectedFrom::Nobody => {}
            ElectedFrom::Elr | ElectedFrom::LastLeader => {
                p.isr = vec![l];
                p.elr.retain(|r| *r != l);
            }
            ElectedFrom::Unclean => {
                // Whatever the others had beyond this leader's log is gone: nobody else
                // is known to hold exactly the new leader's records.
                p.isr = vec![l];
                p.elr.clear();
            }
        }
        p.last_leader = Some(l);
    }
    Some(from)
}

/// Clean election ([`elect_leader_with`] without unclean election); returns whether the
/// leader changed.
pub fn elect_leader(p: &mut PartitionAssignment, live: &BTreeSet<i32>) -> bool {
    elect_leader_with(p, live, ElectionPolicy::CLEAN).is_some()
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
            ..PartitionAssignment::default()
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
                assert_eq!((p.leader_epoch, p.partition_epoch), (1, 1));
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
        assert_eq!((p.leader, p.leader_epoch, p.last_leader), (Some(2), 5, Some(2)));
        // Replica order decides among live in-sync replicas.
        let mut p = partition(&[2, 0, 1], &[0, 1, 2], Some(2), 0);
        elect_leader(&mut p, &[0, 1].into());
        assert_eq!((p.leader, p.leader_epoch), (Some(0), 1));
    }

    #[test]
    fn no_live_in_sync_replica_means_no_leader_until_one_returns() {
        let mut p = partition(&[0, 1], &[0], Some(0), 2);
        assert!(elect_leader(&mut p, &[1].into()), "the leader goes");
        assert_eq!((p.leader, p.leader_epoch, p.last_leader), (None, 3, Some(0)));
        assert!(!elect_leader(&mut p, &[1].into()), "still nobody eligible: no further bump");
        assert_eq!(p.leader_epoch, 3);
        assert!(elect_leader(&mut p, &[0, 1].into()), "the in-sync replica is back");
        assert_eq!((p.leader, p.leader_epoch), (Some(0), 4));
    }

    #[test]
    fn eligible_replicas_lead_after_the_isr_and_become_the_isr() {
        // ISR shrank below min ISR: 1 and 2 were removed into the ELR, then 0 died.
        let mut p = partition(&[0, 1, 2], &[], Some(0), 3);
        p.elr = vec![2, 1];
        let from = elect_leader_with(&mut p, &[1, 2].into(), ElectionPolicy::CLEAN);
        assert_eq!(from, Some(ElectedFrom::Elr));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone(), p.elr.clone()), (Some(1), 4, vec![1], vec![2]));
        assert_eq!(p.partition_epoch, 1);
    }

    #[test]
    fn the_last_leader_leads_again_when_nobody_else_is_eligible() {
        let mut p = partition(&[0, 1], &[], None, 5);
        p.last_leader = Some(0);
        assert_eq!(elect_leader_with(&mut p, &[1].into(), ElectionPolicy::CLEAN), None, "1 is out of sync");
        assert_eq!(elect_leader_with(&mut p, &[0, 1].into(), ElectionPolicy::CLEAN), Some(ElectedFrom::LastLeader));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(0), 6, vec![0]));
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        let mut p = partition(&[0, 1, 2], &[0], Some(0), 1);
        p.elr = vec![];
        assert_eq!(elect_leader_with(&mut p, &[2].into(), ElectionPolicy::CLEAN), Some(ElectedFrom::Nobody));
        assert_eq!((p.leader, p.last_leader), (None, Some(0)), "offline, the last leader recorded");
        let unclean = ElectionPolicy { allow_unclean: true };
        assert_eq!(elect_leader_with(&mut p, &[2].into(), unclean), Some(ElectedFrom::Unclean));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(2), 3, vec![2]));
    }
}
