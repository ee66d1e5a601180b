//! One consumer group's membership: members, epochs, session deadlines, the target
//! assignment and the reconciliation that moves partitions without ever giving one to
//! two members at once. Pure state: time comes in as an argument, topic sizes through a
//! closure, so every rule is unit-tested without a broker. (The one reading of the wall
//! clock names new members: their ids must differ from those handed out before a
//! restart, which a counter alone cannot promise.)
//!
//! Reconciliation (KIP-848 style): each member has a *target* (what the assignor wants
//! it to own) and *owned* partitions (what the coordinator gave it and the member has
//! not yet reported released). A heartbeat answers with `owned ∩ target` plus every
//! target partition that no other member owns; partitions that left the target stay in
//! `owned` until the member stops reporting them. The member epoch moves to the group
//! epoch whenever a member's assignment changes; commits must carry it.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    Strategy, TopicPartition,
    assignor::{self, MemberSpec},
    error::{GroupError, Result},
};

/// A member as the coordinator tracks it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub client_id: String,
    pub epoch: i32,
    pub topics: BTreeSet<String>,
    pub session_timeout: Duration,
    pub last_heartbeat: Instant,
    /// Given to the member and not yet released by it.
    pub owned: BTreeSet<TopicPartition>,
    /// What the assignor wants the member to own.
    pub target: BTreeSet<TopicPartition>,
    /// The assignment last sent (its change moves the member epoch).
    sent: BTreeSet<TopicPartition>,
}

/// A heartbeat in domain terms.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub owned: BTreeSet<TopicPartition>,
    pub session_timeout: Duration,
    pub strategy: Option<Strategy>,
}

/// The coordinator's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    pub assignment: BTreeSet<TopicPartition>,
    /// True while partitions still have to move to or from this member.
    pub reconciling: bool,
}

/// Group states as DescribeGroup and ListGroups show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    Reconciling,
    Stable,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// Membership of one group.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub epoch: i32,
    pub strategy: Strategy,
    pub members: BTreeMap<String, Member>,
    /// Partition counts of the subscribed topics the target was computed from.
    topics: BTreeMap<String, u32>,
    joins: u64,
}

