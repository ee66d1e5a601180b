//! The follower's side: for every hosted partition of a replicated topic that another
//! broker leads, this broker fetches from that leader. One fetch loop per leader broker
//! (not per partition) sends ReplicaFetch requests carrying every partition it follows
//! there, so 1,000 partitions between two brokers cost one RPC per round.
//!
//! A manager looks at the metadata every [`METADATA_POLL`]: it gives each leader's loop
//! its partitions and their leader epochs, starts loops for new leaders and stops the
//! loops of brokers that lead nothing followed here any more. It also runs the leader's
//! ISR check (`isr`). A loop truncates a partition by leader epoch (`truncate`) before
//! its first fetch at a new epoch, then appends what the leader sends exactly as the
//! leader wrote it, and takes the leader's high watermark.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_log::{PartitionLog, PartitionStore};
use sluice_proto::v1::{self as pb, ReplicaError, replication_client::ReplicationClient};
use tokio::{sync::watch, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, debug, info, info_span, warn};

use super::{METADATA_POLL, REPLICA_FETCH_MAX_WAIT, isr, truncate};
use crate::{Broker, metadata::PartitionPlacement, metrics::PartitionLabels};

/// A partition this broker follows, at the leader epoch the metadata names.
#[derive(Debug, Clone)]
pub struct Followed {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: i32,
    pub log: Arc<PartitionLog>,
}

impl PartialEq for Followed {
    fn eq(&self, o: &Self) -> bool {
        (self.topic.as_str(), self.partition, self.leader_epoch) == (o.topic.as_str(), o.partition, o.leader_epoch)
    }
}

/// Pause after a failed RPC or a refusal before the loop tries again.
const BACKOFF: Duration = Duration::from_millis(100);
/// Bound on one ReplicaFetch round trip (the leader holds it at most 500 ms).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

struct Loop {
    partitions: watch::Sender<Vec<Followed>>,
    task: JoinHandle<()>,
}

/// Runs the replication manager until `shutdown`: the follower loops and the leader's
/// ISR checks. Started by the server when the metadata store replicates.
pub async fn run(broker: Arc<Broker>, lag_time_max: Duration, mut shutdown: watch::Receiver<bool>) {
    let me = broker.config().broker_id;
    let mut loops: HashMap<i32, Loop> = HashMap::new();
    let mut tick = tokio::time::interval(METADATA_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(broker = me, lag_time_max_ms = lag_time_max.as_millis() as u64, "replication started");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let hosted = match broker.replicated_partitions() {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "cannot list the replicated partitions");
                continue;
            }
        };
        let mut placements: HashMap<String, Vec<PartitionPlacement>> = HashMap::new();
        let mut follow: BTreeMap<i32, Vec<Followed>> = BTreeMap::new();
        let mut led = Vec::new();
        for h in hosted {
            let ps = placements
                .entry(h.topic.clone())
                .or_insert_with(|| broker.metadata().placement(&h.topic, h.partitions));
            let Some(p) = ps.iter().find(|p| p.partition == h.partition).cloned() else { continue };
            match p.leader {
                Some(l) if l == me => led.push((h, p)),
                Some(l) if p.replicas.contains(&me) => follow.entry(l).or_default().push(Followed {
                    topic: h.topic,
                    partition: h.partition,
                    leader_epoch: p.leader_epoch,
                    log: h.log,
                }),
                _ => {}
            }
        }
        broker.leaders().retain(|t, p| led.iter().any(|(h, _)| h.topic == t && h.partition == p));
        isr::check(&broker, &led, lag_time_max, Instant::now());
        loops.retain(|leader, l| {
            let keep = follow.contains_key(leader) && !l.task.is_finished();
            if !keep {
                l.task.abort();
            }
            keep
        });
        for (leader, parts) in follow {
            match loops.get(&leader) {
                Some(l) => {
                    l.partitions.send_if_modified(|old| {
                        let changed = *old != parts;
                        if changed {
                            *old = parts;
                        }
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(parts);
                    let span = info_span!("replica_fetcher", broker = me, leader);
                    let task =
                        tokio::spawn(follow_leader(broker.clone(), leader, rx, shutdown.clone()).instrument(span));
                    loops.insert(leader, Loop { partitions: tx, task });
                }
            }
        }
    }
    for (_, l) in loops {
        drop(l.partitions);
        let _ = l.task.await;
    }
    info!(broker = me, "replication stopped");
}

