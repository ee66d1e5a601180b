//! The groups this broker coordinates, wired to the log.
//!
//! Membership lives in memory ([`Group`]); committed offsets live in memory *and* as
//! records of `__consumer_offsets` (durability `always`: a commit is acknowledged only
//! once flushed). On start the coordinator replays the topic to rebuild the offsets.
//!
//! Compaction: when a partition of the topic has taken `compact_after_records` records
//! since its last compaction (and more than it holds live offsets), the coordinator
//! appends a snapshot of every live offset of that partition and deletes all batches
//! before the snapshot. A crash between the two steps leaves duplicates that replay
//! resolves (the newest record of a key wins), never a loss. Appends to one partition
//! are serialized by its append lock, which the snapshot holds too, so no commit can
//! slip in between the snapshot and the deletion.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use sluice_core::{BatchBuilder, Batches};
use tracing::{info, warn};

use super::{
    TopicPartition,
    assignor::Strategy,
    group::{Group, GroupState, Heartbeat, HeartbeatReply},
    offsets_partition,
    records::{self, Committed, OffsetKey},
};
use crate::{
    broker::{Acks, Broker, FetchParams, OffsetQuery, now_ms},
    error::{BrokerError, Result},
    metrics::{GroupLabels, GroupPartitionLabels},
};

/// The internal topic that holds committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Largest batch the coordinator writes to the offsets topic (snapshots are split).
const MAX_OFFSETS_BATCH: usize = 1024 * 1024;

/// Settings of the group coordinator.
#[derive(Debug, Clone)]
pub struct GroupsConfig {
    /// Partitions of `__consumer_offsets` when the broker creates it (an existing
    /// topic keeps its count).
    pub offsets_partitions: u32,
    /// Session timeout of members that do not ask for one.
    pub default_session_timeout: Duration,
    /// Range a member's session timeout is clamped to.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// Longest interval between heartbeats the coordinator asks for (it asks for at
    /// most a third of the session timeout).
    pub heartbeat_interval: Duration,
    /// Records an offsets partition takes before it is compacted.
    pub compact_after_records: u64,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            offsets_partitions: 8,
            default_session_timeout: Duration::from_secs(45),
            min_session_timeout: Duration::from_millis(500),
            max_session_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            compact_after_records: 10_000,
        }
    }
}

/// What a heartbeat returns to the adapter.
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    pub reply: HeartbeatReply,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
}

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

pub use sluice_core::ResetTo;

/// One line of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetLine {
    pub tp: TopicPartition,
    pub current: Option<u64>,
    pub new_offset: u64,
    pub log_start: u64,
    pub log_end: u64,
    pub clamped: bool,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, Group>,
    offsets: BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
}

/// The group coordinator of this broker.
#[derive(Debug)]
pub struct Coordinator {
    broker: Arc<Broker>,
    config: GroupsConfig,
    /// Partitions of `__consumer_offsets`.
    partitions: u32,
    state: Mutex<State>,
    /// Per offsets partition: serializes appends; holds records written since the last
    /// compaction.
    append_locks: Vec<tokio::sync::Mutex<u64>>,
}

fn poisoned() -> BrokerError {
    BrokerError::Storage("group state lock poisoned".into())
}

type RawRecord = (Vec<u8>, Option<Vec<u8>>);

impl Coordinator {
    /// Creates `__consumer_offsets` if needed and replays it.
    pub async fn open(broker: Arc<Broker>, config: GroupsConfig) -> Result<Arc<Self>> {
        let topic_config = BTreeMap::from([
            ("durability".to_string(), "always".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("max.message.bytes".to_string(), (2 * MAX_OFFSETS_BATCH).to_string()),
        ]);
        let partitions = broker.ensure_internal_topic(OFFSETS_TOPIC, config.offsets_partitions.max(1), topic_config)?;
        let c = Self {
            broker,
            config,
            partitions,
            state: Mutex::new(State::default()),
            append_locks: (0..partitions).map(|_| tokio::sync::Mutex::new(0)).collect(),
        };
        let started = Instant::now();
        let mut replayed = 0;
        for p in 0..partitions {
            let n = c.replay(p).await?;
            *c.append_locks[p as usize].lock().await = n;
            replayed += n;
        }
        let groups = c.lock()?.offsets.len();
        info!(records = replayed, groups, elapsed_ms = started.elapsed().as_millis() as u64, "group offsets loaded");
        Ok(Arc::new(c))
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| poisoned())
    }

    pub fn config(&self) -> &GroupsConfig {
        &self.config
    }

