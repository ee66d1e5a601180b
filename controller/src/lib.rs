//! The cluster's decisions, as pure functions of plain values: what Kafka's controller
//! decides, with no Kubernetes, gRPC or storage in sight. The operator runs these on
//! Topic and Cluster resources; the local multi-broker cluster (`sluice dev --brokers
//! N`, crate `sluice-controller-grpc`) runs [`cluster::ClusterState`].
//!
//! - [`model`]: the controller's view of a cluster: [`BrokerInfo`] (a live broker and
//!   its rack) and [`PartitionAssignment`] (replicas, leader, epochs, ISR, ELR).
//! - [`placement`]: new partitions on the live brokers, replicas and leaders spread
//!   evenly and across racks; existing partitions never move.
//! - [`election`]: a new leader from the ISR, then the eligible leader replicas
//!   (KIP-966), then unclean only where the topic allows it; epochs bumped.
//! - [`isr`]: a leader's ISR change (AlterPartition), validated and applied.
//! - [`cluster`]: the whole state (topics, broker sessions) and its operations, each
//!   returning what changed.
//! - [`scale`]: which brokers a scale-down may remove (those hosting no replica).
//!
//! Deliberately absent: any I/O, clock or async runtime; callers observe, these decide.

pub mod cluster;
pub mod election;
pub mod isr;
pub mod model;
pub mod placement;
pub mod scale;

pub use cluster::{ClusterError, ClusterState};
pub use election::elect_leaders;
pub use model::{BrokerInfo, PartitionAssignment};
pub use placement::{PlacementError, place};
pub use scale::{HostedReplicas, ScaleDown, hosted_replicas, scale_down};