/// The connection to a leader, made again when its address changes.
fn client_for(broker: &Broker, leader: i32, current: &mut Option<(String, ReplicationClient<Channel>)>) -> bool {
    let Some(addr) = broker.metadata().brokers().into_iter().find(|b| b.id == leader).map(|b| b.address) else {
        return false;
    };
    if current.as_ref().is_some_and(|(a, _)| *a == addr) {
        return true;
    }
    let uri = if addr.contains("://") { addr.clone() } else { format!("http://{addr}") };
    match Endpoint::from_shared(uri) {
        Ok(e) => {
            let channel = e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true).connect_lazy();
            let client = ReplicationClient::new(channel)
                .max_decoding_message_size(super::REPLICA_FETCH_RESPONSE_MAX_BYTES + 16 * 1024 * 1024);
            *current = Some((addr, client));
            true
        }
        Err(e) => {
            warn!(leader, address = %addr, error = %e, "bad leader address");
            false
        }
    }
}

/// One leader's fetch loop; ends when the manager drops its partitions or at shutdown.
async fn follow_leader(
    broker: Arc<Broker>,
    leader: i32,
    mut assigned: watch::Receiver<Vec<Followed>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = broker.config().broker_id;
    let mut client = None;
    // Partitions truncated at the leader epoch they are followed at.
    let mut in_line: HashMap<(String, u32), i32> = HashMap::new();
    info!(leader, "following");
    loop {
        if *shutdown.borrow() || assigned.has_changed().is_err() {
            return;
        }
        let parts = assigned.borrow_and_update().clone();
        in_line.retain(|k, e| parts.iter().any(|f| (&f.topic, f.partition, f.leader_epoch) == (&k.0, k.1, *e)));
        if !client_for(&broker, leader, &mut client) {
            pause(&mut assigned, &mut shutdown, BACKOFF).await;
            continue;
        }
        let Some((_, c)) = client.as_mut() else { continue };
        let unaligned: Vec<Followed> =
            parts.iter().filter(|f| !in_line.contains_key(&(f.topic.clone(), f.partition))).cloned().collect();
        if !unaligned.is_empty() {
            match truncate::by_leader_epoch(&broker, c, &unaligned).await {
                Ok(done) => {
                    for k in done {
                        if let Some(f) = unaligned.iter().find(|f| (&f.topic, f.partition) == (&k.0, k.1)) {
                            in_line.insert(k, f.leader_epoch);
                        }
                    }
                }
                Err(e) => debug!(leader, error = %e, "OffsetForLeaderEpoch failed"),
            }
        }
        let ready: Vec<&Followed> =
            parts.iter().filter(|f| in_line.contains_key(&(f.topic.clone(), f.partition))).collect();
        if ready.is_empty() {
            pause(&mut assigned, &mut shutdown, BACKOFF).await;
            continue;
        }
        let req = pb::ReplicaFetchRequest {
            replica_id: me,
            max_wait_ms: REPLICA_FETCH_MAX_WAIT.as_millis() as u32,
            partition_max_bytes: 0,
            partitions: ready
                .iter()
                .map(|f| pb::ReplicaFetchPartition {
                    topic: f.topic.clone(),
                    partition: f.partition,
                    fetch_offset: f.log.log_end_offset(),
                    last_fetched_epoch: f.log.latest_epoch().unwrap_or(-1),
                    current_leader_epoch: f.leader_epoch,
                })
                .collect(),
        };
        broker.metrics().replica_fetch_requests.inc();
        let resp = tokio::select! {
            r = tokio::time::timeout(FETCH_TIMEOUT, c.replica_fetch(req)) => r,
            // New partitions or epochs: this answer would be applied to the old view.
            _ = assigned.changed() => continue,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let resp = match resp {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(e)) => {
                debug!(leader, error = %e, "ReplicaFetch failed");
                pause(&mut assigned, &mut shutdown, BACKOFF).await;
                continue;
            }
            Err(_) => {
                warn!(leader, "ReplicaFetch timed out");
                continue;
            }
        };
        let ready: Vec<Followed> = ready.into_iter().cloned().collect();
        let b = broker.clone();
        let applied = tokio::task::spawn_blocking(move || apply(&b, &ready, resp)).await;
        match applied {
            Ok(outcome) => {
                for k in outcome.realign {
                    in_line.remove(&k);
                }
                if outcome.refused {
                    pause(&mut assigned, &mut shutdown, BACKOFF).await;
                }
            }
            Err(e) => warn!(leader, error = %e, "applying a ReplicaFetch answer failed"),
        }
    }
}