    /// Replays one offsets partition into the state; returns the records read.
    async fn replay(&self, p: u32) -> Result<u64> {
        let (mut offset, _) = self.broker.list_offsets(OFFSETS_TOPIC, p, OffsetQuery::Earliest)?;
        let (end, _) = self.broker.list_offsets(OFFSETS_TOPIC, p, OffsetQuery::Latest)?;
        let mut n = 0;
        while offset < end {
            let params =
                FetchParams { offset: offset as i64, max_wait: Duration::ZERO, min_bytes: 0, max_bytes: 4 << 20 };
            let read = self.broker.fetch(OFFSETS_TOPIC, p, params).await?;
            if read.batches.is_empty() {
                break;
            }
            let mut state = self.lock()?;
            for batch in Batches::new(read.batches) {
                let batch = batch?;
                for r in batch.records()? {
                    let r = r?;
                    offset = r.offset + 1;
                    n += 1;
                    let Some(key) = r.key else { continue };
                    match records::decode(&key, r.value.as_deref()) {
                        Ok((k, v)) => apply(&mut state, &k, v),
                        Err(e) => warn!(partition = p, offset = r.offset, error = %e, "skipping bad offsets record"),
                    }
                }
                offset = offset.max(batch.header.next_offset());
            }
        }
        Ok(n)
    }

    /// The broker that coordinates `group` and the offsets partition that holds it. In
    /// standalone mode the coordinator is always this broker.
    pub fn find_coordinator(&self, group: &str) -> Result<(i32, String, u32)> {
        validate_group(group)?;
        let c = self.broker.config();
        let address = c.advertised_address.clone().unwrap_or_else(|| c.listen.to_string());
        Ok((c.broker_id, address, offsets_partition(group, self.partitions)))
    }

    /// Handles a member heartbeat (join when `member_epoch == 0`).
    pub fn heartbeat(&self, group: &str, mut hb: Heartbeat) -> Result<HeartbeatOutcome> {
        validate_group(group)?;
        let c = &self.config;
        hb.session_timeout = if hb.session_timeout.is_zero() {
            c.default_session_timeout
        } else {
            hb.session_timeout.clamp(c.min_session_timeout, c.max_session_timeout)
        };
        let session_timeout = hb.session_timeout;
        let mut state = self.lock()?;
        let g = state.groups.entry(group.to_string()).or_insert_with(|| Group::new(group));
        let reply = g.heartbeat(hb, Instant::now(), |t| self.broker.partition_count(t));
        if g.members.is_empty() {
            state.groups.remove(group);
        }
        Ok(HeartbeatOutcome {
            reply: reply?,
            heartbeat_interval: c.heartbeat_interval.min(session_timeout / 3),
            session_timeout,
        })
    }

    /// Removes a member at its request.
    pub fn leave(&self, group: &str, member: &str) -> Result<()> {
        let mut state = self.lock()?;
        let unknown = || BrokerError::UnknownMember { group: group.to_string(), member: member.to_string() };
        let g = state.groups.get_mut(group).ok_or_else(unknown)?;
        if !g.remove(member) {
            return Err(unknown());
        }
        info!(group, member, "member left");
        if g.members.is_empty() {
            state.groups.remove(group);
        }
        Ok(())
    }

    /// Removes members whose session ran out (called periodically).
    pub fn expire_members(&self) {
        let Ok(mut state) = self.lock() else { return };
        let now = Instant::now();
        let mut emptied = Vec::new();
        for (id, g) in state.groups.iter_mut() {
            for m in g.expire(now) {
                info!(group = %id, member = %m, "member session expired; its partitions move to the others");
            }
            if g.members.is_empty() {
                emptied.push(id.clone());
            }
        }
        for id in emptied {
            state.groups.remove(&id);
        }
    }

