//! The follower's truncation (KIP-101, KIP-279, KIP-320). Before it fetches from a new
//! leader (or a leader at a new epoch), a follower asks the leader for the end offset
//! of its own latest epoch (OffsetForLeaderEpoch) and truncates to the smaller of that
//! and its own end offset of the epoch the leader answered with; when the two epochs
//! differ it asks again with what is now its latest, until they agree. Never by the
//! high watermark, which lost data or let logs diverge after two quick leader changes.
//! A diverging epoch in a ReplicaFetch answer is applied with the same rule.

use std::sync::Arc;

use sluice_log::{PartitionLog, PartitionStore};
use sluice_proto::v1::{self as pb, ReplicaError, replication_client::ReplicationClient};
use tonic::transport::Channel;
use tracing::{info, warn};

use super::fetcher::Followed;
use crate::{Broker, error::Result};

/// Rounds of OffsetForLeaderEpoch before a partition is left for the next attempt.
const MAX_ROUNDS: usize = 8;

/// Where a follower truncates, given the leader's `(epoch, end offset)` for the epoch it
/// asked (or its diverging epoch): the smaller of the leader's end offset and the
/// follower's own end of that epoch; everything when the leader knows no such epoch or
/// the follower has none at or below it.
pub(super) fn target(log: &PartitionLog, leader_epoch: i32, leader_end: i64) -> Result<u64> {
    if leader_epoch < 0 {
        return Ok(u64::try_from(leader_end).unwrap_or(0));
    }
    let (own_epoch, own_end) = log.end_offset_for_epoch(leader_epoch)?;
    if own_epoch < 0 {
        return Ok(0);
    }
    Ok(u64::try_from(leader_end.min(own_end)).unwrap_or(0))
}

/// Truncates `log` to `offset` off the async workers (keeping the producer state in
/// line). Returns the new log end offset.
pub(super) async fn truncate(broker: &Arc<Broker>, log: &Arc<PartitionLog>, offset: u64, why: &str) -> Result<u64> {
    if offset >= log.log_end_offset() {
        return Ok(log.log_end_offset());
    }
    let from = log.log_end_offset();
    let (b, l) = (broker.clone(), log.clone());
    let end = tokio::task::spawn_blocking(move || b.truncate_replica(&l, offset))
        .await
        .map_err(|e| crate::error::BrokerError::Storage(format!("truncation task failed: {e}")))??;
    info!(topic = log.topic(), partition = log.partition(), from, to = end, why, "follower truncated its log");
    Ok(end)
}

/// Brings the followed partitions `parts` in line with their leader by leader epoch.
/// Returns the partitions (topic, partition) that are in line and may fetch; the others
/// (refused by the leader, or still disagreeing) are tried again later.
pub(super) async fn by_leader_epoch(
    broker: &Arc<Broker>,
    client: &mut ReplicationClient<Channel>,
    parts: &[Followed],
) -> std::result::Result<Vec<(String, u32)>, tonic::Status> {
    let me = broker.config().broker_id;
    let mut done = Vec::new();
    let mut pending: Vec<&Followed> = Vec::new();
    for f in parts {
        match f.log.latest_epoch() {
            // An empty history has nothing to truncate: fetch from where the log ends.
            None => done.push((f.topic.clone(), f.partition)),
            Some(_) => pending.push(f),
        }
    }
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let asked: Vec<(i32, &Followed)> = pending.iter().filter_map(|f| Some((f.log.latest_epoch()?, *f))).collect();
        let req = pb::OffsetForLeaderEpochRequest {
            replica_id: me,
            partitions: asked
                .iter()
                .map(|(epoch, f)| pb::OffsetForLeaderEpochPartition {
                    topic: f.topic.clone(),
                    partition: f.partition,
                    current_leader_epoch: f.leader_epoch,
                    leader_epoch: *epoch,
                })
                .collect(),
        };
        let resp = client.offset_for_leader_epoch(req).await?.into_inner();
        let mut next = Vec::new();
        for r in resp.partitions {
            let Some((asked_epoch, f)) = asked.iter().find(|(_, f)| f.topic == r.topic && f.partition == r.partition)
            else {
                continue;
            };
            if r.error != ReplicaError::None as i32 {
                warn!(topic = %r.topic, partition = r.partition, error = %r.error_message,
                      "OffsetForLeaderEpoch refused; trying again later");
                continue;
            }
            let to = match target(&f.log, r.leader_epoch, r.end_offset) {
                Ok(to) => to,
                Err(e) => {
                    warn!(topic = %r.topic, partition = r.partition, error = %e, "cannot read the epoch history");
                    continue;
                }
            };
            let why = format!("epoch {asked_epoch} ends at {} on the leader (epoch {})", r.end_offset, r.leader_epoch);
            if let Err(e) = truncate(broker, &f.log, to, &why).await {
                warn!(topic = %r.topic, partition = r.partition, error = %e, "truncation failed");
                continue;
            }
            if r.leader_epoch == *asked_epoch || r.leader_epoch < 0 || f.log.latest_epoch().is_none() {
                done.push((f.topic.clone(), f.partition));
            } else {
                next.push(*f);
            }
        }
        pending = next;
    }
    Ok(done)
}
