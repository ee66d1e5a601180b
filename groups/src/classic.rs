//! One group of Kafka's classic protocol (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup, client-side assignors), as pure state: time comes in as arguments, the
//! waiting (a JoinGroup answered when every member has rejoined, a follower's SyncGroup
//! when the leader has sent the assignment) is the caller's, which polls
//! [`ClassicGroup::poll_join`] and [`ClassicGroup::poll_sync`] after each change.
//!
//! States as Kafka's `ClassicGroup`: `Empty` → `PreparingRebalance` (members rejoin;
//! ends when all known members have, or the rebalance timeout ran out, or, for a group
//! that was empty, after the initial rebalance delay) → `CompletingRebalance` (new
//! generation; the leader got every member's metadata and sends the assignment) →
//! `Stable`. A join, a leave, an expired session or a new subscription starts a new
//! round. Protocol metadata and assignments are opaque bytes here; the adapter decodes
//! the consumer protocol's topics and partitions only to describe the group.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use crate::TopicPartition;

/// Why a classic-protocol request is refused (the adapter maps each to Kafka's code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassicError {
    #[error("member '{0}' is not in the group (its session may have expired); join again")]
    UnknownMember(String),
    #[error("generation {got} is not the group's current generation {current}")]
    IllegalGeneration { got: i32, current: i32 },
    #[error("the group is rebalancing; join again")]
    RebalanceInProgress,
    #[error("the member's protocols do not match the group's ({0})")]
    InconsistentProtocol(String),
    /// JoinGroup v4+: the member must rejoin with the id it is given (KIP-394).
    #[error("rejoin with the member id '{0}'")]
    MemberIdRequired(String),
}

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// The name DescribeGroups and ListGroups use.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// A JoinGroup in domain terms.
#[derive(Debug, Clone)]
pub struct Join {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (protocol name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The subscribed topics (decoded by the adapter, for describing the group).
    pub topics: BTreeSet<String>,
    /// JoinGroup v4+: an empty member id gets MEMBER_ID_REQUIRED with a new id.
    pub require_known_id: bool,
}

/// One member.
#[derive(Debug, Clone)]
pub struct ClassicMember {
    pub id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub topics: BTreeSet<String>,
    pub assignment: Vec<u8>,
    /// Decoded from the assignment by the adapter (for describing the group and lag).
    pub assigned: BTreeSet<TopicPartition>,
    pub last_heartbeat: Instant,
    /// Rejoined in the current round.
    joined: bool,
}

/// What a completed join answers a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member's metadata for the chosen protocol.
    pub members: Vec<(String, Vec<u8>)>,
}

/// One classic group.
#[derive(Debug, Clone)]
pub struct ClassicGroup {
    pub id: String,
    pub state: ClassicState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: BTreeMap<String, ClassicMember>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined, and until when.
    pending: BTreeMap<String, Instant>,
    /// When the current join round ends at the latest.
    round_deadline: Option<Instant>,
    /// A round of a group that was empty does not end before this (Kafka's
    /// `group.initial.rebalance.delay.ms`: members starting together join one round).
    round_not_before: Option<Instant>,
    joins: u64,
}

