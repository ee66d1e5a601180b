//! The member's session with its coordinator: a background task that heartbeats, and the
//! state it shares with the poll loop.
//!
//! The task only talks to the coordinator; it never touches partitions. It records the
//! coordinator's latest assignment and wakes the poll loop, which revokes and assigns
//! (so rebalance callbacks run in the application's own `poll`). The poll loop reports
//! what it owns in `owned`, sent with every heartbeat, and asks for an immediate
//! heartbeat after releasing partitions, so that they move on without waiting a full
//! interval. Heartbeats and commits share `rpc`, so a commit always carries the epoch
//! of the latest heartbeat answer.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use sluice_proto::v1 as pb;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::{GroupConfig, Strategy, TopicPartition, link::CoordinatorLink};
use crate::error::ClientError;

/// Heartbeat interval while the coordinator reports the member's assignment is still
/// moving.
const RECONCILING_INTERVAL: Duration = Duration::from_millis(100);

/// Wait before retrying a heartbeat that failed for a transient reason.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// State shared by the heartbeat task and the poll loop.
#[derive(Debug, Default)]
pub struct SessionState {
    pub member_id: String,
    pub member_epoch: i32,
    /// The coordinator's latest assignment for this member.
    pub assignment: BTreeSet<TopicPartition>,
    /// What the poll loop owns (reported in heartbeats).
    pub owned: BTreeSet<TopicPartition>,
    /// Set when the member was fenced: the poll loop must drop everything it owns.
    pub lost: bool,
    /// A failure the heartbeat task cannot recover from; `poll` returns it.
    pub fatal: Option<ClientError>,
    pub heartbeat_interval: Duration,
}

/// The session: shared state plus the signals between the two sides.
#[derive(Debug, Default)]
pub struct Session {
    state: Mutex<SessionState>,
    /// Serializes heartbeats and commits (see the module doc).
    pub rpc: tokio::sync::Mutex<()>,
    /// Heartbeat task → poll loop: the assignment changed.
    pub changed: Notify,
    /// Poll loop → heartbeat task: heartbeat now.
    pub wake: Notify,
    /// Close → heartbeat task: stop.
    pub stop: Notify,
}

impl Session {
    /// Locks the shared state. A poisoned lock only means a panic elsewhere; the
    /// state itself stays consistent field by field, so keep going.
    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn strategy(s: Strategy) -> pb::AssignmentStrategy {
    match s {
        Strategy::Range => pb::AssignmentStrategy::Range,
        Strategy::RoundRobin => pb::AssignmentStrategy::RoundRobin,
        Strategy::CooperativeSticky => pb::AssignmentStrategy::CooperativeSticky,
    }
}

/// Heartbeats until `session.stop` is notified; finds the coordinator again when it
/// moved.
pub async fn run(
    session: Arc<Session>,
    link: Arc<CoordinatorLink>,
    group: String,
    topics: Vec<String>,
    config: GroupConfig,
) {
    loop {
        let mut groups = link.current().groups();
        let req = {
            let s = session.state();
            pb::HeartbeatRequest {
                group: group.clone(),
                member_id: s.member_id.clone(),
                member_epoch: s.member_epoch,
                topics: topics.clone(),
                owned: s
                    .owned
                    .iter()
                    .map(|tp| pb::TopicPartition { topic: tp.topic.clone(), partition: tp.partition })
                    .collect(),
                session_timeout_ms: config.session_timeout.as_millis() as u32,
                strategy: strategy(config.strategy) as i32,
                client_id: config.client_id.clone(),
            }
        };
        let result = {
            let _rpc = session.rpc.lock().await;
            let r = groups.heartbeat(req).await.map(|r| r.into_inner()).map_err(ClientError::from);
            if let Err(e) = &r {
                link.after_error(e).await;
            }
            // Update under the rpc lock, so a commit never sees a half-applied answer.
            apply(&session, r)
        };
        let wait = match result {
            Step::Wait(d) => d,
            Step::Now => continue,
            Step::Stop => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = session.wake.notified() => {}
            _ = session.stop.notified() => return,
        }
    }
}

enum Step {
    Wait(Duration),
    Now,
    Stop,
}

fn apply(session: &Session, r: Result<pb::HeartbeatResponse, ClientError>) -> Step {
    let mut s = session.state();
    match r {
        Ok(r) => {
            let assignment: BTreeSet<TopicPartition> = r
                .assignment
                .into_iter()
                .map(|tp| TopicPartition { topic: tp.topic, partition: tp.partition })
                .collect();
            if s.member_id != r.member_id {
                info!(member = %r.member_id, epoch = r.member_epoch, "joined the group");
            }
            s.member_id = r.member_id;
            s.member_epoch = r.member_epoch;
            s.heartbeat_interval = Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(10)));
            let changed = assignment != s.assignment;
            s.assignment = assignment;
            // While partitions are moving, ask again soon: the partitions this member
            // waits for are handed over as soon as their old owner releases them.
            let interval =
                if r.reconciling { s.heartbeat_interval.min(RECONCILING_INTERVAL) } else { s.heartbeat_interval };
            drop(s);
            if changed {
                debug!("assignment changed");
                session.changed.notify_one();
            }
            Step::Wait(interval)
        }
        Err(e) if matches!(e.kind(), Some(pb::ErrorCode::UnknownMemberId | pb::ErrorCode::FencedMemberEpoch)) => {
            warn!(member = %s.member_id, error = %e, "fenced by the coordinator; joining again");
            // A stale epoch rejoins under the same id (the coordinator then frees its
            // partitions at once); an unknown member joins as a new one.
            if e.kind() == Some(pb::ErrorCode::UnknownMemberId) {
                s.member_id.clear();
            }
            s.member_epoch = 0;
            s.assignment.clear();
            s.owned.clear();
            s.lost = true;
            drop(s);
            session.changed.notify_one();
            Step::Now
        }
        Err(e) if e.is_retriable() || matches!(e, ClientError::Transport(_)) => {
            debug!(error = %e, "heartbeat failed; retrying");
            Step::Wait(RETRY_BACKOFF.min(s.heartbeat_interval.max(Duration::from_millis(10))))
        }
        Err(e) => {
            warn!(error = %e, "heartbeat refused; the consumer stops");
            s.fatal = Some(e);
            drop(s);
            session.changed.notify_one();
            Step::Stop
        }
    }
}
