//! The Sluice broker: a gRPC server over a sled-backed, partitioned, retained log.
//!
//! Layout, from the edge inwards:
//! - [`args`]: the command line and environment → configuration and [`Mode`].
//! - [`server`]: starts/stops everything (gRPC, metrics HTTP, retention task); [`run`]
//!   is the one entry point of every mode.
//! - [`grpc`]: the `sluice.v1.Sluice` service; protobuf ↔ domain, errors → statuses.
//! - [`grpc_groups`]: the `sluice.v1.Groups` service over [`groups::Coordinator`].
//! - [`grpc_replication`]: the `sluice.v1.Replication` service (leader to followers).
//! - [`replication`]: followers fetching from leaders, the ISR and the high watermark.
//! - [`kafka`]: Kafka's wire protocol on its own listener, over the same domain calls.
//! - [`broker`]: the domain service: topics, produce, fetch long-poll, offsets.
//! - [`groups`]: consumer groups: membership, assignment, committed offsets.
//! - [`storage`]: the partition log, the `sluice-log` crate (re-exported under its old path).
//! - [`metadata`]: where topics come from ([`metadata::MetadataStore`]).
//! - [`cluster`]: cluster mode (`--controller`): a broker of a local multi-broker
//!   cluster, its metadata from the controller of `sluice-controller-grpc`.
//! - `kubernetes` (feature `kubernetes`, default): Kubernetes mode: Topic watch, broker
//!   Lease, other brokers, over the contract in `sluice_crd::contract`.
//! - [`connections`]: accepted sockets, counted, closed when idle or at shutdown.
//! - [`config`], [`error`], [`metrics`]: settings, rules, errors, metrics.

pub mod args;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod error;
pub mod groups;
pub mod grpc;
pub mod grpc_groups;
pub mod grpc_replication;
pub mod kafka;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod metadata;
pub mod metrics;
pub mod replication;
pub mod server;
pub mod telemetry;

pub use sluice_log as storage;

pub use broker::Broker;
pub use config::{BrokerConfig, Durability, TopicConfig};
pub use error::BrokerError;
pub use server::{BrokerHandle, Mode, run, start};
