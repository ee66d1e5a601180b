//! Kafka's classic group protocol on the coordinator, beside the KIP-848 style groups:
//! joins and syncs wait (bounded by the round's deadline) for the round to complete,
//! polling [`sluice_groups::ClassicGroup`] after every change. A group id is one kind or
//! the other while it has members; committed offsets are shared (the same records of
//! `__consumer_offsets`, whichever protocol committed them).

use std::{collections::BTreeSet, time::Duration};

use sluice_groups::{ClassicError, ClassicGroup, Join, JoinResult, TopicPartition};
use tokio::time::Instant;
use tracing::info;

use super::Coordinator;
use crate::error::{BrokerError, Result};

/// How often a waiting join or sync looks again when nothing notified it (round
/// deadlines pass without an event).
const POLL: Duration = Duration::from_millis(50);

/// A refusal of the classic protocol, or a broker failure.
#[derive(Debug)]
pub enum ClassicRefusal {
    Classic(ClassicError),
    Broker(BrokerError),
}

impl From<ClassicError> for ClassicRefusal {
    fn from(e: ClassicError) -> Self {
        ClassicRefusal::Classic(e)
    }
}

impl From<BrokerError> for ClassicRefusal {
    fn from(e: BrokerError) -> Self {
        ClassicRefusal::Broker(e)
    }
}

/// A classic member's commit refusal as a broker error (OffsetCommit shares one path).
pub(super) fn commit_refusal(group: &str, member: &str, e: ClassicError) -> BrokerError {
    match e {
        ClassicError::IllegalGeneration { got, current } => {
            BrokerError::FencedMemberEpoch { group: group.into(), member: member.into(), epoch: got, current }
        }
        ClassicError::RebalanceInProgress => BrokerError::RebalanceInProgress(group.into()),
        _ => BrokerError::UnknownMember { group: group.into(), member: member.into() },
    }
}

type Outcome<T> = std::result::Result<T, ClassicRefusal>;

impl Coordinator {
    fn initial_delay(&self) -> Duration {
        self.config.initial_rebalance_delay
    }

    /// JoinGroup: adds or refreshes the member, then waits for the round to complete.
    pub async fn classic_join(&self, group: &str, mut join: Join) -> Outcome<JoinResult> {
        self.serve(group)?;
        let c = &self.config;
        join.session_timeout = join.session_timeout.clamp(c.min_session_timeout, c.max_session_timeout);
        join.rebalance_timeout = join.rebalance_timeout.max(join.session_timeout).min(c.max_session_timeout);
        let id = {
            let mut state = self.lock()?;
            if state.groups.get(group).is_some_and(|g| !g.members.is_empty()) {
                return Err(ClassicError::InconsistentProtocol(format!(
                    "group '{group}' has members of the consumer protocol (KIP-848); the classic protocol cannot join it"
                ))
                .into());
            }
            let g = state.classic.entry(group.to_string()).or_insert_with(|| ClassicGroup::new(group));
            g.join(join, std::time::Instant::now(), self.initial_delay())?
        };
        self.classic_changed.notify_waiters();
        let deadline = Instant::now() + c.max_session_timeout + self.initial_delay();
        loop {
            let notified = self.classic_changed.notified();
            {
                let mut state = self.lock()?;
                let g = state.classic.get_mut(group).ok_or_else(|| ClassicError::UnknownMember(id.clone()))?;
                let generation = g.generation;
                if let Some(r) = g.poll_join(&id, std::time::Instant::now())? {
                    drop(state);
                    if r.generation == generation {
                        info!(group, member = %r.member_id, generation = r.generation, "classic member joined");
                    }
                    self.classic_changed.notify_waiters();
                    return Ok(r);
                }
            }
            if Instant::now() >= deadline {
                return Err(ClassicError::RebalanceInProgress.into());
            }
            let _ = tokio::time::timeout(POLL, notified).await;
        }
    }

    /// SyncGroup: the leader's assignments complete the round; every member waits for
    /// its own.
    pub async fn classic_sync(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>, BTreeSet<TopicPartition>)>,
    ) -> Outcome<Vec<u8>> {
        self.serve(group)?;
        {
            let mut state = self.lock()?;
            let g = state.classic.get_mut(group).ok_or_else(|| ClassicError::UnknownMember(member.into()))?;
            g.sync(member, generation, assignments, std::time::Instant::now())?;
        }
        self.classic_changed.notify_waiters();
        let deadline = Instant::now() + self.config.max_session_timeout;
        loop {
            let notified = self.classic_changed.notified();
            {
                let state = self.lock()?;
                let g = state.classic.get(group).ok_or_else(|| ClassicError::UnknownMember(member.into()))?;
                if let Some(a) = g.poll_sync(member, generation)? {
                    return Ok(a);
                }
            }
            if Instant::now() >= deadline {
                return Err(ClassicError::RebalanceInProgress.into());
            }
            let _ = tokio::time::timeout(POLL, notified).await;
        }
    }

    pub fn classic_heartbeat(&self, group: &str, member: &str, generation: i32) -> Outcome<()> {
        self.serve(group)?;
        let mut state = self.lock()?;
        let g = state.classic.get_mut(group).ok_or_else(|| ClassicError::UnknownMember(member.into()))?;
        Ok(g.heartbeat(member, generation, std::time::Instant::now())?)
    }

    pub fn classic_leave(&self, group: &str, member: &str) -> Outcome<()> {
        self.serve(group)?;
        {
            let mut state = self.lock()?;
            let g = state.classic.get_mut(group).ok_or_else(|| ClassicError::UnknownMember(member.into()))?;
            g.leave(member, std::time::Instant::now())?;
            info!(group, member, "classic member left");
        }
        self.classic_changed.notify_waiters();
        Ok(())
    }

    /// Removes classic members whose session ran out (with the KIP-848 ones).
    pub(super) fn expire_classic(&self) {
        let Ok(mut state) = self.lock() else { return };
        let now = std::time::Instant::now();
        let mut changed = false;
        for (id, g) in state.classic.iter_mut() {
            for m in g.expire(now) {
                changed = true;
                info!(group = %id, member = %m, "classic member session expired; the group rebalances");
            }
        }
        state.classic.retain(|_, g| !g.is_idle());
        drop(state);
        if changed {
            self.classic_changed.notify_waiters();
        }
    }

    /// A snapshot of a classic group, if one with that id exists.
    pub fn classic_group(&self, group: &str) -> Result<Option<ClassicGroup>> {
        Ok(self.lock()?.classic.get(group).cloned())
    }

    /// Every classic group's id.
    pub fn classic_groups(&self) -> Result<Vec<ClassicGroup>> {
        Ok(self.lock()?.classic.values().cloned().collect())
    }
}
