//! The sender task of one partition: takes what the accumulator says is ready and sends
//! it, up to the producer's in-flight limit at once (1 without idempotence, so batches
//! are appended in order even across retries; up to 5 with it, where sequence numbers
//! keep the order and make retries safe), each with retries, and completes the batch's
//! delivery futures.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use sluice_proto::v1 as pb;
use tracing::{debug, warn};

use super::{
    Acks, BatchCompletion, BatchOutcome, Inner, PartitionQueue, accumulator::Next, accumulator::SealedBatch, lock,
};
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
        // Until the broker has stored a batch of this producer on the partition it has no
        // state to order the others by (an unknown producer may start at any sequence, as
        // in Kafka), so the first batch goes alone.
        let limit = if q.acknowledged.load(Ordering::Acquire) { strong.max_in_flight } else { 1 };
        let next = if !q.sending.window_open(limit) {
            Next::Wait
        } else {
            lock(&q.batches).next(strong.config.linger, Instant::now(), &strong.in_flight)
        };
        match next {
            Next::Send(batch) => {
                q.sending.start(batch.order);
                tokio::spawn(send_batch(strong, q.clone(), batch));
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
                let closed = strong.closed.load(Ordering::Acquire) && q.sending.len() == 0;
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

/// Sends one batch with retries, then completes it and frees its in-flight slot.
async fn send_batch(inner: Arc<Inner>, q: Arc<PartitionQueue>, batch: SealedBatch<BatchCompletion>) {
    let len = batch.bytes.len();
    let stamped = sluice_core::batch::peek(&batch.bytes).map(|i| (i.producer_id, i.producer_epoch));
    let outcome = send_with_retries(&inner, &q, &batch).await;
    let ok = outcome.is_ok();
    // The records learn their fate at once, before a reset that may wait for a broker.
    let _ = batch.done.done.send(outcome);
    if ok {
        q.acknowledged.store(true, Ordering::Release);
    } else if let Some(stamped) = stamped.filter(|_| inner.config.idempotent()) {
        // Before the batch leaves the window, so no later batch goes out on the old id.
        reset_after_failure(&inner, &q, stamped).await;
    }
    q.sending.finish(batch.order);
    inner.in_flight.completed(len);
    inner.progress.notify_waiters();
    q.wake.notify_one();
}

/// After a batch of an idempotent producer failed for good, the broker's sequence for
/// its producer id has a hole on this partition that no later batch fills: every later
/// batch would be refused as out of order. As Kafka's producer resets its sequences, the
/// partition moves to a new producer id from sequence 0 (once per hole: only when the
/// failed batch carried the partition's current id). Without a new id (the broker is
/// unreachable) the partition keeps the old one and later batches fail clearly.
async fn reset_after_failure(inner: &Inner, q: &PartitionQueue, stamped: (i64, i16)) {
    if lock(&q.batches).producer() != Some(stamped) {
        return;
    }
    // Bounded: the failed record's future resolves only after this.
    match super::new_producer_id(&inner.client, inner.config.request_timeout).await {
        Ok((id, epoch)) => {
            let mut batches = lock(&q.batches);
            if batches.producer() == Some(stamped) {
                batches.reset_producer(id, epoch);
                // The broker knows nothing of the new id here yet: its first batch goes alone.
                q.acknowledged.store(false, Ordering::Release);
                debug!(topic = %q.topic, partition = q.partition, producer_id = id, "new producer id after a failed batch");
            }
        }
        Err(e) => {
            warn!(topic = %q.topic, partition = q.partition, error = %e, "no new producer id after a failed batch")
        }
    }
}

/// Sends a batch until it is acknowledged, fails for good, or its delivery timeout
/// (counted from the batch's first append, `created`) expires. Each attempt waits at most
/// `request_timeout` for an answer; an attempt that fails with NOT_LEADER, a connection
/// error or no answer looks the leader up again (Metadata) before the retry.
async fn send_with_retries(inner: &Inner, q: &PartitionQueue, batch: &SealedBatch<BatchCompletion>) -> BatchOutcome {
    let config = &inner.config;
    let deadline = batch.created + config.delivery_timeout;
    let expired = |attempts: u32, last: Option<ClientError>| {
        warn!(topic = %q.topic, partition = q.partition, attempts, error = ?last.as_ref().map(|e| e.to_string()), "delivery timeout expired");
        Err(ClientError::DeliveryTimeout { timeout: config.delivery_timeout, attempts, last: last.map(Box::new) })
    };
    let mut attempt = 0u32;
    let mut last: Option<ClientError> = None;
    loop {
        if Instant::now() >= deadline {
            return expired(attempt, last);
        }
        attempt += 1;
        let req = pb::ProduceRequest {
            topic: q.topic.to_string(),
            partition: q.partition,
            acks: acks_to_proto(config.acks) as i32,
            batch: batch.bytes.clone(),
            producer_id: -1,
            base_sequence: -1,
        };
        // An out-of-order refusal is final only if no earlier batch could still fill the gap.
        let oldest = q.sending.is_oldest(batch.order);
        let sent_at = Instant::now();
        let answer_by = deadline.min(sent_at + config.request_timeout);
        let call = async { inner.client.partition_client(&q.topic, q.partition).await.produce(req).await };
        let err = match tokio::time::timeout_at(answer_by.into(), call).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                debug!(topic = %q.topic, partition = q.partition, base_offset = ?r.base_offset, attempt, "batch acknowledged");
                // Unset with acks=0.
                return Ok(r.base_offset);
            }
            Ok(Err(s)) => ClientError::from(s),
            // No answer: the broker hangs or the network drops everything. Counted as a
            // connection failure, so that the route is looked up again.
            Err(_) => {
                ClientError::Transport(format!("no answer within {:?}", answer_by.saturating_duration_since(sent_at)))
            }
        };
        if err.kind() == Some(pb::ErrorCode::OutOfOrderSequence) && !oldest {
            // It overtook an earlier batch of the partition: resend once those are done.
            debug!(topic = %q.topic, partition = q.partition, attempt, "batch overtook an earlier one; resending after it");
            if q.sending.wait_until_oldest(batch.order, deadline).await {
                continue;
            }
            return expired(attempt, Some(err));
        }
        // The look-up asks brokers that may not answer either: bounded like an attempt.
        let look_up_by = deadline.min(Instant::now() + config.request_timeout);
        let refresh = inner.client.refresh_route(&q.topic, q.partition, &err);
        let _ = tokio::time::timeout_at(look_up_by.into(), refresh).await;
        if !err.is_retriable() {
            return Err(err);
        }
        if Instant::now() + config.retry_backoff >= deadline {
            return expired(attempt, Some(err));
        }
        if err.kind() == Some(pb::ErrorCode::NotLeader) {
            debug!(topic = %q.topic, partition = q.partition, attempt, error = %err, "not the leader; retrying at the leader");
            if attempt == 1 {
                // The route was just learned: go to the leader at once.
                last = Some(err);
                continue;
            }
        } else {
            warn!(topic = %q.topic, partition = q.partition, attempt, error = %err, "produce failed, retrying");
        }
        last = Some(err);
        tokio::time::sleep(config.retry_backoff).await;
    }
}
