//! The Sluice Kubernetes operator: the active controller of a Sluice installation, as
//! ZooKeeper's controller was for Kafka. It is an adapter: it watches and writes
//! Kubernetes objects, and leaves the decisions to crates that know nothing of
//! Kubernetes.
//!
//! - `sluice-controller`: the cluster's decisions (placement, leader election with
//!   epoch bumps, which brokers a scale-down may remove), on plain types;
//!   [`mapping`] converts the CRD types to and from them, in one place.
//! - `sluice_crd::contract`: the broker–operator contract (Lease names, labels and
//!   liveness rule, topic names and precedence, the topic and Cluster configuration the
//!   brokers honour, their environment variables), which the brokers use too.
//! - `sluice-crd`: the CRD types; `sluice-core`: Kafka's topic-name rules.
//!
//! In this crate:
//!
//! - [`cluster`]: Cluster → StatefulSet, Services, ConfigMap, PDB, broker RBAC; status
//!   with per-broker liveness from broker Leases.
//! - [`topic`]: Topic → partition placement, leaders and leader epochs in the status;
//!   a finalizer for deletion.
//! - [`group`]: ConsumerGroup → state, members and lag read from the group's
//!   coordinator (a broker, over gRPC through `sluice-client`) at a bounded rate;
//!   declarative offset resets; a finalizer that can delete the group's offsets.
//! - [`leader`]: only the holder of Lease `sluice-operator` runs the controllers.
//! - [`liveness`], [`conditions`], `*/decide.rs`, `topic/validate.rs`: pure,
//!   unit-tested functions from what was observed to status, conditions and Events.
//! - [`metrics`], [`cli`], [`crdgen`], [`runtime`], [`context`]: the process around them.

pub mod cli;
pub mod cluster;
pub mod conditions;
pub mod context;
pub mod crdgen;
pub mod group;
pub mod leader;
pub mod liveness;
pub mod mapping;
pub mod metrics;
pub mod runtime;
pub mod topic;

/// Field manager of every server-side apply and status patch the operator makes.
pub const MANAGER: &str = "sluice-operator";

/// Everything that can go wrong in a reconcile or in the process around it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("client configuration: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Lease(_) => "lease",
            Error::Json(_) => "json",
            Error::MissingField(_) => "missing_field",
            Error::Config(_) => "config",
            Error::Io(_) => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the API server answered 404 (the object is gone).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
