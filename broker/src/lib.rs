//! The Sluice broker: a gRPC server over a sled-backed, partitioned, retained log.
//!
//! Layout, from the edge inwards:
//! - [`server`]: starts/stops everything (gRPC, metrics HTTP, retention task).
//! - [`grpc`]: the `sluice.v1.Sluice` service; protobuf ↔ domain, errors → statuses.
//! - [`grpc_groups`]: the `sluice.v1.Groups` service over [`groups::Coordinator`].
//! - [`broker`]: the domain service: topics, produce, fetch long-poll, offsets.
//! - [`groups`]: consumer groups: membership, assignment, committed offsets.
//! - [`storage`]: the partition log, the `sluice-log` crate (re-exported under its old path).
//! - [`metadata`]: where topics come from ([`metadata::MetadataStore`]).
//! - [`kubernetes`]: Kubernetes mode: Topic watch, broker Lease, other brokers.
//! - [`config`], [`error`], [`metrics`]: settings, rules, errors, metrics.

pub mod broker;
pub mod config;
pub mod error;
pub mod groups;
pub mod grpc;
pub mod grpc_groups;
pub mod kubernetes;
pub mod metadata;
pub mod metrics;
pub mod server;
pub mod telemetry;

pub use sluice_log as storage;

pub use broker::Broker;
pub use config::{BrokerConfig, Durability, TopicConfig};
pub use error::BrokerError;
pub use server::{BrokerHandle, run_until_signal, start};
