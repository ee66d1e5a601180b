//! The controller's plain view of a cluster: the brokers it may place on and the
//! assignment of each partition, in Kafka's vocabulary.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// Partition index.
    pub partition: i32,
    /// Broker ids holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// Broker id of the leader; `None` while no in-sync replica is live.
    pub leader: Option<i32>,
    /// Bumped on every leader change; followers truncate to its boundary.
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}
