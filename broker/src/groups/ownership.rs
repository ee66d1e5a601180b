//! Which groups this broker coordinates.
//!
//! Where `__consumer_offsets` is this broker's own (standalone; Kubernetes mode for
//! now) it coordinates every group. In a cluster the topic is placed and replicated by
//! the controller like any other, and the coordinator of a group is the leader of its
//! offsets partition (Kafka's rule): the topic is created on the first group request;
//! [`Coordinator::sync_ownership`] (run every 100 ms and whenever a request finds its
//! partition not loaded) replays a partition into memory when this broker becomes its
//! leader, at the new leader epoch, and forgets its groups when the leadership moves
//! away. Until the replay is done the partition's groups answer
//! COORDINATOR_LOAD_IN_PROGRESS; another broker's groups answer NOT_COORDINATOR naming
//! the coordinator; a partition without a leader answers COORDINATOR_NOT_AVAILABLE.
//! All three are retriable: clients find the coordinator again and retry.
//!
//! A replay starts only once the partition's high watermark has reached its log end:
//! every commit the previous leader acknowledged is then below the high watermark and
//! so is read. Members are soft state: after a move the new coordinator knows none, and
//! they join again with the committed offsets.

use std::time::{Duration, Instant};

use sluice_groups::{offsets_partition, validate_group_id};
use tracing::{debug, info, warn};

use super::{
    Coordinator,
    coordinator::{OFFSETS_TOPIC, offsets_topic_config},
};
use crate::error::{BrokerError, Result};

/// How often the ownership loop looks at the offsets partitions' leaders.
pub const OWNERSHIP_INTERVAL: Duration = Duration::from_millis(100);

/// Where a group's coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddress {
    pub broker_id: i32,
    /// Its gRPC address.
    pub address: String,
    /// Its Kafka listener, when it has one (`None` for this broker in standalone mode:
    /// the Kafka listener answers with its own advertised address).
    pub kafka_address: Option<String>,
    /// The partition of `__consumer_offsets` that holds the group.
    pub partition: u32,
}

impl Coordinator {
    /// The broker that coordinates `group` and the offsets partition that holds it:
    /// this broker where the topic is its own; else the partition's leader, creating the
    /// topic first when this is the cluster's first group request.
    pub fn find_coordinator(&self, group: &str) -> Result<CoordinatorAddress> {
        validate_group_id(group)?;
        let p = offsets_partition(group, self.partitions);
        let meta = self.broker.metadata();
        if !self.shared {
            let c = self.broker.config();
            let address = c.advertised_address.clone().unwrap_or_else(|| c.listen.to_string());
            return Ok(CoordinatorAddress { broker_id: meta.broker_id(), address, kafka_address: None, partition: p });
        }
        self.ensure_topic(group)?;
        let unavailable = |reason: String| BrokerError::CoordinatorNotAvailable { group: group.to_string(), reason };
        let leader = meta.placement(OFFSETS_TOPIC, self.partitions).into_iter().find(|x| x.partition == p);
        let Some(id) = leader.and_then(|x| x.leader) else {
            return Err(unavailable(format!("{OFFSETS_TOPIC}-{p} has no leader: no eligible replica is live")));
        };
        let b = meta
            .brokers()
            .into_iter()
            .find(|b| b.id == id)
            .ok_or_else(|| unavailable(format!("broker {id}, the leader of {OFFSETS_TOPIC}-{p}, is not live")))?;
        Ok(CoordinatorAddress { broker_id: id, address: b.address, kafka_address: b.kafka_address, partition: p })
    }

    /// Checks that this broker coordinates `group` now and has its offsets partition
    /// loaded; returns that partition.
    pub(super) fn serve(&self, group: &str) -> Result<u32> {
        validate_group_id(group)?;
        let p = offsets_partition(group, self.partitions);
        if !self.shared {
            return Ok(p);
        }
        self.ensure_topic(group)?;
        let meta = self.broker.metadata();
        if let Err(e) = meta.check_leader(OFFSETS_TOPIC, p) {
            return Err(self.not_coordinator(group, e));
        }
        let epoch = meta.leader_epoch(OFFSETS_TOPIC, p);
        if self.loaded_epoch(p) != Some(epoch) {
            self.ownership_changed.notify_one();
            return Err(BrokerError::CoordinatorLoading { group: group.to_string(), partition: p });
        }
        Ok(p)
    }

    /// A leadership refusal of the offsets partition as the group error clients act on.
    pub(super) fn not_coordinator(&self, group: &str, e: BrokerError) -> BrokerError {
        match e {
            BrokerError::NotLeader { leader: Some(l), reason } => BrokerError::NotCoordinator {
                group: group.to_string(),
                me: self.broker.metadata().broker_id(),
                reason,
                coordinator: Some(l),
            },
            BrokerError::NotLeader { leader: None, reason } => {
                BrokerError::CoordinatorNotAvailable { group: group.to_string(), reason }
            }
            e => e,
        }
    }

