//! The controller of a local Sluice cluster as a gRPC service, `sluice.controller.v1`
//! (`proto/sluice/controller/v1/controller.proto`): it runs the kube-free
//! [`sluice_controller::ClusterState`], expires broker sessions, persists its state to
//! a JSON file (written atomically, so a restarted controller keeps every epoch) and
//! streams the metadata to the brokers.
//!
//! - [`server`]: [`Controller`] (the state, its persistence and its watchers) and
//!   [`serve`] (the gRPC server and the session-expiry timer).
//! - [`convert`]: state ↔ protobuf, errors → statuses.
//! - [`persist`]: the state file.
//! - [`client`]: a lazily connecting client for brokers and tools.

pub mod client;
pub mod convert;
pub mod persist;
pub mod server;

pub use client::connect;
pub use server::{Controller, ControllerConfig, ControllerError, ControllerHandle, serve};

#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("sluice.controller.v1");
}

/// Encoded `FileDescriptorSet` of the controller API (for reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("controller_descriptor");

/// The default broker session timeout.
pub const DEFAULT_SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
