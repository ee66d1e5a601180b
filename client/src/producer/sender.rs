//! The sender task of one partition: takes what the accumulator says is ready, sends it
//! with retries (at most one request in flight, so batches are appended in order), and
//! completes the batch's delivery futures.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use sluice_proto::v1 as pb;
use tracing::{debug, warn};

use super::{Acks, BatchOutcome, Inner, PartitionQueue, accumulator::Next, lock};
use crate::error::ClientError;

fn acks_to_proto(acks: Acks) -> pb::Acks {
    match acks {
        Acks::None => pb::Acks::None,
        Acks::Leader => pb::Acks::Leader,
        Acks::All => pb::Acks::All,
    }
}

/// Runs until the producer is closed or dropped.
pub(super) async fn sender_loop(inner: Weak<Inner>, q: Arc<PartitionQueue>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let next = lock(&q.batches).next(strong.config.linger, Instant::now(), &strong.in_flight);
        match next {
            Next::Send(batch) => {
                let len = batch.bytes.len();
                let outcome = send_with_retries(&strong, &q, batch.bytes).await;
                let _ = batch.done.done.send(outcome);
                strong.in_flight.completed(len);
                strong.progress.notify_waiters();
            }
            Next::WaitUntil(due) => {
                let closed = strong.closed.load(Ordering::Acquire);
                drop(strong);
                if closed {
                    return;
                }
                let _ = tokio::time::timeout_at(due.into(), q.wake.notified()).await;
            }
            Next::Wait => {
                let closed = strong.closed.load(Ordering::Acquire);
                drop(strong);
                if closed {
                    return;
                }
                // Wake up now and then so a dropped producer ends this task.
                let _ = tokio::time::timeout(Duration::from_secs(1), q.wake.notified()).await;
            }
        }
    }
}

async fn send_with_retries(inner: &Inner, q: &PartitionQueue, batch: Bytes) -> BatchOutcome {
    let deadline = Instant::now() + inner.config.delivery_timeout;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let req = pb::ProduceRequest {
            topic: q.topic.to_string(),
            partition: q.partition,
            acks: acks_to_proto(inner.config.acks) as i32,
            batch: batch.clone(),
            producer_id: -1,
            base_sequence: -1,
        };
        let err = match inner.client.partition_client(&q.topic, q.partition).await.produce(req).await {
            Ok(r) => {
                let r = r.into_inner();
                debug!(topic = %q.topic, partition = q.partition, base_offset = ?r.base_offset, "batch acknowledged");
                // Unset with acks=0.
                return Ok(r.base_offset);
            }
            Err(s) => ClientError::from(s),
        };
        inner.client.refresh_route(&q.topic, q.partition, &err).await;
        if !err.is_retriable() || Instant::now() + inner.config.retry_backoff >= deadline {
            return Err(err);
        }
        if err.kind() == Some(pb::ErrorCode::NotLeader) {
            debug!(topic = %q.topic, partition = q.partition, attempt, error = %err, "not the leader; retrying at the leader");
            if attempt == 1 {
                // The route was just learned: go to the leader at once.
                continue;
            }
        } else {
            warn!(topic = %q.topic, partition = q.partition, attempt, error = %err, "produce failed, retrying");
        }
        tokio::time::sleep(inner.config.retry_backoff).await;
    }
}
