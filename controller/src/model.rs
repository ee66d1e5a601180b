//! The controller's plain view of a cluster: the brokers it may place on and the
//! assignment of each partition, in Kafka's vocabulary.

use serde::{Deserialize, Serialize};

/// A live broker that may receive replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id.
    pub id: i32,
    /// Rack or zone the broker runs in, when known; replicas of a partition spread over racks.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// A broker with no known rack.
    pub fn new(id: i32) -> Self {
        Self { id, rack: None }
    }

    /// A broker in `rack`.
    pub fn in_rack(id: i32, rack: impl Into<String>) -> Self {
        Self { id, rack: Some(rack.into()) }
    }
}

/// Placement and leadership of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Partition index.
    pub partition: i32,
    /// Broker ids holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// Broker id of the leader; `None` while no eligible replica is live (offline).
    pub leader: Option<i32>,
    /// Bumped on every leader change; followers truncate to its boundary.
    pub leader_epoch: i32,
    /// Bumped on every change of leader, replicas, ISR or ELR: the version an ISR
    /// change must name (Kafka's partition epoch, optimistic concurrency).
    #[serde(default)]
    pub partition_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Eligible leader replicas (KIP-966): replicas removed from the ISR while it was
    /// below `min.insync.replicas`. The high watermark cannot have advanced since, so
    /// they hold every committed record and may lead when no ISR member is live.
    #[serde(default)]
    pub elr: Vec<i32>,
    /// The last leader before the partition went offline (KIP-966's last known
    /// leader): it may lead again when it returns and nobody else is eligible.
    #[serde(default)]
    pub last_leader: Option<i32>,
}

impl PartitionAssignment {
    /// A partition on `replicas` led by the first, everything in sync, at epoch 0.
    pub fn new(partition: i32, replicas: Vec<i32>) -> Self {
        Self { partition, leader: replicas.first().copied(), isr: replicas.clone(), replicas, ..Self::default() }
    }
}
