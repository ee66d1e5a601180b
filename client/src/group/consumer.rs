//! [`GroupConsumer`]: a consumer whose partitions are assigned by the group coordinator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{Client, GroupConfig, GroupConsumer};
//! let client = Client::connect("127.0.0.1:9092").await?;
//! let mut consumer = GroupConsumer::subscribe(client, &["orders"], "billing", GroupConfig::default()).await?;
//! loop {
//!     for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
//!         println!("{}-{}@{}", record.topic, record.partition, record.offset);
//!     }
//! }
//! # }
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use sluice_proto::v1 as pb;
use tokio::{task::JoinHandle, time::Instant};
use tracing::{debug, warn};

use super::{
    GroupConfig, RebalanceListener, TopicPartition,
    link::CoordinatorLink,
    session::{self, Session},
};
use crate::{
    connection::Client,
    consumer::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, StartOffset},
    error::{ClientError, Result},
};

/// Wait before fetching (or applying an assignment change) again after a transient
/// failure.
const FETCH_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A member of a consumer group. Heartbeats run in the background; assignment changes,
/// auto-commits and rebalance callbacks happen inside [`GroupConsumer::poll`]. Call
/// [`GroupConsumer::close`] to commit (with auto-commit) and leave at once; dropping
/// the consumer leaves too, without committing.
pub struct GroupConsumer {
    group: String,
    coordinator: Arc<CoordinatorLink>,
    config: GroupConfig,
    session: Arc<Session>,
    heartbeat: Option<JoinHandle<()>>,
    inner: Consumer,
    owned: BTreeSet<TopicPartition>,
    listener: Option<Box<dyn RebalanceListener>>,
    next_auto_commit: Option<Instant>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").field("group", &self.group).field("owned", &self.owned).finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Joins `group`, subscribed to `topics`, and starts heartbeating. Partitions arrive
    /// during the following polls.
    pub async fn subscribe(client: Client, topics: &[&str], group: &str, config: GroupConfig) -> Result<Self> {
        if topics.is_empty() {
            return Err(ClientError::InvalidArgument("subscribe to at least one topic".into()));
        }
        let coordinator = CoordinatorLink::connect(client.clone(), group).await?;
        let session = Arc::new(Session::default());
        let heartbeat = tokio::spawn(session::run(
            session.clone(),
            coordinator.clone(),
            group.to_string(),
            topics.iter().map(|t| t.to_string()).collect(),
            config.clone(),
        ));
        // A committed offset that retention has since deleted resets the same way as
        // a partition without one.
        let inner = Consumer::new(
            client,
            ConsumerConfig { auto_offset_reset: config.auto_offset_reset, ..config.consumer.clone() },
        );
        Ok(Self {
            group: group.to_string(),
            coordinator,
            next_auto_commit: config.auto_commit_interval.map(|i| Instant::now() + i),
            config,
            session,
            heartbeat: Some(heartbeat),
            inner,
            owned: BTreeSet::new(),
            listener: None,
        })
    }

    /// Sets the callbacks told about assigned, revoked and lost partitions.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The member id the coordinator gave (empty until joined).
    pub fn member_id(&self) -> String {
        self.session.state().member_id.clone()
    }

