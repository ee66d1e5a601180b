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

/// The result of [`kube::runtime::finalizer::finalizer`], with its stale-cache races
/// taken out: the reconcile ran on a cached copy older than the API server's, so the
/// JSON patch that adds or removes the finalizer met a changed list (422, its `test`
/// failed; 409) or an object already gone (404). The watch brings the newer copy, and
/// with it another reconcile, so these are not failures; anything else is.
pub fn finalized(
    result: Result<kube::runtime::controller::Action, kube::runtime::finalizer::Error<Error>>,
) -> Result<kube::runtime::controller::Action> {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::Error as F;
    match result {
        Ok(action) => Ok(action),
        Err(F::RemoveFinalizer(e)) if is_not_found(&e) => Ok(Action::await_change()),
        Err(F::AddFinalizer(e) | F::RemoveFinalizer(e)) if is_stale_write(&e) => {
            tracing::debug!(error = %e, "finalizer patch met a newer object; retrying on the newer copy");
            Ok(Action::requeue(std::time::Duration::from_secs(1)))
        }
        Err(e) => Err(Error::Finalizer(Box::new(e))),
    }
}

/// Whether a write was refused because the object changed since it was read (409, or
/// 422 from a JSON patch `test` operation) or is gone (404).
fn is_stale_write(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 404 | 409 | 422))
}

/// Whether the API server answered 404 (the object is gone).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
