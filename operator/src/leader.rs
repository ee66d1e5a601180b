//! Leader election: only the holder of Lease `sluice-operator` runs the controllers, as
//! only one Kafka controller is active. On losing the Lease the controllers are aborted
//! at once (not drained), so two processes never write status concurrently for longer
//! than the lease's grace period.

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::{Error, MANAGER, Result};

/// Name of the operator's Lease.
pub const LEASE_NAME: &str = "sluice-operator";
/// Lease duration: a crashed leader is replaced within this many seconds.
pub const DEFAULT_DURATION_SECONDS: u64 = 15;
/// The holder renews this long before the lease would expire.
pub const DEFAULT_GRACE_SECONDS: u64 = 5;

/// How this process takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Unique identity of this process (its pod name).
    pub identity: String,
    pub duration_seconds: u64,
    pub grace_seconds: u64,
}

/// Runs `work()` whenever this process holds the Lease and aborts it as soon as the Lease
/// is lost; returns when `shutdown` completes (releasing the Lease so a standby takes
/// over at once) or with an error when the election task dies.
pub async fn run_while_leader<W, Fut>(
    client: Client,
    settings: &LeaderSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    work: W,
) -> Result<()>
where
    W: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_seconds)
        .with_grace(settings.grace_seconds)
        .with_field_manager(MANAGER)
        .build()
        .await?;
    let (mut leading, election) = manager.watch().await;
    let mut controllers: Option<JoinHandle<()>> = None;
    tokio::pin!(shutdown);
    let stop = |controllers: &mut Option<JoinHandle<()>>| {
        if let Some(task) = controllers.take() {
            task.abort();
            metrics.leader.set(0);
        }
    };
    loop {
        let is_leader = *leading.borrow_and_update();
        if is_leader && controllers.is_none() {
            tracing::info!(identity = %settings.identity, "acquired the {LEASE_NAME} lease; starting controllers");
            metrics.leader.set(1);
            controllers = Some(tokio::spawn(work()));
        } else if !is_leader && controllers.is_some() {
            tracing::warn!(identity = %settings.identity, "lost the {LEASE_NAME} lease; stopping controllers");
            stop(&mut controllers);
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            () = &mut shutdown => {
                stop(&mut controllers);
                drop(leading);
                if let Ok(Ok(manager)) = election.await {
                    manager.release().await?;
                    tracing::info!("released the {LEASE_NAME} lease");
                }
                return Ok(());
            }
        }
    }
    stop(&mut controllers);
    match election.await {
        Ok(Ok(_)) => Err(Error::Config("leader election ended unexpectedly".into())),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(Error::Config(format!("leader election task failed: {e}"))),
    }
}