    /// Partitions this member reads now.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    /// Next offset to be returned for an owned partition.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.inner.position(&tp.topic, tp.partition)
    }

    /// Moves the position of an owned partition (the next commit stores it).
    pub async fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        if !self.owned.contains(tp) {
            return Err(ClientError::InvalidArgument(format!("{tp} is not assigned to this member")));
        }
        self.inner.seek(&tp.topic, tp.partition, StartOffset::Offset(offset)).await
    }

    /// Positions of every owned partition: what a commit stores.
    pub fn positions(&self) -> BTreeMap<TopicPartition, u64> {
        self.owned.iter().filter_map(|tp| Some((tp.clone(), self.position(tp)?))).collect()
    }

    /// Returns the next records, waiting up to `timeout`; applies assignment changes
    /// (running the rebalance listener) and auto-commits on the way.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            // Registered before the state is read, so a change that lands in between
            // still wakes the wait below.
            let session = self.session.clone();
            let changed = session.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.reconcile().await {
                Ok(()) => {}
                // The coordinator or a partition leader unreachable for a moment (a
                // broker restarting): try again on the next turn.
                Err(e) if e.is_retriable() => {
                    debug!(group = %self.group, error = %e, "assignment change failed; retrying");
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(FETCH_RETRY_BACKOFF.min(left)).await;
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            self.maybe_auto_commit().await;
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut until = deadline;
            if let Some(t) = self.next_auto_commit {
                until = until.min(t.max(now + Duration::from_millis(1)));
            }
            tokio::select! {
                records = self.inner.poll(until - now) => match records {
                    Ok(records) if !records.is_empty() => return Ok(records),
                    Ok(_) => {}
                    // The broker restarting or a connection dropping: the fetch is
                    // retried from the same position (the heartbeat task deals with the
                    // membership side).
                    Err(e) if e.is_retriable() => {
                        debug!(group = %self.group, error = %e, "fetch failed; retrying");
                        tokio::time::sleep(FETCH_RETRY_BACKOFF.min(deadline - now)).await;
                    }
                    Err(e) => return Err(e),
                },
                _ = &mut changed => {}
            }
        }
    }

    /// Applies the coordinator's latest assignment: drops lost partitions, revokes (with
    /// a commit) what moved away, then starts what was added at its committed offset.
    async fn reconcile(&mut self) -> Result<()> {
        let (wanted, lost) = {
            let mut s = self.session.state();
            if let Some(e) = s.fatal.clone() {
                return Err(e);
            }
            (s.assignment.clone(), std::mem::take(&mut s.lost))
        };
        if lost && !self.owned.is_empty() {
            let parts: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            warn!(group = %self.group, partitions = parts.len(), "partitions lost");
            if let Some(l) = self.listener.as_mut() {
                l.on_lost(&parts);
            }
            for tp in &parts {
                self.inner.unassign(&tp.topic, tp.partition);
            }
            self.owned.clear();
        }
        let revoked: Vec<TopicPartition> = self.owned.difference(&wanted).cloned().collect();
        if !revoked.is_empty() {
            let mut commit: BTreeMap<TopicPartition, u64> =
                revoked.iter().filter_map(|tp| Some((tp.clone(), self.position(tp)?))).collect();
            if let Some(l) = self.listener.as_mut() {
                l.on_revoked(&revoked, &mut commit);
            }
            if !commit.is_empty()
                && let Err(e) = self.commit_offsets(commit).await
            {
                warn!(group = %self.group, error = %e, "commit before revocation failed");
            }
            for tp in &revoked {
                self.inner.unassign(&tp.topic, tp.partition);
                self.owned.remove(tp);
            }
            debug!(group = %self.group, ?revoked, "partitions revoked");
            self.session.state().owned = self.owned.clone();
            // Tell the coordinator now, so the partitions move without waiting.
            self.session.wake.notify_one();
        }
        let added: Vec<TopicPartition> = wanted.difference(&self.owned).cloned().collect();
        if !added.is_empty() {
            let committed = self.committed(&added).await?;
            for tp in &added {
                let start = match committed.get(tp) {
                    Some(&offset) => StartOffset::Offset(offset),
                    None => match self.config.auto_offset_reset {
                        AutoOffsetReset::Earliest => StartOffset::Earliest,
                        AutoOffsetReset::Latest => StartOffset::Latest,
                        AutoOffsetReset::None => {
                            return Err(ClientError::NoCommittedOffset {
                                group: self.group.clone(),
                                topic: tp.topic.clone(),
                                partition: tp.partition,
                            });
                        }
                    },
                };
                self.inner.assign(&tp.topic, tp.partition, start).await?;
                self.owned.insert(tp.clone());
            }
            debug!(group = %self.group, ?added, "partitions assigned");
            self.session.state().owned = self.owned.clone();
            if let Some(l) = self.listener.as_mut() {
                l.on_assigned(&added);
            }
        }
        Ok(())
    }

    async fn committed(&mut self, tps: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, u64>> {
        let req = pb::OffsetFetchRequest {
            group: self.group.clone(),
            partitions: tps
                .iter()
                .map(|tp| pb::TopicPartition { topic: tp.topic.clone(), partition: tp.partition })
                .collect(),
        };
        let r = match self.coordinator.current().groups().offset_fetch(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = ClientError::from(s);
                self.coordinator.after_error(&e).await;
                return Err(e);
            }
        };
        Ok(r.offsets
            .into_iter()
            .map(|o| (TopicPartition { topic: o.topic, partition: o.partition }, o.offset))
            .collect())
    }

    async fn maybe_auto_commit(&mut self) {
        let (Some(at), Some(every)) = (self.next_auto_commit, self.config.auto_commit_interval) else { return };
        if Instant::now() < at {
            return;
        }
        self.next_auto_commit = Some(Instant::now() + every);
        if let Err(e) = self.commit_sync().await {
            warn!(group = %self.group, error = %e, "auto-commit failed");
        }
    }

    /// Commits the positions of every owned partition and waits for the coordinator.
    pub async fn commit_sync(&mut self) -> Result<()> {
        self.commit_offsets(self.positions()).await
    }

    /// Commits the positions of every owned partition in the background; the handle
    /// tells the outcome.
    pub fn commit_async(&self) -> JoinHandle<Result<()>> {
        let (session, client, group, offsets) =
            (self.session.clone(), self.coordinator.clone(), self.group.clone(), self.positions());
        tokio::spawn(async move { commit(&session, &client, &group, offsets).await })
    }

    /// Commits the given offsets (each the offset of the next record to read).
    pub async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, u64>) -> Result<()> {
        commit(&self.session, &self.coordinator, &self.group, offsets).await
    }

    /// Commits (with auto-commit), leaves the group and stops heartbeating.
    pub async fn close(mut self) -> Result<()> {
        if self.config.auto_commit_interval.is_some()
            && let Err(e) = self.commit_sync().await
        {
            warn!(group = %self.group, error = %e, "final commit failed");
        }
        self.stop_heartbeat().await;
        self.leave().await
    }

    async fn stop_heartbeat(&mut self) {
        self.session.stop.notify_one();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.await;
        }
    }

    async fn leave(&mut self) -> Result<()> {
        let member_id = std::mem::take(&mut self.session.state().member_id);
        if member_id.is_empty() {
            return Ok(());
        }
        let req = pb::LeaveGroupRequest { group: self.group.clone(), member_id };
        self.coordinator.current().groups().leave_group(req).await?;
        Ok(())
    }
}