/// Waits `d`, or less if the partitions change or shutdown begins.
async fn pause(assigned: &mut watch::Receiver<Vec<Followed>>, shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = assigned.changed() => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// What applying an answer left to do.
struct Outcome {
    /// Partitions to truncate by leader epoch again before they fetch.
    realign: Vec<(String, u32)>,
    /// Some partition was refused: pause before the next request.
    refused: bool,
}

/// Applies a ReplicaFetch answer (blocking): divergences truncate, batches append, the
/// leader's high watermark is taken.
fn apply(broker: &Broker, ready: &[Followed], resp: pb::ReplicaFetchResponse) -> Outcome {
    let mut out = Outcome { realign: Vec::new(), refused: false };
    let metrics = broker.metrics();
    for d in resp.partitions {
        let Some(f) = ready.iter().find(|f| f.topic == d.topic && f.partition == d.partition) else { continue };
        let key = (f.topic.clone(), f.partition);
        if d.error != ReplicaError::None as i32 {
            debug!(topic = %d.topic, partition = d.partition, error = %d.error_message, "replica fetch refused");
            out.refused = true;
            if d.error == ReplicaError::OffsetOutOfRange as i32 {
                out.realign.push(key);
            }
            continue;
        }
        if d.leader_epoch < f.leader_epoch {
            // Data from a leader older than the one this broker knows: refused.
            out.refused = true;
            continue;
        }
        if let Some(div) = d.diverging_epoch {
            let done = truncate::target(&f.log, div.epoch, div.end_offset)
                .and_then(|to| if to < f.log.log_end_offset() { broker.truncate_replica(&f.log, to) } else { Ok(to) });
            match done {
                Ok(end) => info!(topic = %f.topic, partition = f.partition, epoch = div.epoch,
                                 leader_end = div.end_offset, log_end = end, "diverging epoch: follower truncated"),
                Err(e) => {
                    warn!(topic = %f.topic, partition = f.partition, error = %e, "truncation failed");
                    out.realign.push(key);
                }
            }
            continue;
        }
        if !d.batches.is_empty() {
            metrics.replica_fetch_bytes.inc_by(d.batches.len() as u64);
            if let Err(e) = broker.append_replica(&f.log, &d.batches) {
                warn!(topic = %f.topic, partition = f.partition, error = %e, "replica append failed; realigning");
                out.realign.push(key);
                continue;
            }
        }
        f.log.advance_high_watermark(d.high_watermark.min(f.log.log_end_offset()));
        let lag = d.log_end_offset.saturating_sub(f.log.log_end_offset());
        metrics
            .follower_lag_records
            .get_or_create(&PartitionLabels { topic: f.topic.clone(), partition: f.partition })
            .set(lag as i64);
    }
    out
}