impl ClassicGroup {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            round_deadline: None,
            round_not_before: None,
            joins: 0,
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.joins += 1;
        let client = if client_id.is_empty() { "consumer" } else { client_id };
        format!("{client}-{}-{}", crate::group::unix_ms(), self.joins)
    }

    /// Starts a join round (if one is not running).
    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == ClassicState::PreparingRebalance {
            return;
        }
        if self.state == ClassicState::Empty {
            self.round_not_before = Some(now + initial_delay);
        }
        self.state = ClassicState::PreparingRebalance;
        for m in self.members.values_mut() {
            m.joined = false;
            m.assignment.clear();
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.round_deadline = Some(now + timeout.max(initial_delay));
    }

    /// Handles a JoinGroup. Returns the member id; the answer comes from
    /// [`Self::poll_join`] once the round completes.
    pub fn join(&mut self, j: Join, now: Instant, initial_delay: Duration) -> Result<String, ClassicError> {
        if !self.members.is_empty() && j.protocol_type != self.protocol_type {
            return Err(ClassicError::InconsistentProtocol(format!(
                "protocol type '{}', the group's is '{}'",
                j.protocol_type, self.protocol_type
            )));
        }
        let common = |p: &str| {
            self.members.values().filter(|m| m.id != j.member_id).all(|m| m.protocols.iter().any(|(n, _)| n == p))
        };
        if !j.protocols.iter().any(|(n, _)| common(n)) {
            let names: Vec<&str> = j.protocols.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ClassicError::InconsistentProtocol(format!("none of {names:?} is supported by every member")));
        }
        let id = if j.member_id.is_empty() {
            let id = self.new_member_id(&j.client_id);
            if j.require_known_id {
                self.pending.insert(id.clone(), now + j.session_timeout);
                return Err(ClassicError::MemberIdRequired(id));
            }
            id
        } else if self.members.contains_key(&j.member_id) || self.pending.remove(&j.member_id).is_some() {
            j.member_id.clone()
        } else {
            return Err(ClassicError::UnknownMember(j.member_id.clone()));
        };
        let unchanged = self.members.get(&id).is_some_and(|m| m.protocols == j.protocols);
        if self.members.is_empty() {
            self.protocol_type = j.protocol_type.clone();
        }
        let previous = self.members.remove(&id);
        self.members.insert(
            id.clone(),
            ClassicMember {
                id: id.clone(),
                client_id: j.client_id,
                client_host: j.client_host,
                session_timeout: j.session_timeout,
                rebalance_timeout: j.rebalance_timeout,
                protocols: j.protocols,
                topics: j.topics,
                assignment: previous.as_ref().map(|p| p.assignment.clone()).unwrap_or_default(),
                assigned: previous.map(|p| p.assigned).unwrap_or_default(),
                last_heartbeat: now,
                joined: false,
            },
        );
        // As Kafka's coordinator: a follower rejoining a stable group unchanged, or any
        // member rejoining unchanged while the leader assigns (it may have missed its
        // JoinGroup answer), gets the current generation back; anything else is a new
        // round.
        let current = match self.state {
            ClassicState::Stable => unchanged && id != self.leader,
            ClassicState::CompletingRebalance => unchanged,
            ClassicState::Empty | ClassicState::PreparingRebalance => false,
        };
        if !current {
            self.prepare_rebalance(now, initial_delay);
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.joined = true;
        }
        Ok(id)
    }

    /// Completes the join round when it can (every member rejoined, or its deadline
    /// passed: members that did not rejoin are removed), then gives `member` its
    /// answer. `None`: keep waiting. `Err`: the member is no longer in the group.
    pub fn poll_join(&mut self, member: &str, now: Instant) -> Result<Option<JoinResult>, ClassicError> {
        if !self.members.contains_key(member) {
            return Err(ClassicError::UnknownMember(member.to_string()));
        }
        if self.state == ClassicState::PreparingRebalance {
            let all = self.members.values().all(|m| m.joined);
            let early = self.round_not_before.is_some_and(|t| now < t);
            let late = self.round_deadline.is_some_and(|t| now >= t);
            if !((all && !early) || late) {
                return Ok(None);
            }
            self.complete_join();
            if !self.members.contains_key(member) {
                return Err(ClassicError::UnknownMember(member.to_string()));
            }
        }
        let members = if member == self.leader {
            self.members
                .values()
                .map(|m| {
                    let meta = m.protocols.iter().find(|(n, _)| *n == self.protocol).map(|(_, d)| d.clone());
                    (m.id.clone(), meta.unwrap_or_default())
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some(JoinResult {
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            member_id: member.to_string(),
            members,
        }))
    }

    fn complete_join(&mut self) {
        self.members.retain(|_, m| m.joined);
        self.round_deadline = None;
        self.round_not_before = None;
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.generation += 1;
            self.leader.clear();
            return;
        }
        // Kafka's vote: each member votes for its most preferred protocol that every
        // member supports; the most votes wins (ties: the first candidate).
        let candidates: Vec<String> = self
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(n, _)| n.clone()).collect::<Vec<String>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == p)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let v = votes.get(c.as_str()).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| v > most) {
                best = Some((c, v));
            }
        }
        self.protocol = best.map(|(c, _)| c.clone()).unwrap_or_default();
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().cloned().unwrap_or_default();
        }
        self.generation += 1;
        self.state = ClassicState::CompletingRebalance;
    }

    fn check(&self, member: &str, generation: i32) -> Result<(), ClassicError> {
        if !self.members.contains_key(member) {
            return Err(ClassicError::UnknownMember(member.to_string()));
        }
        if generation != self.generation {
            return Err(ClassicError::IllegalGeneration { got: generation, current: self.generation });
        }
        Ok(())
    }

    /// Handles a SyncGroup: the leader's `assignments` (member id → assignment bytes,
    /// with the decoded partitions) complete the round. The member's assignment comes
    /// from [`Self::poll_sync`].
    pub fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>, BTreeSet<TopicPartition>)>,
        now: Instant,
    ) -> Result<(), ClassicError> {
        self.check(member, generation)?;
        self.beat(member, now);
        match self.state {
            ClassicState::PreparingRebalance | ClassicState::Empty => Err(ClassicError::RebalanceInProgress),
            ClassicState::CompletingRebalance if member == self.leader => {
                for (id, bytes, tps) in assignments {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.assignment = bytes;
                        m.assigned = tps;
                    }
                }
                self.state = ClassicState::Stable;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The member's assignment once the leader has sent it; `None`: keep waiting.
    pub fn poll_sync(&self, member: &str, generation: i32) -> Result<Option<Vec<u8>>, ClassicError> {
        self.check(member, generation)?;
        match self.state {
            ClassicState::Stable => Ok(self.members.get(member).map(|m| m.assignment.clone())),
            ClassicState::CompletingRebalance => Ok(None),
            _ => Err(ClassicError::RebalanceInProgress),
        }
    }

    fn beat(&mut self, member: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member) {
            m.last_heartbeat = now;
        }
    }

    /// Handles a Heartbeat: renews the session; REBALANCE_IN_PROGRESS tells the
    /// member to rejoin.
    pub fn heartbeat(&mut self, member: &str, generation: i32, now: Instant) -> Result<(), ClassicError> {
        if !self.members.contains_key(member) {
            return Err(ClassicError::UnknownMember(member.to_string()));
        }
        self.beat(member, now);
        if self.state == ClassicState::PreparingRebalance {
            return Err(ClassicError::RebalanceInProgress);
        }
        self.check(member, generation)
    }

    /// Removes a member at its request.
    pub fn leave(&mut self, member: &str, now: Instant) -> Result<(), ClassicError> {
        if self.members.remove(member).is_none() {
            return Err(ClassicError::UnknownMember(member.to_string()));
        }
        self.after_removal(now);
        Ok(())
    }

    fn after_removal(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.round_deadline = None;
            self.leader.clear();
        } else if self.state != ClassicState::PreparingRebalance {
            self.prepare_rebalance(now, Duration::ZERO);
        }
    }

    /// Removes members whose session ran out (not those a join round waits for: their
    /// rebalance timeout bounds them) and stale pending ids; returns the removed ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        self.pending.retain(|_, until| *until > now);
        let preparing = self.state == ClassicState::PreparingRebalance;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !(preparing && m.joined))
            .filter(|m| now.saturating_duration_since(m.last_heartbeat) > m.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.after_removal(now);
        }
        gone
    }

    /// May this member (at this generation) commit offsets? Without a member id and
    /// with generation -1, only while the group has no members (Kafka's "simple"
    /// commits of consumers that assign partitions themselves).
    pub fn check_commit(&self, member: &str, generation: i32) -> Result<(), ClassicError> {
        if member.is_empty() && generation < 0 {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(ClassicError::UnknownMember(member.to_string()));
        }
        self.check(member, generation)?;
        if self.state == ClassicState::CompletingRebalance {
            return Err(ClassicError::RebalanceInProgress);
        }
        Ok(())
    }

    /// No members and no member ids handed out: nothing to keep.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// The member that was assigned `tp`, if any.
    pub fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.members.values().find(|m| m.assigned.contains(tp)).map(|m| m.id.as_str())
    }
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