    /// Stores committed offsets for a member (or, without a member id, for an empty
    /// group). Offsets above the log end are refused.
    pub async fn commit(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        offsets: Vec<(TopicPartition, u64, String)>,
    ) -> Result<()> {
        validate_group(group)?;
        for (tp, offset, _) in &offsets {
            let (hw, _) = self.broker.list_offsets(&tp.topic, tp.partition, OffsetQuery::Latest)?;
            if *offset > hw {
                let (log_start, _) = self.broker.list_offsets(&tp.topic, tp.partition, OffsetQuery::Earliest)?;
                return Err(BrokerError::OffsetOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *offset as i64,
                    log_start,
                    high_watermark: hw,
                });
            }
        }
        self.check_commit(group, member, epoch, offsets.iter().map(|(tp, _, _)| tp))?;
        let now = now_ms();
        let entries = offsets
            .into_iter()
            .map(|(tp, offset, metadata)| {
                (OffsetKey::new(group, &tp), Some(Committed { offset, metadata, commit_time_ms: now }))
            })
            .collect();
        // Checked again under the append lock: the member may have been fenced while
        // the offsets were validated.
        self.write(group, entries, || self.check_commit(group, member, epoch, std::iter::empty())).await
    }

    fn check_commit<'a>(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        let state = self.lock()?;
        match state.groups.get(group) {
            Some(g) => g.check_commit(member, epoch, tps),
            None if member.is_empty() => Ok(()),
            None => Err(BrokerError::UnknownMember { group: group.to_string(), member: member.to_string() }),
        }
    }

    /// Appends offset records of one group (under its partition's append lock, after
    /// `check` passes) and applies them.
    async fn write(
        &self,
        group: &str,
        entries: Vec<(OffsetKey, Option<Committed>)>,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let p = offsets_partition(group, self.partitions);
        let mut since = self.append_locks[p as usize].lock().await;
        check()?;
        let raw = entries
            .iter()
            .map(|(k, v)| Ok((records::encode_key(k)?, v.as_ref().map(records::encode_value).transpose()?)))
            .collect::<Result<Vec<RawRecord>>>()?;
        self.append(p, &raw).await?;
        {
            let mut state = self.lock()?;
            for (k, v) in &entries {
                apply(&mut state, k, v.clone());
            }
        }
        *since += entries.len() as u64;
        if *since >= self.config.compact_after_records
            && let Err(e) = self.compact(p, &mut since).await
        {
            warn!(partition = p, error = %e, "offsets compaction failed; will retry after the next commit");
        }
        Ok(())
    }

    /// Appends records to an offsets partition in batches; returns the first offset.
    async fn append(&self, p: u32, raw: &[RawRecord]) -> Result<u64> {
        let now = now_ms();
        let mut first = None;
        let mut builder = BatchBuilder::default();
        for (i, (k, v)) in raw.iter().enumerate() {
            builder.push(now, Some(k), v.as_deref(), &[]);
            let last = i + 1 == raw.len();
            if builder.size_bytes() >= MAX_OFFSETS_BATCH || last {
                let batch = std::mem::take(&mut builder).finish()?;
                let appended = self.broker.produce(OFFSETS_TOPIC, p, Acks::All, batch).await?;
                first.get_or_insert(appended.base_offset);
            }
        }
        match first {
            Some(f) => Ok(f),
            None => Ok(self.broker.list_offsets(OFFSETS_TOPIC, p, OffsetQuery::Latest)?.0),
        }
    }

    /// Rewrites the live offsets of partition `p` and deletes everything before them.
    /// The caller holds the partition's append lock (`since`).
    async fn compact(&self, p: u32, since: &mut u64) -> Result<()> {
        let live: Vec<RawRecord> = {
            let state = self.lock()?;
            let mut out = Vec::new();
            for (group, offsets) in state.offsets.iter().filter(|(g, _)| offsets_partition(g, self.partitions) == p) {
                for (tp, c) in offsets {
                    out.push((records::encode_key(&OffsetKey::new(group, tp))?, Some(records::encode_value(c)?)));
                }
            }
            out
        };
        if *since <= live.len() as u64 {
            return Ok(());
        }
        let start = self.append(p, &live).await?;
        let deleted = self.broker.delete_before(OFFSETS_TOPIC, p, start)?;
        info!(partition = p, live = live.len(), batches_deleted = deleted, "offsets partition compacted");
        *since = 0;
        Ok(())
    }

    /// Committed offsets of a group; all of them when `tps` is empty.
    pub fn fetch_offsets(&self, group: &str, tps: &[TopicPartition]) -> Result<Vec<(TopicPartition, Committed)>> {
        let state = self.lock()?;
        let Some(offsets) = state.offsets.get(group) else { return Ok(Vec::new()) };
        Ok(offsets
            .iter()
            .filter(|(tp, _)| tps.is_empty() || tps.contains(tp))
            .map(|(tp, c)| (tp.clone(), c.clone()))
            .collect())
    }

    /// Every group with members or committed offsets.
    pub fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let state = self.lock()?;
        let names: BTreeSet<&String> = state.groups.keys().chain(state.offsets.keys()).collect();
        Ok(names
            .into_iter()
            .map(|name| match state.groups.get(name) {
                Some(g) => GroupSummary { group: name.clone(), state: g.state(), members: g.members.len() },
                None => GroupSummary { group: name.clone(), state: GroupState::Empty, members: 0 },
            })
            .collect())
    }

    /// Describes a group: members, and per partition committed offset, log end and lag.
    pub fn describe(&self, group: &str) -> Result<GroupDescription> {
        let (g, offsets) = {
            let state = self.lock()?;
            let g = state.groups.get(group).cloned();
            let offsets = state.offsets.get(group).cloned();
            if g.is_none() && offsets.is_none() {
                return Err(BrokerError::GroupNotFound(group.to_string()));
            }
            (g.unwrap_or_else(|| Group::new(group)), offsets.unwrap_or_default())
        };
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

    /// Log start and end of a partition; zeros for one that no longer exists.
    fn log_range(&self, tp: &TopicPartition) -> (u64, u64) {
        let q = |q| self.broker.list_offsets(&tp.topic, tp.partition, q).map(|(o, _)| o).unwrap_or(0);
        (q(OffsetQuery::Earliest), q(OffsetQuery::Latest))
    }

    fn refuse_if_live(&self, group: &str) -> Result<()> {
        let state = self.lock()?;
        match state.groups.get(group) {
            Some(g) if !g.members.is_empty() => {
                Err(BrokerError::GroupNotEmpty { group: group.to_string(), members: g.member_ids() })
            }
            _ => Ok(()),
        }
    }

    /// Deletes an empty group and its offsets; returns the number of offsets removed.
    pub async fn delete(&self, group: &str) -> Result<usize> {
        self.refuse_if_live(group)?;
        let keys: Vec<TopicPartition> = {
            let state = self.lock()?;
            match state.offsets.get(group) {
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

    /// Plans (and unless `dry_run`, applies) a reset of a group's offsets on one topic.
    pub async fn reset(&self, group: &str, topic: &str, to: ResetTo, dry_run: bool) -> Result<Vec<ResetLine>> {
        validate_group(group)?;
        self.refuse_if_live(group)?;
        let count = self.broker.partition_count(topic).ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        let current: BTreeMap<TopicPartition, u64> = {
            let state = self.lock()?;
            state
                .offsets
                .get(group)
                .map(|o| o.iter().map(|(tp, c)| (tp.clone(), c.offset)).collect())
                .unwrap_or_default()
        };
        let mut plan = Vec::new();
        for p in 0..count {
            let tp = TopicPartition::new(topic, p);
            let (log_start, log_end) = self.log_range(&tp);
            let cur = current.get(&tp).copied();
            let wanted: i128 = match to {
                ResetTo::Earliest => log_start.into(),
                ResetTo::Latest => log_end.into(),
                ResetTo::Offset(o) => o.into(),
                ResetTo::Timestamp(ts) => self.broker.list_offsets(topic, p, OffsetQuery::Timestamp(ts))?.0.into(),
                ResetTo::ShiftBy(n) => i128::from(cur.unwrap_or(log_start)) + i128::from(n),
            };
            let new_offset = wanted.clamp(log_start.into(), log_end.into()) as u64;
            plan.push(ResetLine {
                clamped: i128::from(new_offset) != wanted,
                tp,
                current: cur,
                new_offset,
                log_start,
                log_end,
            });
        }
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

    /// Sets the consumer-lag gauges from the committed offsets (called before a scrape).
    pub fn refresh_gauges(&self) {
        let Ok(state) = self.lock() else { return };
        let m = self.broker.metrics();
        m.group_lag.clear();
        m.group_committed.clear();
        m.group_members.clear();
        for (group, offsets) in &state.offsets {
            for (tp, c) in offsets {
                let l = GroupPartitionLabels { group: group.clone(), topic: tp.topic.clone(), partition: tp.partition };
                let (_, log_end) = self.log_range(tp);
                m.group_committed.get_or_create(&l).set(c.offset as i64);
                m.group_lag.get_or_create(&l).set(log_end.saturating_sub(c.offset) as i64);
            }
        }
        for (group, g) in &state.groups {
            m.group_members.get_or_create(&GroupLabels { group: group.clone() }).set(g.members.len() as i64);
        }
    }
}

/// Applies one offsets record to the state (replay and after a write).
fn apply(state: &mut State, k: &OffsetKey, v: Option<Committed>) {
    match v {
        Some(c) => {
            state.offsets.entry(k.group.clone()).or_default().insert(k.topic_partition(), c);
        }
        None => {
            if let Some(o) = state.offsets.get_mut(&k.group) {
                o.remove(&k.topic_partition());
                if o.is_empty() {
                    state.offsets.remove(&k.group);
                }
            }
        }
    }
}

fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(BrokerError::InvalidRequest("the group id is empty".into()));
    }
    if group.len() > 255 {
        return Err(BrokerError::InvalidRequest(format!("group id of {} bytes; the limit is 255", group.len())));
    }
    Ok(())
}
