//! Topic operations: create (placement over the unfenced brokers, by replication factor
//! and rack), grow and reconfigure, delete, and the leader's ISR changes.

use std::collections::BTreeMap;

use super::{Change, ClusterError, ClusterState, MIN_INSYNC_REPLICAS, TopicState, partition_changed};
use crate::{
    isr::{self, AlterIsr},
    model::{BrokerInfo, PartitionAssignment},
    placement::place,
};

/// Replication factor of a topic created without one: 3, or every broker when fewer.
pub const DEFAULT_REPLICATION_FACTOR: u32 = 3;

impl ClusterState {
    fn live_infos(&self) -> Vec<BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced).map(|b| BrokerInfo { id: b.id, rack: b.rack.clone() }).collect()
    }

    /// Creates topic `name`: `partitions` partitions of `replication_factor` replicas (0:
    /// [`DEFAULT_REPLICATION_FACTOR`], or the live brokers when fewer) on the unfenced
    /// brokers.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: BTreeMap<String, String>,
    ) -> Result<Vec<Change>, ClusterError> {
        if self.topics.contains_key(name) {
            return Err(ClusterError::TopicExists(name.to_string()));
        }
        if partitions == 0 {
            return Err(ClusterError::InvalidRequest("a topic needs at least one partition".into()));
        }
        let live = self.live_infos();
        let rf = match replication_factor {
            0 => DEFAULT_REPLICATION_FACTOR.min(u32::try_from(live.len()).unwrap_or(u32::MAX)).max(1),
            n => n,
        };
        check_config(&config, rf)?;
        let placed = place(&[], partitions as usize, rf as usize, &live)?;
        let placed = placed.into_iter().map(|p| PartitionAssignment { last_leader: p.leader, ..p }).collect();
        self.topics.insert(name.to_string(), TopicState { replication_factor: rf, config, partitions: placed });
        Ok(self.changed(vec![Change::TopicCreated { topic: name.to_string() }]))
    }

    /// Grows topic `name` to `partitions` (never shrinks) and replaces its configuration.
    pub fn update_topic(
        &mut self,
        name: &str,
        partitions: u32,
        config: BTreeMap<String, String>,
    ) -> Result<Vec<Change>, ClusterError> {
        let live = self.live_infos();
        let t = self.topics.get_mut(name).ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
        let current = t.partitions.len();
        if (partitions as usize) < current {
            return Err(ClusterError::InvalidRequest(format!(
                "topic '{name}' has {current} partitions; partition counts never shrink (asked: {partitions})"
            )));
        }
        check_config(&config, t.replication_factor)?;
        let mut grown = place(&t.partitions, partitions as usize, t.replication_factor as usize, &live)?;
        for p in grown.iter_mut().skip(current) {
            p.last_leader = p.leader;
        }
        if grown == t.partitions && config == t.config {
            return Ok(Vec::new());
        }
        t.partitions = grown;
        t.config = config;
        Ok(self.changed(vec![Change::TopicUpdated { topic: name.to_string() }]))
    }

    /// Deletes topic `name`.
    pub fn delete_topic(&mut self, name: &str) -> Result<Vec<Change>, ClusterError> {
        self.topics.remove(name).ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
        Ok(self.changed(vec![Change::TopicDeleted { topic: name.to_string() }]))
    }

    /// A leader's ISR change (Kafka's AlterPartition), checked by [`isr::validate`];
    /// answers the partition as it now stands.
    pub fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        change: &AlterIsr,
    ) -> Result<(PartitionAssignment, Vec<Change>), ClusterError> {
        let live = self.live();
        let t = self.topics.get_mut(topic).ok_or_else(|| ClusterError::UnknownTopic(topic.to_string()))?;
        let min_isr = t.min_isr();
        let p = t
            .partitions
            .iter_mut()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ClusterError::UnknownPartition { topic: topic.to_string(), partition })?;
        let changed = isr::alter(p, change, &live, min_isr)?;
        let out = p.clone();
        let changes = if changed { vec![partition_changed(topic, p)] } else { Vec::new() };
        Ok((out, self.changed(changes)))
    }
}

/// The keys the controller reads must make sense for the replication factor.
fn check_config(config: &BTreeMap<String, String>, rf: u32) -> Result<(), ClusterError> {
    if let Some(v) = config.get(MIN_INSYNC_REPLICAS) {
        match v.parse::<u32>() {
            Ok(n) if n >= 1 && n <= rf => {}
            _ => {
                return Err(ClusterError::InvalidRequest(format!(
                    "{MIN_INSYNC_REPLICAS}={v} must be a whole number from 1 to the replication factor {rf}"
                )));
            }
        }
    }
    Ok(())
}
