//! Group administration on the coordinator: list, describe (members, committed
//! offsets, lag), delete, and offset resets planned by [`sluice_groups::plan_reset`].
//! Deletes and resets are refused while the group has live members.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use sluice_groups::{
    ClassicGroup, ClassicState, Committed, Group, GroupState, OffsetKey, PartitionOffsets, ResetLine, ResetTo,
    Strategy, TopicPartition, plan_reset,
};
use tracing::info;

use super::Coordinator;
use crate::{
    broker::{OffsetQuery, now_ms},
    error::{BrokerError, Result},
};

/// A member as DescribeGroup shows it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: String,
    pub client_id: String,
    pub epoch: i32,
    pub topics: Vec<String>,
    pub owned: Vec<TopicPartition>,
    pub target: Vec<TopicPartition>,
    pub last_heartbeat_ago: Duration,
}

/// One partition's committed offset and lag.
#[derive(Debug, Clone)]
pub struct PartitionLag {
    pub tp: TopicPartition,
    pub committed: Option<u64>,
    pub log_end: u64,
    pub lag: u64,
    pub owner: Option<String>,
}

/// DescribeGroup in domain terms.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    pub epoch: i32,
    pub strategy: Strategy,
    pub members: Vec<MemberInfo>,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: u64,
}

/// ListGroups in domain terms.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group: String,
    pub state: GroupState,
    pub members: usize,
}

