//! Consumer groups on the client side: [`GroupConsumer`] (subscribe, poll, commit, with
//! heartbeats in the background) and [`GroupAdmin`] (list, describe, delete, reset).
//!
//! - [`session`]: the background heartbeat task and the state it shares with the poll
//!   loop (member id, epoch, the coordinator's latest assignment).
//! - [`consumer`]: the poll loop: applies assignment changes (revoke first, with the
//!   rebalance listener's chance to commit), reads, commits.
//! - [`link`]: the member's coordinator connection, found again when the coordinator
//!   moves (in a cluster it is the leader of the group's offsets partition).
//! - [`admin`]: group administration calls.

pub mod admin;
pub mod consumer;
pub mod link;
pub mod session;

use std::{collections::BTreeMap, time::Duration};

pub use admin::GroupAdmin;
pub use consumer::GroupConsumer;

use crate::{connection::Client, consumer::AutoOffsetReset, consumer::ConsumerConfig, error::Result};

pub use sluice_core::TopicPartition;

/// Assignment strategy asked of the coordinator (the first member's choice holds).
pub use sluice_core::Strategy;

/// Group consumer settings (Kafka's names in brackets).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Shown by `group describe` [client.id].
    pub client_id: String,
    /// The coordinator removes the member when no heartbeat came for this long
    /// [session.timeout.ms]. The coordinator asks for heartbeats at a third of it.
    pub session_timeout: Duration,
    /// [group.remote.assignor]
    pub strategy: Strategy,
    /// Commit the positions of owned partitions this often, in `poll`, on revocation and
    /// on close; `None` for manual commits only [enable.auto.commit,
    /// auto.commit.interval.ms].
    pub auto_commit_interval: Option<Duration>,
    /// Where to start a partition that has no committed offset [auto.offset.reset].
    pub auto_offset_reset: AutoOffsetReset,
    /// Fetch settings of the underlying consumer.
    pub consumer: ConsumerConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            client_id: "sluice-consumer".into(),
            session_timeout: Duration::from_secs(10),
            strategy: Strategy::default(),
            auto_commit_interval: Some(Duration::from_secs(5)),
            auto_offset_reset: AutoOffsetReset::Latest,
            consumer: ConsumerConfig::default(),
        }
    }
}

/// Told about assignment changes, from inside [`GroupConsumer::poll`]. Records returned
/// by earlier polls count as processed, as in Kafka's poll loop.
pub trait RebalanceListener: Send {
    /// Partitions were added; reading them starts at their committed offsets.
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// Partitions are about to move to another member. `commit` holds the consumer's
    /// positions for them; the consumer commits what it holds after this returns (edit
    /// it to commit something else, clear it to commit nothing).
    fn on_revoked(&mut self, partitions: &[TopicPartition], commit: &mut BTreeMap<TopicPartition, u64>) {
        let _ = (partitions, commit);
    }

    /// The member was fenced (session expired, broker restarted): these partitions may
    /// already belong to someone else, so nothing is committed for them.
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

/// Asks any broker which broker coordinates `group` and connects to it (reusing
/// `client` when it is that broker).
pub async fn coordinator(client: &Client, group: &str) -> Result<Client> {
    let address = find_coordinator(client, group).await?;
    if address == client.addr() {
        return Ok(client.clone());
    }
    connect_or_bootstrap(client, &address).await
}

/// Like [`coordinator`], but always on a connection of its own. A group consumer keeps
/// its heartbeats and commits off the connection its fetches use: HTTP/2 streams share
/// one connection window, and fetch responses the consumer has not read yet (while it
/// commits before a revocation, say) could otherwise hold up the very answer it waits
/// for, and delay heartbeats past the session timeout.
pub async fn dedicated_coordinator(client: &Client, group: &str) -> Result<Client> {
    let address = find_coordinator(client, group).await?;
    connect_or_bootstrap(client, &address).await
}

async fn find_coordinator(client: &Client, group: &str) -> Result<String> {
    let r = client
        .groups()
        .find_coordinator(sluice_proto::v1::FindCoordinatorRequest { group: group.to_string() })
        .await?
        .into_inner();
    Ok(if r.address.is_empty() { client.addr().to_string() } else { r.address })
}

async fn connect_or_bootstrap(client: &Client, address: &str) -> Result<Client> {
    match Client::connect(address).await {
        Ok(c) => Ok(c),
        // An advertised address this host cannot reach (a container's own address, say):
        // use the bootstrap address, which is right in standalone mode.
        Err(e) if address != client.addr() => {
            tracing::warn!(%address, error = %e, "cannot reach the group coordinator; using the bootstrap broker");
            Client::connect(client.addr()).await
        }
        Err(e) => Err(e),
    }
}