impl Group {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            epoch: 0,
            strategy: Strategy::default(),
            members: BTreeMap::new(),
            topics: BTreeMap::new(),
            joins: 0,
        }
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.members.values().all(|m| m.owned == m.target) {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    /// Member ids, sorted (for messages that name them).
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// The member that owns `tp`, if any.
    pub fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.members.values().find(|m| m.owned.contains(tp)).map(|m| m.id.as_str())
    }

    /// Handles a heartbeat (a join when `member_epoch` is 0). `partitions` gives a
    /// topic's partition count, `None` for a topic that does not exist.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        now: Instant,
        partitions: impl Fn(&str) -> Option<u32>,
    ) -> Result<HeartbeatReply> {
        let mut changed = false;
        let id = if hb.member_epoch == 0 {
            self.joins += 1;
            let id = if hb.member_id.is_empty() {
                let client = if hb.client_id.is_empty() { "consumer" } else { hb.client_id.as_str() };
                format!("{client}-{}-{}", unix_ms(), self.joins)
            } else {
                hb.member_id.clone()
            };
            if self.members.is_empty()
                && let Some(s) = hb.strategy
            {
                self.strategy = s;
            }
            // A join with a known id is a member fenced by a stale epoch (or a retry
            // whose answer was lost): it starts over, keeping only what it still
            // reports owning. Every join moves the group epoch.
            let old = self.members.remove(&id);
            changed = true;
            self.members.insert(
                id.clone(),
                Member {
                    id: id.clone(),
                    client_id: hb.client_id.clone(),
                    epoch: 0,
                    topics: hb.topics.clone(),
                    session_timeout: hb.session_timeout,
                    last_heartbeat: now,
                    owned: old.map(|m| m.owned).unwrap_or_default(),
                    target: BTreeSet::new(),
                    sent: BTreeSet::new(),
                },
            );
            id
        } else {
            let m = self
                .members
                .get_mut(&hb.member_id)
                .ok_or_else(|| GroupError::UnknownMember { group: self.id.clone(), member: hb.member_id.clone() })?;
            if hb.member_epoch != m.epoch {
                return Err(GroupError::FencedMemberEpoch {
                    group: self.id.clone(),
                    member: m.id.clone(),
                    epoch: hb.member_epoch,
                    current: m.epoch,
                });
            }
            m.last_heartbeat = now;
            m.session_timeout = hb.session_timeout;
            if m.topics != hb.topics {
                m.topics = hb.topics.clone();
                changed = true;
            }
            hb.member_id.clone()
        };
        // New or deleted topics, or new partitions, change the target too.
        let wanted: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        let sizes: BTreeMap<String, u32> =
            wanted.into_iter().filter_map(|t| partitions(t).map(|n| (t.clone(), n))).collect();
        if sizes != self.topics {
            self.topics = sizes;
            changed = true;
        }
        // The member can only give partitions up, never claim ones it was not given.
        if let Some(m) = self.members.get_mut(&id) {
            m.owned.retain(|tp| hb.owned.contains(tp));
        }
        if changed {
            self.rebalance();
        }
        Ok(self.reconcile(&id))
    }

    /// Bumps the group epoch and recomputes every member's target.
    fn rebalance(&mut self) {
        self.epoch += 1;
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), MemberSpec { topics: m.topics.clone(), owned: m.owned.clone() }))
            .collect();
        let mut target = assignor::assign(self.strategy, &specs, &self.topics);
        for (id, m) in self.members.iter_mut() {
            m.target = target.remove(id).unwrap_or_default();
        }
    }

    /// Computes what member `id` may own now.
    fn reconcile(&mut self, id: &str) -> HeartbeatReply {
        let others: BTreeSet<TopicPartition> =
            self.members.values().filter(|m| m.id != id).flat_map(|m| m.owned.iter().cloned()).collect();
        let epoch = self.epoch;
        let Some(m) = self.members.get_mut(id) else {
            return HeartbeatReply {
                member_id: id.to_string(),
                member_epoch: 0,
                assignment: BTreeSet::new(),
                reconciling: false,
            };
        };
        let mut assignment: BTreeSet<TopicPartition> = m.owned.intersection(&m.target).cloned().collect();
        assignment.extend(m.target.iter().filter(|tp| !others.contains(*tp)).cloned());
        m.owned.extend(assignment.iter().cloned());
        if assignment != m.sent || m.epoch == 0 {
            m.epoch = epoch;
            m.sent = assignment.clone();
        }
        HeartbeatReply {
            member_id: id.to_string(),
            member_epoch: m.epoch,
            reconciling: m.owned != m.target,
            assignment,
        }
    }

    /// Removes a member (leave or expired session); its partitions move to the others.
    pub fn remove(&mut self, id: &str) -> bool {
        let removed = self.members.remove(id).is_some();
        if removed {
            self.rebalance();
        }
        removed
    }

    /// Removes members whose session ran out; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now.saturating_duration_since(m.last_heartbeat) > m.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    /// Checks that a member may commit offsets for `partitions`: it is a member, its
    /// epoch is current, and it owns every one of them.
    pub fn check_commit<'a>(
        &self,
        member: &str,
        epoch: i32,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        if member.is_empty() {
            if !self.members.is_empty() {
                return Err(GroupError::GroupNotEmpty { group: self.id.clone(), members: self.member_ids() });
            }
            return Ok(());
        }
        let m = self
            .members
            .get(member)
            .ok_or_else(|| GroupError::UnknownMember { group: self.id.clone(), member: member.to_string() })?;
        if epoch != m.epoch {
            return Err(GroupError::FencedMemberEpoch {
                group: self.id.clone(),
                member: member.to_string(),
                epoch,
                current: m.epoch,
            });
        }
        for tp in partitions {
            if !m.owned.contains(tp) {
                return Err(GroupError::PartitionNotOwned {
                    group: self.id.clone(),
                    member: member.to_string(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(10);

    fn topics(name: &str, n: u32) -> impl Fn(&str) -> Option<u32> {
        let name = name.to_string();
        move |t| (t == name).then_some(n)
    }

    fn join(g: &mut Group, now: Instant) -> HeartbeatReply {
        let hb = Heartbeat {
            topics: ["t".to_string()].into(),
            session_timeout: SESSION,
            client_id: "c".into(),
            ..Default::default()
        };
        g.heartbeat(hb, now, topics("t", 4)).expect("join")
    }

    fn beat(g: &mut Group, r: &HeartbeatReply, owned: &BTreeSet<TopicPartition>, now: Instant) -> HeartbeatReply {
        let hb = Heartbeat {
            member_id: r.member_id.clone(),
            member_epoch: r.member_epoch,
            topics: ["t".to_string()].into(),
            owned: owned.clone(),
            session_timeout: SESSION,
            ..Default::default()
        };
        g.heartbeat(hb, now, topics("t", 4)).expect("heartbeat")
    }

    fn no_double_ownership(g: &Group) {
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for tp in &m.owned {
                assert!(seen.insert(tp.clone()), "{tp:?} owned twice: {g:?}");
            }
        }
    }

    #[test]
    fn second_member_gets_half_only_after_the_first_releases() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let a = join(&mut g, now);
        assert_eq!(a.assignment.len(), 4);
        let b = join(&mut g, now);
        // Nothing is free yet: b waits while a still owns everything.
        assert!(b.assignment.is_empty() && b.reconciling);
        no_double_ownership(&g);
        let a2 = beat(&mut g, &a, &a.assignment, now);
        assert_eq!(a2.assignment.len(), 2, "a is told to keep two");
        assert!(a2.reconciling);
        let a3 = beat(&mut g, &a2, &a2.assignment, now);
        assert!(!a3.reconciling);
        let b2 = beat(&mut g, &b, &b.assignment, now);
        assert_eq!(b2.assignment.len(), 2);
        assert!(b2.assignment.is_disjoint(&a3.assignment));
        assert_eq!(b2.member_epoch, g.epoch, "the member epoch is the epoch of its target");
        no_double_ownership(&g);
        assert_eq!(g.state(), GroupState::Stable);
    }

    #[test]
    fn stale_epochs_unknown_members_and_unowned_partitions_are_refused() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let a = join(&mut g, now);
        let tp = a.assignment.iter().next().cloned().expect("a partition");
        g.check_commit(&a.member_id, a.member_epoch, [&tp]).expect("owner may commit");
        let err = g.check_commit(&a.member_id, a.member_epoch - 1, [&tp]).unwrap_err();
        assert!(matches!(err, GroupError::FencedMemberEpoch { .. }), "{err}");
        let err = g.check_commit("ghost", 1, [&tp]).unwrap_err();
        assert!(matches!(err, GroupError::UnknownMember { .. }), "{err}");
        let other = TopicPartition::new("other", 0);
        let err = g.check_commit(&a.member_id, a.member_epoch, [&other]).unwrap_err();
        assert!(err.to_string().contains("does not own other-0"), "{err}");
        let err = g.check_commit("", 0, [&tp]).unwrap_err();
        assert!(err.to_string().contains(&a.member_id), "names the live member: {err}");
        let stale = Heartbeat { member_id: a.member_id.clone(), member_epoch: 99, ..Default::default() };
        assert!(matches!(g.heartbeat(stale, now, topics("t", 4)), Err(GroupError::FencedMemberEpoch { .. })));
    }

    #[test]
    fn expired_member_partitions_move_to_the_others() {
        let t0 = Instant::now();
        let mut g = Group::new("g");
        let a = join(&mut g, t0);
        let a = beat(&mut g, &a, &a.assignment, t0);
        let b = join(&mut g, t0);
        let a = beat(&mut g, &a, &a.assignment, t0);
        let a = beat(&mut g, &a, &a.assignment, t0);
        let b = beat(&mut g, &b, &b.assignment, t0);
        assert_eq!((a.assignment.len(), b.assignment.len()), (2, 2));
        // b stops heartbeating.
        let later = t0 + SESSION / 2;
        let a = beat(&mut g, &a, &a.assignment, later);
        assert!(g.expire(later).is_empty());
        let gone = t0 + SESSION + Duration::from_millis(1);
        assert_eq!(g.expire(gone), vec![b.member_id.clone()]);
        let a = beat(&mut g, &a, &a.assignment, gone);
        assert_eq!(a.assignment.len(), 4);
        no_double_ownership(&g);
    }

    #[test]
    fn heartbeats_renew_the_session_and_expiry_is_strictly_after_the_timeout() {
        let t0 = Instant::now();
        let mut g = Group::new("g");
        let a = join(&mut g, t0);
        // Exactly at the timeout the session still holds; a millisecond later it is over.
        assert!(g.expire(t0 + SESSION).is_empty());
        let beat_at = t0 + SESSION / 2;
        let a = beat(&mut g, &a, &a.assignment, beat_at);
        assert!(g.expire(t0 + SESSION + Duration::from_millis(1)).is_empty(), "the heartbeat renewed it");
        assert!(g.expire(beat_at + SESSION).is_empty());
        assert_eq!(g.expire(beat_at + SESSION + Duration::from_millis(1)), vec![a.member_id]);
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[test]
    fn a_heartbeat_may_change_the_session_timeout() {
        let t0 = Instant::now();
        let mut g = Group::new("g");
        let a = join(&mut g, t0);
        let short = Duration::from_secs(1);
        let hb = Heartbeat {
            member_id: a.member_id.clone(),
            member_epoch: a.member_epoch,
            topics: ["t".to_string()].into(),
            owned: a.assignment.clone(),
            session_timeout: short,
            ..Default::default()
        };
        g.heartbeat(hb, t0, topics("t", 4)).expect("heartbeat");
        assert_eq!(g.expire(t0 + short + Duration::from_millis(1)), vec![a.member_id], "the new timeout applies");
    }

    #[test]
    fn a_fenced_member_rejoins_with_its_id_and_gets_its_partitions_back() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let a = join(&mut g, now);
        assert_eq!(a.assignment.len(), 4);
        let hb = Heartbeat {
            member_id: a.member_id.clone(),
            member_epoch: 0,
            topics: ["t".to_string()].into(),
            session_timeout: SESSION,
            ..Default::default()
        };
        let again = g.heartbeat(hb, now, topics("t", 4)).expect("rejoin");
        assert_eq!(again.member_id, a.member_id);
        assert_eq!(again.assignment.len(), 4);
        assert!(again.member_epoch > a.member_epoch, "the old epoch is fenced");
        assert_eq!(g.members.len(), 1);
    }

    #[test]
    fn new_topics_are_picked_up() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let hb = Heartbeat { topics: ["later".to_string()].into(), session_timeout: SESSION, ..Default::default() };
        let r = g.heartbeat(hb.clone(), now, |_| None).expect("join");
        assert!(r.assignment.is_empty());
        let hb = Heartbeat { member_id: r.member_id, member_epoch: r.member_epoch, ..hb };
        let r = g.heartbeat(hb, now, |_| Some(3)).expect("beat");
        assert_eq!(r.assignment.len(), 3);
    }
}