impl Coordinator {
    /// Every group with members or committed offsets.
    pub fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let state = self.lock()?;
        let names: BTreeSet<&String> =
            state.groups.keys().chain(state.classic.keys()).chain(state.offsets.iter().map(|(g, _)| g)).collect();
        Ok(names
            .into_iter()
            .map(|name| match (state.groups.get(name), state.classic.get(name)) {
                (_, Some(c)) if !c.members.is_empty() => {
                    GroupSummary { group: name.clone(), state: classic_state(c), members: c.members.len() }
                }
                (Some(g), _) => GroupSummary { group: name.clone(), state: g.state(), members: g.members.len() },
                _ => GroupSummary { group: name.clone(), state: GroupState::Empty, members: 0 },
            })
            .collect())
    }

    /// Describes a group: members, and per partition committed offset, log end and lag.
    pub fn describe(&self, group: &str) -> Result<GroupDescription> {
        self.serve(group)?;
        let (g, classic, offsets) = {
            let state = self.lock()?;
            let g = state.groups.get(group).cloned();
            let classic = state.classic.get(group).filter(|c| !c.members.is_empty()).cloned();
            let offsets = state.offsets.group(group).cloned();
            if g.is_none() && classic.is_none() && offsets.is_none() {
                return Err(BrokerError::GroupNotFound(group.to_string()));
            }
            (g.unwrap_or_else(|| Group::new(group)), classic, offsets.unwrap_or_default())
        };
        if let Some(c) = classic {
            return Ok(self.describe_classic(&c, offsets));
        }
        let mut tps: BTreeSet<TopicPartition> = offsets.keys().cloned().collect();
        let topics: BTreeSet<&String> = g.members.values().flat_map(|m| &m.topics).collect();
        for t in topics {
            if let Some(n) = self.broker.partition_count(t) {
                tps.extend((0..n).map(|p| TopicPartition::new(t, p)));
            }
        }
        let mut partitions = Vec::new();
        for tp in tps {
            let committed = offsets.get(&tp).map(|c| c.offset);
            let (log_start, log_end) = self.log_range(&tp);
            let lag = log_end.saturating_sub(committed.unwrap_or(log_start));
            partitions.push(PartitionLag { owner: g.owner(&tp).map(str::to_string), tp, committed, log_end, lag });
        }
        let now = Instant::now();
        let members = g
            .members
            .values()
            .map(|m| MemberInfo {
                id: m.id.clone(),
                client_id: m.client_id.clone(),
                epoch: m.epoch,
                topics: m.topics.iter().cloned().collect(),
                owned: m.owned.iter().cloned().collect(),
                target: m.target.iter().cloned().collect(),
                last_heartbeat_ago: now.saturating_duration_since(m.last_heartbeat),
            })
            .collect();
        Ok(GroupDescription {
            group: group.to_string(),
            state: g.state(),
            epoch: g.epoch,
            strategy: g.strategy,
            members,
            total_lag: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        })
    }

    /// A classic group as DescribeGroup shows it: the generation as epoch, each
    /// member's assignment as owned and target.
    fn describe_classic(&self, c: &ClassicGroup, offsets: BTreeMap<TopicPartition, Committed>) -> GroupDescription {
        let mut tps: BTreeSet<TopicPartition> = offsets.keys().cloned().collect();
        tps.extend(c.members.values().flat_map(|m| m.assigned.iter().cloned()));
        let partitions: Vec<PartitionLag> = tps
            .into_iter()
            .map(|tp| {
                let committed = offsets.get(&tp).map(|o| o.offset);
                let (log_start, log_end) = self.log_range(&tp);
                let lag = log_end.saturating_sub(committed.unwrap_or(log_start));
                PartitionLag { owner: c.owner(&tp).map(str::to_string), tp, committed, log_end, lag }
            })
            .collect();
        let now = Instant::now();
        let members = c
            .members
            .values()
            .map(|m| MemberInfo {
                id: m.id.clone(),
                client_id: m.client_id.clone(),
                epoch: c.generation,
                topics: m.topics.iter().cloned().collect(),
                owned: m.assigned.iter().cloned().collect(),
                target: m.assigned.iter().cloned().collect(),
                last_heartbeat_ago: now.saturating_duration_since(m.last_heartbeat),
            })
            .collect();
        GroupDescription {
            group: c.id.clone(),
            state: classic_state(c),
            epoch: c.generation,
            strategy: Strategy::default(),
            members,
            total_lag: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        }
    }

    /// Deletes an empty group and its offsets; returns the number of offsets removed.
    pub async fn delete(&self, group: &str) -> Result<usize> {
        self.serve(group)?;
        self.refuse_if_live(group)?;
        let keys: Vec<TopicPartition> = {
            let state = self.lock()?;
            match state.offsets.group(group) {
                Some(o) => o.keys().cloned().collect(),
                None => return Err(BrokerError::GroupNotFound(group.to_string())),
            }
        };
        let n = keys.len();
        let tombstones = keys.iter().map(|tp| (OffsetKey::new(group, tp), None)).collect();
        self.write(group, tombstones, || self.refuse_if_live(group)).await?;
        info!(group, offsets = n, "group deleted");
        Ok(n)
    }

    /// Plans (and unless `dry_run`, applies) a reset of a group's offsets on one topic:
    /// on `only` of its partitions, or all of them when `only` is empty.
    pub async fn reset(
        &self,
        group: &str,
        topic: &str,
        only: &[u32],
        to: ResetTo,
        dry_run: bool,
    ) -> Result<Vec<ResetLine>> {
        self.serve(group)?;
        self.refuse_if_live(group)?;
        let count = self.broker.partition_count(topic).ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        if let Some(p) = only.iter().find(|p| **p >= count) {
            return Err(BrokerError::InvalidRequest(format!(
                "partition {p} of topic '{topic}' does not exist (it has {count} partition(s))"
            )));
        }
        let current: BTreeMap<TopicPartition, u64> = {
            let state = self.lock()?;
            state
                .offsets
                .group(group)
                .map(|o| o.iter().map(|(tp, c)| (tp.clone(), c.offset)).collect())
                .unwrap_or_default()
        };
        let partitions = (0..count).filter(|p| only.is_empty() || only.contains(p)).map(|p| {
            let tp = TopicPartition::new(topic, p);
            let (log_start, log_end) = self.log_range(&tp);
            PartitionOffsets { current: current.get(&tp).copied(), tp, log_start, log_end }
        });
        let plan = plan_reset(to, partitions, |tp, ts| {
            self.broker.list_offsets(&tp.topic, tp.partition, OffsetQuery::Timestamp(ts)).map(|(o, _)| o)
        })?;
        if !dry_run {
            let now = now_ms();
            let entries = plan
                .iter()
                .map(|l| {
                    let c = Committed { offset: l.new_offset, metadata: String::new(), commit_time_ms: now };
                    (OffsetKey::new(group, &l.tp), Some(c))
                })
                .collect();
            self.write(group, entries, || self.refuse_if_live(group)).await?;
            info!(group, topic, ?to, "offsets reset");
        }
        Ok(plan)
    }
}

/// A classic group's state in the vocabulary of DescribeGroup (stable, or moving).
fn classic_state(c: &ClassicGroup) -> GroupState {
    match c.state {
        ClassicState::Empty => GroupState::Empty,
        ClassicState::Stable => GroupState::Stable,
        ClassicState::PreparingRebalance | ClassicState::CompletingRebalance => GroupState::Reconciling,
    }
}
