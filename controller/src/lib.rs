//! The cluster's decisions, as pure functions of plain values: what Kafka's controller
//! decides, with no Kubernetes, gRPC or storage in sight. The operator runs these on
//! Topic and Cluster resources; a local multi-broker cluster can run them on its own
//! store.
//!
//! - [`model`]: the controller's view of a cluster: [`BrokerInfo`] (a live broker and
//!   its rack) and [`PartitionAssignment`] (replicas, leader, leader epoch, ISR).
//! - [`placement`]: new partitions on the live brokers, replicas and leaders spread
//!   evenly and across racks; existing partitions never move.
//! - [`election`]: a new leader from the live in-sync replicas, with the leader epoch
//!   bumped exactly when the leader changes.
//! - [`scale`]: which brokers a scale-down may remove (those hosting no replica).
//!
//! Deliberately absent: any I/O, clock or async runtime; callers observe, these decide.

pub mod election;
pub mod model;
pub mod placement;
pub mod scale;

pub use election::elect_leaders;
pub use model::{BrokerInfo, PartitionAssignment};
pub use placement::{PlacementError, place};
pub use scale::{HostedReplicas, ScaleDown, hosted_replicas, scale_down};
