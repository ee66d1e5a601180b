//! Conversions between the CRD types and the plain types of `sluice-controller`, in one
//! place: the controller decides on [`PartitionAssignment`]s and [`BrokerInfo`]s, the
//! Topic status stores [`PartitionStatus`]es.

use sluice_controller::{BrokerInfo, PartitionAssignment};
use sluice_crd::PartitionStatus;

use crate::liveness::LiveBroker;

/// The controller's view of one partition of a Topic status.
pub fn assignment(p: &PartitionStatus) -> PartitionAssignment {
    PartitionAssignment {
        partition: p.partition,
        replicas: p.replicas.clone(),
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        isr: p.isr.clone(),
        ..PartitionAssignment::default()
    }
}

/// The controller's view of a Topic's `status.partitions`.
pub fn assignments(ps: &[PartitionStatus]) -> Vec<PartitionAssignment> {
    ps.iter().map(assignment).collect()
}

/// A controller decision as a Topic status entry.
pub fn partition_status(a: PartitionAssignment) -> PartitionStatus {
    PartitionStatus {
        partition: a.partition,
        replicas: a.replicas,
        leader: a.leader,
        leader_epoch: a.leader_epoch,
        isr: a.isr,
    }
}

/// Controller decisions as a Topic's `status.partitions`.
pub fn partition_statuses(ps: Vec<PartitionAssignment>) -> Vec<PartitionStatus> {
    ps.into_iter().map(partition_status).collect()
}

/// A broker with a current Lease, as placement sees it.
pub fn broker_info(b: LiveBroker) -> BrokerInfo {
    BrokerInfo { id: b.id, rack: b.rack }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_round_trip_unchanged() {
        let p = PartitionStatus {
            partition: 3,
            replicas: vec![2, 0, 1],
            leader: Some(2),
            leader_epoch: 7,
            isr: vec![2, 1],
        };
        assert_eq!(partition_status(assignment(&p)), p);
        let leaderless = PartitionStatus { leader: None, isr: vec![], ..p };
        assert_eq!(partition_statuses(assignments(std::slice::from_ref(&leaderless))), vec![leaderless]);
    }

    #[test]
    fn live_brokers_keep_id_and_rack() {
        let expires = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
        let b = LiveBroker { id: 4, rack: Some("zone-a".into()), expires };
        assert_eq!(broker_info(b), BrokerInfo::in_rack(4, "zone-a"));
    }
}