async fn commit(
    session: &Session,
    link: &CoordinatorLink,
    group: &str,
    offsets: BTreeMap<TopicPartition, u64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let _rpc = session.rpc.lock().await;
    let (member_id, member_epoch) = {
        let s = session.state();
        (s.member_id.clone(), s.member_epoch)
    };
    if member_id.is_empty() {
        return Err(ClientError::InvalidArgument(format!("not a member of group '{group}' yet; nothing to commit")));
    }
    let req = pb::OffsetCommitRequest {
        group: group.to_string(),
        member_id,
        member_epoch,
        offsets: offsets
            .into_iter()
            .map(|(tp, offset)| pb::CommittedOffset {
                topic: tp.topic,
                partition: tp.partition,
                offset,
                metadata: String::new(),
                commit_time_ms: 0,
            })
            .collect(),
    };
    if let Err(s) = link.current().groups().offset_commit(req).await {
        let e = ClientError::from(s);
        link.after_error(&e).await;
        return Err(e);
    }
    Ok(())
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let Some(h) = self.heartbeat.take() else { return };
        h.abort();
        // Leave at once rather than letting the session time out, when a runtime is
        // there to send the request.
        let member_id = std::mem::take(&mut self.session.state().member_id);
        if member_id.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut groups = self.coordinator.current().groups();
            let req = pb::LeaveGroupRequest { group: self.group.clone(), member_id };
            rt.spawn(async move {
                let _ = groups.leave_group(req).await;
            });
        }
    }
}
