//! The leader's ISR check, run by the replication manager every tick for each
//! partition this broker leads: a follower that has not been caught up to the leader's
//! log end within `replica.lag.time.max.ms` is proposed out of the ISR; a replica out of
//! it that has reached the high watermark and caught up recently is proposed back in.
//! Proposals go to the controller (`alter_partition`, Kafka's AlterPartition) at the
//! leader and partition epochs the leader knows; one at a time per partition. The
//! leader takes the controller's answer as its new state. Gauges: ISR size and
//! under-replicated partitions.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_log::PartitionStore;
use tracing::{Instrument, info, info_span, warn};

use super::leader::lock;
use crate::{
    Broker, broker::HostedPartition, metadata::IsrChange, metadata::PartitionPlacement, metrics::PartitionLabels,
};

/// The ISR a leader (`me`) proposes for a partition, or `None` to keep it.
pub fn proposal(
    s: &super::leader::LeaderPartition,
    me: i32,
    log_end: u64,
    high_watermark: u64,
    lag_time_max: Duration,
    now: Instant,
) -> Option<Vec<i32>> {
    let recent =
        |id: &i32| s.followers.get(id).is_some_and(|f| now.saturating_duration_since(f.last_caught_up) <= lag_time_max);
    let mut isr: Vec<i32> = s.isr.iter().copied().filter(|id| *id == me || recent(id)).collect();
    if !isr.contains(&me) {
        isr.insert(0, me);
    }
    for r in &s.replicas {
        let reached = s.followers.get(r).and_then(|f| f.log_end).is_some_and(|e| e >= high_watermark.min(log_end));
        if !isr.contains(r) && reached && recent(r) {
            isr.push(*r);
        }
    }
    (isr != s.isr).then_some(isr)
}

/// One tick of the check over the partitions this broker leads (with their placement).
pub fn check(broker: &Arc<Broker>, led: &[(HostedPartition, PartitionPlacement)], lag: Duration, now: Instant) {
    let me = broker.config().broker_id;
    let metrics = broker.metrics();
    let mut under = 0;
    for (h, p) in led {
        let state = broker.leaders().refresh(&h.topic, p, h.min_isr, now);
        let mut s = lock(&state);
        broker.update_high_watermark(&h.log, &s);
        let labels = PartitionLabels { topic: h.topic.clone(), partition: h.partition };
        metrics.isr_size.get_or_create(&labels).set(s.isr.len() as i64);
        if s.isr.len() < s.replicas.len() {
            under += 1;
        }
        if s.isr_change_pending {
            continue;
        }
        let Some(new_isr) = proposal(&s, me, h.log.log_end_offset(), h.log.high_watermark(), lag, now) else {
            continue;
        };
        s.isr_change_pending = true;
        let change = IsrChange {
            topic: h.topic.clone(),
            partition: h.partition,
            leader_id: me,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr: new_isr.clone(),
        };
        let (old, shrink) = (s.isr.clone(), new_isr.len() < s.isr.len());
        drop(s);
        let (broker, state, h) = (broker.clone(), state.clone(), h.clone());
        let span = info_span!("isr_change", topic = %h.topic, partition = h.partition, ?old, new = ?new_isr);
        tokio::spawn(
            async move {
                let answer = broker.metadata().alter_partition(change).await;
                let mut s = lock(&state);
                s.isr_change_pending = false;
                match answer {
                    Ok(placement) => {
                        info!(partition_epoch = placement.partition_epoch, isr = ?placement.isr, "ISR changed");
                        let counter =
                            if shrink { &broker.metrics().isr_shrinks } else { &broker.metrics().isr_expands };
                        counter.inc();
                        drop(s);
                        let state = broker.leaders().refresh(&h.topic, &placement, h.min_isr, Instant::now());
                        broker.update_high_watermark(&h.log, &lock(&state));
                    }
                    Err(e) => warn!(error = %e, "ISR change refused by the controller"),
                }
            }
            .instrument(span),
        );
    }
    metrics.under_replicated_partitions.set(under);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::leader::Leaders;

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_return() {
        let t0 = Instant::now();
        let leaders = Leaders::default();
        let p = PartitionPlacement {
            partition: 0,
            leader: Some(1),
            leader_epoch: 1,
            partition_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
        };
        let state = leaders.refresh("t", &p, 2, t0);
        let lag = Duration::from_secs(10);
        let mut s = lock(&state);
        s.record_fetch(2, 5, 5, t0 + Duration::from_secs(9));
        assert_eq!(proposal(&s, 1, 5, 5, lag, t0 + Duration::from_secs(5)), None);
        // 3 never fetched: out once the lag time has passed since the epoch began.
        assert_eq!(proposal(&s, 1, 5, 5, lag, t0 + Duration::from_secs(11)), Some(vec![1, 2]));
        s.isr = vec![1, 2];
        // 3 fetches up to the high watermark and the log end: back in.
        let t = t0 + Duration::from_secs(12);
        s.record_fetch(3, 5, 5, t);
        assert_eq!(proposal(&s, 1, 5, 5, lag, t), Some(vec![1, 2, 3]));
    }
}
