//! [`ClusterState`]: everything a cluster's controller decides on — the topics (their
//! configuration and partition assignments) and the brokers (their sessions) — with
//! the operations that change it. Every operation returns what changed ([`Change`]),
//! so that a caller can persist and publish exactly when something did. Time is a
//! caller-supplied millisecond count: nothing here reads a clock.

mod brokers;
#[cfg(test)]
mod tests;
mod topics;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{election::ElectionPolicy, isr::IsrError, model::PartitionAssignment, placement::PlacementError};

/// Kafka's `min.insync.replicas` topic key.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// Kafka's `unclean.leader.election.enable` topic key.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// A topic as the controller holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub replication_factor: u32,
    /// Configuration keys the topic overrides (Kafka-style keys).
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<PartitionAssignment>,
}

impl TopicState {
    /// `min.insync.replicas` (default 1).
    pub fn min_isr(&self) -> usize {
        self.config.get(MIN_INSYNC_REPLICAS).and_then(|v| v.parse().ok()).unwrap_or(1)
    }

    /// Whether `unclean.leader.election.enable` is on (default off).
    pub fn policy(&self) -> ElectionPolicy {
        ElectionPolicy { allow_unclean: self.config.get(UNCLEAN_LEADER_ELECTION).is_some_and(|v| v == "true") }
    }
}

/// A broker as the controller knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub id: i32,
    /// Its gRPC address, as clients and other brokers reach it.
    pub grpc_address: String,
    /// Its Kafka listener, as Kafka clients reach it (empty: none).
    pub kafka_address: String,
    pub rack: Option<String>,
    /// Identifies one run of the broker process: a new value is a restart.
    pub incarnation: u64,
    /// Fenced: its session expired (or it has not registered since the controller
    /// started); it leads nothing and is in no ISR until it heartbeats again.
    pub fenced: bool,
    /// When its last heartbeat arrived (caller's clock; not persisted).
    #[serde(skip)]
    pub last_heartbeat_ms: u64,
}

/// What a broker says about itself in a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub id: i32,
    pub grpc_address: String,
    pub kafka_address: String,
    pub rack: Option<String>,
    pub incarnation: u64,
}

/// One change made by an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    BrokerRegistered {
        id: i32,
    },
    /// A broker came back with a new incarnation (a restart): it was fenced first.
    BrokerRestarted {
        id: i32,
    },
    BrokerUnfenced {
        id: i32,
    },
    BrokerFenced {
        id: i32,
    },
    TopicCreated {
        topic: String,
    },
    TopicUpdated {
        topic: String,
    },
    TopicDeleted {
        topic: String,
    },
    /// A partition's leader, ISR or ELR changed (its partition epoch was bumped).
    PartitionChanged {
        topic: String,
        partition: i32,
        leader: Option<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("{0}")]
    Placement(#[from] PlacementError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Isr(#[from] IsrError),
}

/// The controller's whole state: persisted (but for session times) so that a restarted
/// controller keeps every epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub topics: BTreeMap<String, TopicState>,
    pub brokers: BTreeMap<i32, BrokerState>,
    /// Bumped by every operation that changed something.
    pub version: u64,
}

impl ClusterState {
    /// The unfenced brokers.
    pub fn live(&self) -> BTreeSet<i32> {
        self.brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect()
    }

    /// After loading a persisted state: every known broker gets a full session from
    /// `now_ms` to heartbeat before it is fenced.
    pub fn reset_sessions(&mut self, now_ms: u64) {
        for b in self.brokers.values_mut() {
            b.last_heartbeat_ms = now_ms;
        }
    }

    fn changed(&mut self, changes: Vec<Change>) -> Vec<Change> {
        if !changes.is_empty() {
            self.version += 1;
        }
        changes
    }
}

fn partition_changed(topic: &str, p: &PartitionAssignment) -> Change {
    Change::PartitionChanged {
        topic: topic.to_string(),
        partition: p.partition,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
    }
}
