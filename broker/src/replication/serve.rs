//! The leader's side of `sluice.v1.Replication`.
//!
//! ReplicaFetch: for each partition of the request, the leader checks that it leads it
//! at the epoch the follower names (an older one is FENCED_LEADER_EPOCH, a newer one
//! UNKNOWN_LEADER_EPOCH: this broker is stale) and that the asker is a replica; records
//! the fetch offset as the follower's log end offset and applies the high watermark
//! rule; then answers with a diverging epoch (KIP-320) when the follower's last fetched
//! epoch ends earlier on the leader than the fetch offset, or with the batches from the
//! fetch offset up to the log end. When no partition has anything to say, it waits up
//! to the request's `max_wait_ms` (at most [`REPLICA_FETCH_MAX_WAIT`]) for an append.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use sluice_log::{PartitionLog, PartitionStore, UNDEFINED_EPOCH};
use sluice_proto::v1::{self as pb, ReplicaError};
use tokio::time::timeout_at;
use tracing::debug;

use super::{
    REPLICA_FETCH_MAX_WAIT, REPLICA_FETCH_PARTITION_MAX_BYTES, REPLICA_FETCH_RESPONSE_MAX_BYTES,
    leader::{LeaderPartition, lock},
};
use crate::{Broker, error::BrokerError, metadata::PartitionPlacement};

/// A partition of a ReplicaFetch that passed the checks.
struct Fetching {
    topic: String,
    partition: u32,
    fetch_offset: u64,
    last_fetched_epoch: i32,
    leader_epoch: i32,
    log: Arc<PartitionLog>,
}

type Refusal = (ReplicaError, String);

/// The leader's checks of one asked partition, common to both RPCs: leads it, at the
/// epoch the asker knows, and the asker is one of its replicas. Returns its log, its
/// placement, its leader epoch and its min ISR.
fn check(
    broker: &Broker,
    placements: &mut HashMap<String, Vec<PartitionPlacement>>,
    replica_id: i32,
    topic: &str,
    partition: u32,
    current_leader_epoch: i32,
) -> Result<(Arc<PartitionLog>, PartitionPlacement, u32), Refusal> {
    let (min_isr, log) =
        broker.replica_log(topic, partition).map_err(|e| (ReplicaError::UnknownPartition, e.to_string()))?;
    if let Err(e) = broker.metadata().check_leader(topic, partition) {
        return Err((ReplicaError::NotLeader, e.to_string()));
    }
    if !placements.contains_key(topic) {
        let count = broker.partition_count(topic).unwrap_or(0);
        placements.insert(topic.to_string(), broker.metadata().placement(topic, count));
    }
    let placement = placements
        .get(topic)
        .and_then(|ps| ps.iter().find(|p| p.partition == partition))
        .cloned()
        .ok_or_else(|| (ReplicaError::UnknownPartition, format!("{topic}-{partition} has no placement")))?;
    let epoch = placement.leader_epoch;
    if current_leader_epoch < epoch {
        return Err((
            ReplicaError::FencedLeaderEpoch,
            format!("{topic}-{partition}: leader epoch {current_leader_epoch} is older than the leader's {epoch}"),
        ));
    }
    if current_leader_epoch > epoch {
        return Err((
            ReplicaError::UnknownLeaderEpoch,
            format!("{topic}-{partition}: leader epoch {current_leader_epoch} is newer than this leader's {epoch}"),
        ));
    }
    if !placement.replicas.contains(&replica_id) {
        return Err((
            ReplicaError::NotAReplica,
            format!("broker {replica_id} is not a replica of {topic}-{partition} (replicas {:?})", placement.replicas),
        ));
    }
    Ok((log, placement, min_isr))
}

fn refused(topic: String, partition: u32, (error, message): Refusal) -> pb::ReplicaFetchPartitionData {
    pb::ReplicaFetchPartitionData {
        topic,
        partition,
        error: error as i32,
        error_message: message,
        ..Default::default()
    }
}

