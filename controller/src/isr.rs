//! ISR changes asked by a partition's leader (Kafka's AlterPartition), validated and
//! applied as pure functions. A change must come from the current leader at the current
//! leader epoch and partition epoch (optimistic concurrency: a leader that missed a
//! change retries with what it learns), name a subset of the replicas that contains the
//! leader, and add only live (unfenced) brokers. Applying it maintains the eligible
//! leader replicas of KIP-966: while the ISR is below `min.insync.replicas` the high
//! watermark cannot advance, so replicas removed then keep every committed record and
//! stay eligible; once the ISR is back at `min.insync.replicas` the ELR empties.

use std::collections::BTreeSet;

use crate::model::PartitionAssignment;

/// A leader's request to change a partition's ISR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Why an ISR change was refused (Kafka's AlterPartition error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsrError {
    /// The asker is not the partition's current leader.
    #[error("broker {asker} is not the leader (the leader is {leader:?})")]
    NotLeader { asker: i32, leader: Option<i32> },
    /// The asker's leader epoch is not the current one.
    #[error("leader epoch {asked} is not the current leader epoch {current}")]
    FencedLeaderEpoch { asked: i32, current: i32 },
    /// The asker's partition epoch is not the current one: it missed a change.
    #[error("partition epoch {asked} is not the current partition epoch {current}")]
    InvalidUpdateVersion { asked: i32, current: i32 },
    /// The new ISR names a broker that is not a replica, or a fenced broker joins it.
    #[error("broker {broker} cannot join the ISR: {why}")]
    IneligibleReplica { broker: i32, why: &'static str },
    /// The new ISR is malformed (empty, without the leader, duplicated members).
    #[error("invalid ISR {isr:?}: {why}")]
    InvalidIsr { isr: Vec<i32>, why: &'static str },
}

/// Checks `change` against `p` as it stands; `live`: the unfenced brokers.
pub fn validate(p: &PartitionAssignment, change: &AlterIsr, live: &BTreeSet<i32>) -> Result<(), IsrError> {
    if change.leader_epoch != p.leader_epoch {
        return Err(IsrError::FencedLeaderEpoch { asked: change.leader_epoch, current: p.leader_epoch });
    }
    if p.leader != Some(change.leader_id) {
        return Err(IsrError::NotLeader { asker: change.leader_id, leader: p.leader });
    }
    if change.partition_epoch != p.partition_epoch {
        return Err(IsrError::InvalidUpdateVersion { asked: change.partition_epoch, current: p.partition_epoch });
    }
    let unique: BTreeSet<i32> = change.new_isr.iter().copied().collect();
    if unique.len() != change.new_isr.len() {
        return Err(IsrError::InvalidIsr { isr: change.new_isr.clone(), why: "a broker is named twice" });
    }
    if !unique.contains(&change.leader_id) {
        return Err(IsrError::InvalidIsr { isr: change.new_isr.clone(), why: "the leader must stay in its ISR" });
    }
    for b in &change.new_isr {
        if !p.replicas.contains(b) {
            return Err(IsrError::IneligibleReplica { broker: *b, why: "it is not a replica of the partition" });
        }
        if !p.isr.contains(b) && !live.contains(b) {
            return Err(IsrError::IneligibleReplica { broker: *b, why: "it is fenced (no current session)" });
        }
    }
    Ok(())
}

/// Sets `p`'s ISR to `new_isr` (already validated), keeping the ELR (see the module
/// docs) and bumping the partition epoch. Returns whether anything changed.
pub fn set_isr(p: &mut PartitionAssignment, new_isr: Vec<i32>, min_isr: usize) -> bool {
    // Replica order, so that equal sets compare equal.
    let mut ordered: Vec<i32> = p.replicas.iter().copied().filter(|r| new_isr.contains(r)).collect();
    ordered.extend(new_isr.iter().filter(|r| !p.replicas.contains(r)));
    if ordered == p.isr {
        return false;
    }
    let removed: Vec<i32> = p.isr.iter().copied().filter(|r| !ordered.contains(r)).collect();
    p.elr.retain(|r| !ordered.contains(r));
    if ordered.len() >= min_isr {
        p.elr.clear();
    } else {
        for r in removed {
            if !p.elr.contains(&r) {
                p.elr.push(r);
            }
        }
    }
    p.isr = ordered;
    p.partition_epoch += 1;
    true
}

/// [`validate`] then [`set_isr`].
pub fn alter(
    p: &mut PartitionAssignment,
    change: &AlterIsr,
    live: &BTreeSet<i32>,
    min_isr: usize,
) -> Result<bool, IsrError> {
    validate(p, change, live)?;
    Ok(set_isr(p, change.new_isr.clone(), min_isr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led(epoch: i32, partition_epoch: i32) -> PartitionAssignment {
        PartitionAssignment { leader_epoch: epoch, partition_epoch, ..PartitionAssignment::new(0, vec![0, 1, 2]) }
    }

    fn change(leader: i32, epoch: i32, pe: i32, isr: &[i32]) -> AlterIsr {
        AlterIsr { leader_id: leader, leader_epoch: epoch, partition_epoch: pe, new_isr: isr.to_vec() }
    }

    #[test]
    fn the_leader_shrinks_and_expands_at_the_current_epochs() {
        let live: BTreeSet<i32> = [0, 1, 2].into();
        let mut p = led(3, 7);
        assert_eq!(alter(&mut p, &change(0, 3, 7, &[0, 2]), &live, 2), Ok(true));
        assert_eq!((p.isr.clone(), p.partition_epoch, p.leader_epoch), (vec![0, 2], 8, 3));
        assert!(p.elr.is_empty(), "the ISR is still at min ISR");
        assert_eq!(alter(&mut p, &change(0, 3, 8, &[2, 1, 0]), &live, 2), Ok(true));
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![0, 1, 2], 9), "kept in replica order");
        assert_eq!(alter(&mut p, &change(0, 3, 9, &[0, 1, 2]), &live, 2), Ok(false), "no change, no bump");
        assert_eq!(p.partition_epoch, 9);
    }

    #[test]
    fn stale_or_foreign_requests_are_refused_with_their_reason() {
        let live: BTreeSet<i32> = [0, 1, 2].into();
        let p = led(3, 7);
        assert_eq!(
            validate(&p, &change(0, 2, 7, &[0]), &live),
            Err(IsrError::FencedLeaderEpoch { asked: 2, current: 3 })
        );
        assert_eq!(validate(&p, &change(1, 3, 7, &[1]), &live), Err(IsrError::NotLeader { asker: 1, leader: Some(0) }));
        assert_eq!(
            validate(&p, &change(0, 3, 6, &[0]), &live),
            Err(IsrError::InvalidUpdateVersion { asked: 6, current: 7 })
        );
        assert!(matches!(validate(&p, &change(0, 3, 7, &[1, 2]), &live), Err(IsrError::InvalidIsr { .. })));
        assert!(matches!(validate(&p, &change(0, 3, 7, &[0, 0]), &live), Err(IsrError::InvalidIsr { .. })));
        assert!(matches!(
            validate(&p, &change(0, 3, 7, &[0, 5]), &live),
            Err(IsrError::IneligibleReplica { broker: 5, .. })
        ));
        let mut shrunk = p.clone();
        shrunk.isr = vec![0];
        assert!(matches!(
            validate(&shrunk, &change(0, 3, 7, &[0, 1]), &[0].into()),
            Err(IsrError::IneligibleReplica { broker: 1, why: "it is fenced (no current session)" })
        ));
        assert_eq!(validate(&p, &change(0, 3, 7, &[0]), &[0].into()), Ok(()), "shrinking away fenced brokers is fine");
    }

    #[test]
    fn replicas_removed_below_min_isr_become_eligible_until_the_isr_recovers() {
        let mut p = led(0, 0);
        set_isr(&mut p, vec![0, 1], 2);
        assert!(p.elr.is_empty(), "2 left while the ISR stayed at min ISR: the HW may have moved past it");
        set_isr(&mut p, vec![0], 2);
        assert_eq!(p.elr, vec![1], "1 left below min ISR: it has everything committed");
        set_isr(&mut p, vec![0, 1], 2);
        assert!(p.elr.is_empty(), "back at min ISR");
        set_isr(&mut p, vec![0], 3);
        assert_eq!(p.elr, vec![1]);
        set_isr(&mut p, vec![0, 2], 3);
        assert_eq!(p.elr, vec![1], "2 rejoined, still below min ISR 3: 1 stays eligible");
    }
}
