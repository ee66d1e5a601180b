//! Membership on the coordinator: joins and heartbeats (session timeouts clamped to
//! the configured range), leaves, session expiry, and the check that a member may
//! commit. The rules themselves are [`sluice_groups::Group`]'s.

use std::time::{Duration, Instant};

use sluice_groups::{Group, Heartbeat, HeartbeatReply, TopicPartition};
use tracing::info;

use super::Coordinator;
use crate::error::{BrokerError, Result};

/// What a heartbeat returns to the adapter.
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    pub reply: HeartbeatReply,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
}

impl Coordinator {
    /// Handles a member heartbeat (join when `member_epoch == 0`).
    pub fn heartbeat(&self, group: &str, mut hb: Heartbeat) -> Result<HeartbeatOutcome> {
        self.serve(group)?;
        let c = &self.config;
        hb.session_timeout = if hb.session_timeout.is_zero() {
            c.default_session_timeout
        } else {
            hb.session_timeout.clamp(c.min_session_timeout, c.max_session_timeout)
        };
        let session_timeout = hb.session_timeout;
        let mut state = self.lock()?;
        if state.classic.get(group).is_some_and(|g| !g.members.is_empty()) {
            return Err(BrokerError::InvalidRequest(format!(
                "group '{group}' has members of Kafka's classic protocol (JoinGroup); use another group id"
            )));
        }
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
        self.serve(group)?;
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
        self.expire_classic();
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

    /// Checks that `member` (at `epoch`) may commit offsets of `tps`; without a member
    /// id, that the group has no members.
    pub(super) fn check_commit<'a>(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        let state = self.lock()?;
        if let Some(c) = state.classic.get(group).filter(|c| !c.members.is_empty() || !member.is_empty()) {
            // A classic member commits with its generation as the epoch.
            let classic_member = state.groups.get(group).is_none_or(|g| !g.members.contains_key(member));
            if classic_member {
                return c.check_commit(member, epoch).map_err(|e| super::classic::commit_refusal(group, member, e));
            }
        }
        match state.groups.get(group) {
            Some(g) => Ok(g.check_commit(member, epoch, tps)?),
            None if member.is_empty() => Ok(()),
            None => Err(BrokerError::UnknownMember { group: group.to_string(), member: member.to_string() }),
        }
    }

    /// Refuses while the group has live members (deletes and resets need it empty).
    pub(super) fn refuse_if_live(&self, group: &str) -> Result<()> {
        let state = self.lock()?;
        if let Some(c) = state.classic.get(group).filter(|c| !c.members.is_empty()) {
            return Err(BrokerError::GroupNotEmpty {
                group: group.to_string(),
                members: c.members.keys().cloned().collect(),
            });
        }
        match state.groups.get(group) {
            Some(g) if !g.members.is_empty() => {
                Err(BrokerError::GroupNotEmpty { group: group.to_string(), members: g.member_ids() })
            }
            _ => Ok(()),
        }
    }
}
