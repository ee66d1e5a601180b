//! The batches of one partition that are in flight (sent or being retried, not yet
//! completed), in send order. With several in flight, a batch may reach the broker
//! before the one sealed just before it and be refused as out of order; the sender
//! retries it once every earlier batch has completed (Kafka's producer does the same),
//! and treats the refusal as final only for a batch that was the oldest when it was sent.
//!
//! The window is counted from the oldest batch in flight, not by how many are in flight:
//! a batch is sent only while it is fewer than `limit` places after the oldest one still
//! in flight. The broker remembers a producer's last 5 batches per partition; if later
//! batches could go on completing while an old one waits to be retried, the old one
//! would fall out of that memory and its retry be refused as out of order instead of
//! being answered as the duplicate it is.

use std::{collections::BTreeSet, sync::Mutex, time::Instant};

use tokio::sync::Notify;

use super::lock;

/// The orders in flight, and the order of the last batch started.
#[derive(Debug, Default)]
struct Orders {
    in_flight: BTreeSet<u64>,
    last_started: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct InFlightBatches {
    orders: Mutex<Orders>,
    /// Signalled when a batch completes.
    completed: Notify,
}

impl InFlightBatches {
    pub(super) fn len(&self) -> usize {
        lock(&self.orders).in_flight.len()
    }

    pub(super) fn start(&self, order: u64) {
        let mut o = lock(&self.orders);
        o.in_flight.insert(order);
        o.last_started = Some(order);
    }

    /// True while the next batch (the one after the last started) is fewer than `limit`
    /// places after the oldest batch in flight (see the module documentation).
    pub(super) fn window_open(&self, limit: usize) -> bool {
        let o = lock(&self.orders);
        let Some(&oldest) = o.in_flight.first() else { return true };
        let next = o.last_started.map_or(0, |l| l + 1);
        next < oldest + limit as u64
    }

    pub(super) fn finish(&self, order: u64) {
        lock(&self.orders).in_flight.remove(&order);
        self.completed.notify_waiters();
    }

    /// True when no earlier batch is in flight.
    pub(super) fn is_oldest(&self, order: u64) -> bool {
        lock(&self.orders).in_flight.first().is_none_or(|first| *first >= order)
    }

    /// Waits until no earlier batch is in flight, or `deadline`. Returns false at the
    /// deadline.
    pub(super) async fn wait_until_oldest(&self, order: u64, deadline: Instant) -> bool {
        loop {
            let completed = self.completed.notified();
            tokio::pin!(completed);
            completed.as_mut().enable();
            if self.is_oldest(order) {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), completed).await.is_err() {
                return self.is_oldest(order);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[test]
    fn the_window_counts_from_the_oldest_batch_in_flight() {
        let f = InFlightBatches::default();
        assert!(f.window_open(5));
        for order in 0..5 {
            f.start(order);
        }
        assert!(!f.window_open(5), "0..5 in flight");
        // 1..5 complete while 0 waits for its retry: still no room for 5.
        for order in 1..5 {
            f.finish(order);
        }
        assert_eq!(f.len(), 1);
        assert!(!f.window_open(5), "5 would be 5 places after 0, beyond the broker's memory of 0");
        f.finish(0);
        assert!(f.window_open(5));
        f.start(5);
        assert!(f.window_open(5) && !f.window_open(1));
    }

    #[tokio::test]
    async fn a_batch_waits_for_every_earlier_one() {
        let f = Arc::new(InFlightBatches::default());
        for order in [3, 4, 5] {
            f.start(order);
        }
        assert!(f.is_oldest(3) && !f.is_oldest(5));
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.wait_until_oldest(5, Instant::now() + Duration::from_secs(10)).await }
        });
        f.finish(4);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "3 is still in flight");
        f.finish(3);
        assert!(waiter.await.expect("join"));
        assert_eq!(f.len(), 1);
        let soon = Instant::now() + Duration::from_millis(10);
        f.start(6);
        assert!(!f.wait_until_oldest(6, soon).await, "5 never completes");
    }
}
