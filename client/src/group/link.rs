//! [`CoordinatorLink`]: a group member's connection to its coordinator, found again when
//! the coordinator moves.
//!
//! In a cluster the coordinator of a group is the leader of its offsets partition, so it
//! moves with that leadership (a broker dies, restarts, or is fenced). A call answered
//! NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE or
//! NOT_LEADER, or one whose broker cannot be reached, makes the member ask FindCoordinator
//! again: of the broker it bootstrapped from, then of every other broker it has heard of
//! (the bootstrap broker may be the one that died). A standalone broker never answers so.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sluice_proto::v1 as pb;
use tracing::{debug, info};

use crate::{
    connection::Client,
    error::{ClientError, Result},
};

/// Wait between rounds of FindCoordinator while no broker names a live coordinator.
pub const REDISCOVERY_BACKOFF: Duration = Duration::from_millis(200);

/// Whether an error from a group call means "the coordinator is elsewhere, or not ready
/// yet": find it again and retry.
pub fn coordinator_moved(err: &ClientError) -> bool {
    use pb::ErrorCode as E;
    matches!(
        err.kind(),
        Some(E::NotCoordinator | E::CoordinatorLoadInProgress | E::CoordinatorNotAvailable | E::NotLeader)
    ) || matches!(err, ClientError::Transport(_) | ClientError::Connect { .. })
}

/// The member's coordinator connection. Cheap to share.
#[derive(Debug)]
pub struct CoordinatorLink {
    group: String,
    bootstrap: Client,
    current: Mutex<Client>,
    /// gRPC addresses of every broker learned from Metadata.
    brokers: Mutex<Vec<String>>,
}

impl CoordinatorLink {
    /// Finds the coordinator of `group` through `bootstrap` and connects to it on a
    /// connection of its own (see [`super::dedicated_coordinator`]).
    pub async fn connect(bootstrap: Client, group: &str) -> Result<Arc<Self>> {
        let current = super::dedicated_coordinator(&bootstrap, group).await?;
        let link =
            Self { group: group.to_string(), bootstrap, current: Mutex::new(current), brokers: Mutex::new(Vec::new()) };
        link.learn_brokers(&link.bootstrap).await;
        Ok(Arc::new(link))
    }

    /// The coordinator as last found.
    pub fn current(&self) -> Client {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the brokers it knows where the coordinator is now and connects there. Fails
    /// when none names one that answers (the caller retries after a backoff).
    pub async fn rediscover(&self) -> Result<()> {
        let known = self.brokers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let others = known.into_iter().filter(|a| a.as_str() != self.bootstrap.addr());
        let mut last = None;
        // The bootstrap broker first; a connection to another only when it is asked.
        for address in std::iter::once(None).chain(others.map(Some)) {
            let asked = match address {
                None => self.bootstrap.clone(),
                Some(a) => match Client::connect(&a).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            match self.find_via(&asked).await {
                Ok(c) => {
                    if c.addr() != self.current().addr() {
                        info!(group = %self.group, coordinator = %c.addr(), "found the group coordinator");
                    }
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = c;
                    self.learn_brokers(&asked).await;
                    return Ok(());
                }
                Err(e) => {
                    debug!(group = %self.group, asked = %asked.addr(), error = %e, "FindCoordinator failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Transport("no broker to ask for the coordinator".into())))
    }

    /// After a failed group call: finds the coordinator again when the error says it
    /// moved (errors are logged, not returned: the caller retries either way).
    pub async fn after_error(&self, err: &ClientError) {
        if coordinator_moved(err)
            && let Err(e) = self.rediscover().await
        {
            debug!(group = %self.group, error = %e, "the group coordinator is not reachable yet");
        }
    }

    async fn find_via(&self, asked: &Client) -> Result<Client> {
        Client::connect(&super::find_coordinator(asked, &self.group).await?).await
    }

    async fn learn_brokers(&self, via: &Client) {
        if let Ok(m) = via.raw().metadata(pb::MetadataRequest { topics: Vec::new() }).await {
            let addresses: Vec<String> = m.into_inner().brokers.into_iter().map(|b| b.address).collect();
            if addresses.len() > 1 {
                *self.brokers.lock().unwrap_or_else(|e| e.into_inner()) = addresses;
            }
        }
    }
}
