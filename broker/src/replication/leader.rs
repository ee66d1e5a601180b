//! What a leader knows of its followers, per partition it leads: each follower's log
//! end offset (the fetch offset of its last ReplicaFetch) and when it was last caught
//! up (Kafka's `lastCaughtUpTimeMs`), with the partition's ISR and epochs as the
//! metadata last said. The high watermark is the minimum log end offset over the ISR
//! (the leader's own included), and advances only while the ISR has at least
//! `min.insync.replicas` members (KIP-966): an ISR shrunk to the leader alone cannot
//! commit anything that a single unflushed copy would then hold.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use tokio::sync::watch;

use crate::metadata::PartitionPlacement;

/// One follower's progress, as seen by its leader.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Its log end offset (`None`: no fetch in this leader epoch yet).
    pub log_end: Option<u64>,
    /// When it last had everything the leader had.
    pub last_caught_up: Instant,
    /// When it last fetched, and the leader's log end offset then.
    pub last_fetch: Instant,
    pub leader_end_at_last_fetch: u64,
}

/// A partition this broker leads.
#[derive(Debug)]
pub struct LeaderPartition {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_isr: u32,
    pub followers: HashMap<i32, Progress>,
    /// An ISR change is on its way to the controller.
    pub isr_change_pending: bool,
}

impl LeaderPartition {
    fn new(p: &PartitionPlacement, min_isr: u32, now: Instant) -> Self {
        let mut s = Self {
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: Vec::new(),
            isr: Vec::new(),
            min_isr,
            followers: HashMap::new(),
            isr_change_pending: false,
        };
        s.apply(p, min_isr, now);
        s
    }

    /// Takes the metadata's view. A new leader epoch starts every follower afresh, as
    /// caught up now (Kafka does the same when a broker becomes leader).
    fn apply(&mut self, p: &PartitionPlacement, min_isr: u32, now: Instant) {
        if p.leader_epoch != self.leader_epoch {
            self.followers.clear();
        }
        self.leader_epoch = p.leader_epoch;
        self.partition_epoch = self.partition_epoch.max(p.partition_epoch);
        if p.partition_epoch >= self.partition_epoch {
            self.isr = p.isr.clone();
        }
        self.replicas = p.replicas.clone();
        self.min_isr = min_isr;
        let fresh = Progress { log_end: None, last_caught_up: now, last_fetch: now, leader_end_at_last_fetch: 0 };
        self.followers.retain(|id, _| p.replicas.contains(id));
        for r in &p.replicas {
            self.followers.entry(*r).or_insert(fresh);
        }
    }

    /// A ReplicaFetch from `replica` at `fetch_offset`, while the leader's log ends at
    /// `leader_end` (Kafka's `updateFollowerFetchState`).
    pub fn record_fetch(&mut self, replica: i32, fetch_offset: u64, leader_end: u64, now: Instant) {
        let Some(p) = self.followers.get_mut(&replica) else { return };
        if fetch_offset >= leader_end {
            p.last_caught_up = now;
        } else if fetch_offset >= p.leader_end_at_last_fetch {
            p.last_caught_up = p.last_caught_up.max(p.last_fetch);
        }
        p.log_end = Some(fetch_offset);
        p.last_fetch = now;
        p.leader_end_at_last_fetch = leader_end;
    }

    /// Whether acks=all may be accepted now.
    pub fn enough_in_sync(&self) -> bool {
        self.isr.len() >= self.min_isr as usize
    }

    /// The high watermark the ISR allows, with the leader (`me`) at `leader_end`;
    /// `None` while the ISR is below `min.insync.replicas`.
    pub fn high_watermark(&self, me: i32, leader_end: u64) -> Option<u64> {
        if !self.enough_in_sync() {
            return None;
        }
        let mut hw = leader_end;
        for id in self.isr.iter().filter(|id| **id != me) {
            hw = hw.min(self.followers.get(id).and_then(|p| p.log_end).unwrap_or(0));
        }
        Some(hw)
    }
}

/// A led partition's state, shared by the fetch handlers, produce and the ISR check.
pub type SharedPartition = Arc<Mutex<LeaderPartition>>;