/// Serves one ReplicaFetch.
pub async fn replica_fetch(broker: &Broker, req: pb::ReplicaFetchRequest) -> pb::ReplicaFetchResponse {
    let now = Instant::now();
    let wait = std::time::Duration::from_millis(u64::from(req.max_wait_ms)).min(REPLICA_FETCH_MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let per_partition = match req.partition_max_bytes {
        0 => REPLICA_FETCH_PARTITION_MAX_BYTES,
        n => (n as usize).min(8 * REPLICA_FETCH_PARTITION_MAX_BYTES),
    };
    // Subscribed before anything is read, so that an append after the read wakes us.
    let mut appended = broker.leaders().watch_appended();
    let mut placements = HashMap::new();
    let mut refusals = Vec::new();
    let mut fetching = Vec::with_capacity(req.partitions.len());
    for p in req.partitions {
        match check(broker, &mut placements, req.replica_id, &p.topic, p.partition, p.current_leader_epoch) {
            Err(r) => refusals.push(refused(p.topic, p.partition, r)),
            Ok((log, placement, min_isr)) => {
                let state = broker.leaders().refresh(&p.topic, &placement, min_isr, now);
                record(broker, &state, &log, req.replica_id, p.fetch_offset, now);
                fetching.push(Fetching {
                    topic: p.topic,
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    last_fetched_epoch: p.last_fetched_epoch,
                    leader_epoch: placement.leader_epoch,
                    log,
                });
            }
        }
    }
    let metrics = broker.metrics();
    metrics.replica_fetch_served.inc();
    loop {
        appended.borrow_and_update();
        let (answers, news) = read_all(&fetching, per_partition);
        if news || !refusals.is_empty() || tokio::time::Instant::now() >= deadline || broker.is_stopping() {
            let bytes: usize = answers.iter().map(|a| a.batches.len()).sum();
            metrics.replica_fetch_bytes_served.inc_by(bytes as u64);
            debug!(bytes, refused = refusals.len(), "replica fetch answered");
            let mut partitions = refusals;
            partitions.extend(answers);
            return pb::ReplicaFetchResponse { partitions };
        }
        if let Ok(Err(_)) = timeout_at(deadline, appended.changed()).await {
            // The broker is going away.
            return pb::ReplicaFetchResponse { partitions: refusals };
        }
    }
}

/// A follower's fetch offset is its log end offset: record it and apply the rule.
fn record(
    broker: &Broker,
    state: &Mutex<LeaderPartition>,
    log: &PartitionLog,
    replica: i32,
    offset: u64,
    now: Instant,
) {
    let mut s = lock(state);
    s.record_fetch(replica, offset, log.log_end_offset(), now);
    broker.update_high_watermark(log, &s);
}

/// Every partition's answer, and whether any has something new (data, a divergence,
/// an error).
fn read_all(fetching: &[Fetching], per_partition: usize) -> (Vec<pb::ReplicaFetchPartitionData>, bool) {
    let mut news = false;
    let mut total = 0usize;
    let answers = fetching
        .iter()
        .map(|f| {
            let a = read_one(f, if total >= REPLICA_FETCH_RESPONSE_MAX_BYTES { 0 } else { per_partition });
            total += a.batches.len();
            news |= !a.batches.is_empty() || a.diverging_epoch.is_some() || a.error != ReplicaError::None as i32;
            a
        })
        .collect();
    (answers, news)
}

fn read_one(f: &Fetching, max_bytes: usize) -> pb::ReplicaFetchPartitionData {
    let o = f.log.offsets();
    let mut a = pb::ReplicaFetchPartitionData {
        topic: f.topic.clone(),
        partition: f.partition,
        high_watermark: o.high_watermark,
        log_start_offset: o.log_start,
        log_end_offset: o.log_end,
        leader_epoch: f.leader_epoch,
        ..Default::default()
    };
    if f.last_fetched_epoch >= 0 {
        match f.log.end_offset_for_epoch(f.last_fetched_epoch) {
            Ok((epoch, _)) if epoch == UNDEFINED_EPOCH => {
                // The leader has no epoch this old: everything the follower has diverged.
                a.diverging_epoch = Some(pb::EpochEndOffset { epoch, end_offset: o.log_start as i64 });
                return a;
            }
            Ok((epoch, end)) if epoch < f.last_fetched_epoch || end < f.fetch_offset as i64 => {
                a.diverging_epoch = Some(pb::EpochEndOffset { epoch, end_offset: end });
                return a;
            }
            Ok(_) => {}
            Err(e) => {
                a.error = ReplicaError::Storage as i32;
                a.error_message = e.to_string();
                return a;
            }
        }
    }
    if f.fetch_offset < o.log_start || f.fetch_offset > o.log_end {
        a.error = ReplicaError::OffsetOutOfRange as i32;
        a.error_message = format!(
            "{}-{}: fetch offset {} is outside the leader's log {}..{}",
            f.topic, f.partition, f.fetch_offset, o.log_start, o.log_end
        );
        return a;
    }
    if max_bytes == 0 || f.fetch_offset == o.log_end {
        return a;
    }
    match f.log.read_to_log_end(f.fetch_offset as i64, max_bytes) {
        Ok(r) => a.batches = r.batches,
        Err(e) => {
            a.error = ReplicaError::Storage as i32;
            a.error_message = BrokerError::from(e).to_string();
        }
    }
    a
}

/// Serves one OffsetForLeaderEpoch (KIP-279).
pub fn offset_for_leader_epoch(
    broker: &Broker,
    req: pb::OffsetForLeaderEpochRequest,
) -> pb::OffsetForLeaderEpochResponse {
    let mut placements = HashMap::new();
    let partitions = req
        .partitions
        .into_iter()
        .map(|p| {
            let mut r = pb::OffsetForLeaderEpochResult {
                topic: p.topic.clone(),
                partition: p.partition,
                leader_epoch: -1,
                end_offset: -1,
                ..Default::default()
            };
            match check(broker, &mut placements, req.replica_id, &p.topic, p.partition, p.current_leader_epoch) {
                Err((error, message)) => {
                    r.error = error as i32;
                    r.error_message = message;
                }
                Ok((log, _, _)) => match log.end_offset_for_epoch(p.leader_epoch) {
                    Ok((epoch, end)) => (r.leader_epoch, r.end_offset) = (epoch, end),
                    Err(e) => {
                        r.error = ReplicaError::Storage as i32;
                        r.error_message = e.to_string();
                    }
                },
            }
            r
        })
        .collect();
    pb::OffsetForLeaderEpochResponse { partitions }
}
