//! The controller's state as protobuf, and its refusals as gRPC statuses.

use sluice_controller::{
    ClusterError, ClusterState, PartitionAssignment,
    cluster::{BrokerState, TopicState},
    isr::IsrError,
};
use tonic::{Code, Status};

use crate::pb;

pub fn partition(p: &PartitionAssignment) -> pb::PartitionMetadata {
    pb::PartitionMetadata {
        partition: p.partition,
        leader: p.leader.unwrap_or(-1),
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        elr: p.elr.clone(),
        last_leader: p.last_leader.unwrap_or(-1),
    }
}

pub fn topic(name: &str, t: &TopicState) -> pb::TopicMetadata {
    pb::TopicMetadata {
        name: name.to_string(),
        replication_factor: t.replication_factor,
        config: t.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        partitions: t.partitions.iter().map(partition).collect(),
    }
}

pub fn broker(b: &BrokerState) -> pb::BrokerMetadata {
    pb::BrokerMetadata {
        id: b.id,
        grpc_address: b.grpc_address.clone(),
        kafka_address: b.kafka_address.clone(),
        rack: b.rack.clone().unwrap_or_default(),
        fenced: b.fenced,
    }
}

pub fn cluster(s: &ClusterState, session_timeout_ms: u64) -> pb::ClusterMetadata {
    pb::ClusterMetadata {
        version: s.version,
        brokers: s.brokers.values().map(broker).collect(),
        topics: s.topics.iter().map(|(n, t)| topic(n, t)).collect(),
        session_timeout_ms,
    }
}

/// A refusal as the status a client can act on.
pub fn status(e: &ClusterError) -> Status {
    let code = match e {
        ClusterError::TopicExists(_) => Code::AlreadyExists,
        ClusterError::UnknownTopic(_) | ClusterError::UnknownPartition { .. } => Code::NotFound,
        ClusterError::Placement(_) => Code::FailedPrecondition,
        ClusterError::InvalidRequest(_) => Code::InvalidArgument,
        ClusterError::Isr(_) => Code::FailedPrecondition,
    };
    Status::new(code, e.to_string())
}

/// AlterPartition's typed refusal.
pub fn alter_error(e: &ClusterError) -> pb::AlterPartitionError {
    use pb::AlterPartitionError as E;
    match e {
        ClusterError::Isr(IsrError::NotLeader { .. }) => E::NotLeader,
        ClusterError::Isr(IsrError::FencedLeaderEpoch { .. }) => E::FencedLeaderEpoch,
        ClusterError::Isr(IsrError::InvalidUpdateVersion { .. }) => E::InvalidUpdateVersion,
        ClusterError::Isr(IsrError::IneligibleReplica { .. }) => E::IneligibleReplica,
        ClusterError::Isr(IsrError::InvalidIsr { .. }) => E::InvalidIsr,
        _ => E::UnknownTopicOrPartition,
    }
}