/// Every partition this broker leads with replication, and a signal that wakes the
/// ReplicaFetch long polls when a leader appended.
#[derive(Debug)]
pub struct Leaders {
    partitions: Mutex<HashMap<(String, u32), SharedPartition>>,
    appended: watch::Sender<u64>,
}

impl Default for Leaders {
    fn default() -> Self {
        Self { partitions: Mutex::new(HashMap::new()), appended: watch::channel(0).0 }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is a complete, non-panicking step.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Leaders {
    /// The state of a led partition, as the metadata says now (`placement`), created
    /// or refreshed.
    pub fn refresh(
        &self,
        topic: &str,
        placement: &PartitionPlacement,
        min_isr: u32,
        now: Instant,
    ) -> Arc<Mutex<LeaderPartition>> {
        let mut map = lock(&self.partitions);
        match map.get(&(topic.to_string(), placement.partition)) {
            Some(s) => {
                lock(s).apply(placement, min_isr, now);
                s.clone()
            }
            None => {
                let s = Arc::new(Mutex::new(LeaderPartition::new(placement, min_isr, now)));
                map.insert((topic.to_string(), placement.partition), s.clone());
                s
            }
        }
    }

    pub fn get(&self, topic: &str, partition: u32) -> Option<Arc<Mutex<LeaderPartition>>> {
        lock(&self.partitions).get(&(topic.to_string(), partition)).cloned()
    }

    /// Forgets partitions for which `keep` is false (no longer led here).
    pub fn retain(&self, keep: impl Fn(&str, u32) -> bool) {
        lock(&self.partitions).retain(|(t, p), _| keep(t, *p));
    }

    /// A leader appended: long-polling fetches look again.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn watch_appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn placement(isr: &[i32], partition_epoch: i32) -> PartitionPlacement {
        PartitionPlacement {
            partition: 0,
            leader: Some(1),
            leader_epoch: 3,
            partition_epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn the_high_watermark_is_the_isr_minimum_and_waits_for_min_isr() {
        let now = Instant::now();
        let mut s = LeaderPartition::new(&placement(&[1, 2, 3], 0), 2, now);
        // Nobody fetched yet in this epoch: nothing is committed.
        assert_eq!(s.high_watermark(1, 10), Some(0));
        s.record_fetch(2, 10, 10, now);
        s.record_fetch(3, 4, 10, now);
        assert_eq!(s.high_watermark(1, 10), Some(4));
        s.record_fetch(3, 10, 10, now);
        assert_eq!(s.high_watermark(1, 12), Some(10));
        // The ISR shrinks to the leader alone: below min ISR, nothing more commits.
        s.apply(&placement(&[1], 1), 2, now);
        assert!(!s.enough_in_sync());
        assert_eq!(s.high_watermark(1, 12), None);
        // With min ISR 1 the leader alone commits its whole log.
        s.apply(&placement(&[1], 1), 1, now);
        assert_eq!(s.high_watermark(1, 12), Some(12));
        // An older partition epoch does not roll the ISR back.
        s.apply(&placement(&[1, 2, 3], 0), 1, now);
        assert_eq!(s.isr, [1]);
    }

    #[test]
    fn caught_up_time_follows_kafka() {
        let t0 = Instant::now();
        let mut s = LeaderPartition::new(&placement(&[1, 2, 3], 0), 2, t0);
        let t1 = t0 + Duration::from_secs(1);
        s.record_fetch(2, 10, 10, t1);
        assert_eq!(s.followers[&2].last_caught_up, t1);
        // Behind the leader now, but it had what the leader had at its previous fetch.
        let t2 = t0 + Duration::from_secs(2);
        s.record_fetch(2, 10, 20, t2);
        assert_eq!(s.followers[&2].last_caught_up, t1);
        let t3 = t0 + Duration::from_secs(3);
        s.record_fetch(2, 20, 25, t3);
        assert_eq!(s.followers[&2].last_caught_up, t2);
        // Falling further behind: the caught-up time stays.
        let t4 = t0 + Duration::from_secs(4);
        s.record_fetch(2, 21, 40, t4);
        assert_eq!(s.followers[&2].last_caught_up, t2);
        // A new leader epoch starts the followers afresh.
        let mut p = placement(&[1, 2, 3], 1);
        p.leader_epoch = 4;
        s.apply(&p, 2, t4);
        assert_eq!(s.followers[&2].log_end, None);
    }
}