    /// Creates `__consumer_offsets` through the controller when it does not exist yet.
    fn ensure_topic(&self, group: &str) -> Result<()> {
        if self.broker.partition_count(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let n =
            self.broker.ensure_internal_topic(OFFSETS_TOPIC, self.partitions, offsets_topic_config()).map_err(|e| {
                BrokerError::CoordinatorNotAvailable {
                    group: group.to_string(),
                    reason: format!("cannot create {OFFSETS_TOPIC}: {e}"),
                }
            })?;
        if n != self.partitions {
            warn!(
                topic = OFFSETS_TOPIC,
                partitions = n,
                expected = self.partitions,
                "the offsets topic has another partition count than this broker uses; restart the broker"
            );
        }
        self.ownership_changed.notify_one();
        Ok(())
    }

    /// Whether `__consumer_offsets` belongs to the cluster (so [`Self::sync_ownership`]
    /// has work to do).
    pub fn shares_offsets_topic(&self) -> bool {
        self.shared
    }

    /// Resolves when a request found its offsets partition not loaded yet.
    pub async fn ownership_notified(&self) {
        self.ownership_changed.notified().await
    }

    fn loaded_epoch(&self, p: u32) -> Option<i32> {
        self.loaded.lock().ok().and_then(|l| l.get(p as usize).copied().flatten())
    }

    fn set_loaded(&self, p: u32, epoch: Option<i32>) {
        if let Ok(mut l) = self.loaded.lock()
            && let Some(slot) = l.get_mut(p as usize)
        {
            *slot = epoch;
        }
    }

    /// Loads the offsets partitions this broker has come to lead and forgets those it
    /// no longer leads. Nothing to do where the topic is this broker's own.
    pub async fn sync_ownership(&self) {
        if !self.shared || self.broker.partition_count(OFFSETS_TOPIC).is_none() {
            return;
        }
        let meta = self.broker.metadata().clone();
        let me = meta.broker_id();
        let placement = meta.placement(OFFSETS_TOPIC, self.partitions);
        for p in 0..self.partitions {
            // Led here by the metadata, not fenced, and the replica is open.
            let leads = placement.iter().any(|x| x.partition == p && x.leader == Some(me))
                && meta.check_leader(OFFSETS_TOPIC, p).is_ok()
                && self.broker.local_offsets(OFFSETS_TOPIC, p).is_some();
            let epoch = meta.leader_epoch(OFFSETS_TOPIC, p);
            match (leads, self.loaded_epoch(p)) {
                (true, Some(e)) if e == epoch => {}
                (true, _) => {
                    if let Err(e) = self.load(p, epoch).await {
                        warn!(partition = p, leader_epoch = epoch, error = %e, "loading an offsets partition failed; retrying");
                    }
                }
                (false, Some(_)) => self.unload(p),
                (false, None) => {}
            }
        }
    }

    /// Replays offsets partition `p` as its leader at `epoch`, once every acknowledged
    /// commit is below its high watermark.
    async fn load(&self, p: u32, epoch: i32) -> Result<()> {
        let Some((_, hw, end)) = self.broker.local_offsets(OFFSETS_TOPIC, p) else { return Ok(()) };
        if hw < end {
            debug!(partition = p, high_watermark = hw, log_end = end, "offsets partition not committed to its end yet");
            return Ok(());
        }
        let started = Instant::now();
        let mut since = self.append_locks[p as usize].lock().await;
        self.forget(p)?;
        let records = self.replay(p).await?;
        *since = records;
        self.set_loaded(p, Some(epoch));
        drop(since);
        let parts = self.partitions;
        let groups = self.lock()?.offsets.iter().filter(|(g, _)| offsets_partition(g, parts) == p).count();
        info!(
            partition = p,
            leader_epoch = epoch,
            records,
            groups,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "coordinating the groups of offsets partition"
        );
        Ok(())
    }

    /// Gives up offsets partition `p`: its leadership moved to another broker.
    fn unload(&self, p: u32) {
        self.set_loaded(p, None);
        match self.forget(p) {
            Ok(groups) => info!(partition = p, groups, "no longer coordinating offsets partition (its leader moved)"),
            Err(e) => warn!(partition = p, error = %e, "forgetting an offsets partition failed"),
        }
        // Classic joins and syncs waiting on a forgotten group answer at once.
        self.classic_changed.notify_waiters();
    }

    /// Forgets the members and offsets of every group of offsets partition `p`; returns
    /// how many groups had offsets.
    fn forget(&self, p: u32) -> Result<usize> {
        let parts = self.partitions;
        let mut state = self.lock()?;
        state.groups.retain(|g, _| offsets_partition(g, parts) != p);
        state.classic.retain(|g, _| offsets_partition(g, parts) != p);
        Ok(state.offsets.unload(p, parts))
    }
}
