//! Broker sessions: registration and heartbeats, expiry, and the elections they cause.

use std::collections::BTreeSet;

use super::{BrokerState, Change, ClusterState, Registration, partition_changed};
use crate::{election::elect_leader_with, isr::set_isr};

impl ClusterState {
    /// A heartbeat from a broker at `now_ms`: registers a new broker, unfences a fenced
    /// one (electing it where a partition is offline and it is eligible), and treats a
    /// new incarnation of a live broker as a restart (fenced, then unfenced: a process
    /// killed with `kill -9` may have lost its unflushed tail, so it leaves every ISR and
    /// its leaderships move before it comes back).
    pub fn heartbeat(&mut self, reg: Registration, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let id = reg.id;
        match self.brokers.get(&id) {
            None => {
                self.brokers.insert(id, BrokerState { id, fenced: true, ..BrokerState::default() });
                changes.push(Change::BrokerRegistered { id });
            }
            Some(b) if b.incarnation != reg.incarnation => {
                if !b.fenced {
                    changes.extend(self.fence(id));
                }
                changes.push(Change::BrokerRestarted { id });
            }
            Some(_) => {}
        }
        if let Some(b) = self.brokers.get_mut(&id) {
            b.grpc_address = reg.grpc_address;
            b.kafka_address = reg.kafka_address;
            b.rack = reg.rack;
            b.incarnation = reg.incarnation;
            b.last_heartbeat_ms = now_ms;
            if b.fenced {
                b.fenced = false;
                changes.push(Change::BrokerUnfenced { id });
                changes.extend(self.elect_offline());
            }
        }
        self.changed(changes)
    }

    /// Fences every unfenced broker whose last heartbeat is older than `session_ms`.
    pub fn expire(&mut self, now_ms: u64, session_ms: u64) -> Vec<Change> {
        let expired: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| !b.fenced && now_ms.saturating_sub(b.last_heartbeat_ms) > session_ms)
            .map(|b| b.id)
            .collect();
        let mut changes = Vec::new();
        for id in expired {
            changes.extend(self.fence(id));
        }
        self.changed(changes)
    }

    /// Fences broker `id`: it leaves every ISR (into the ELR where that takes the ISR
    /// below `min.insync.replicas`), and the partitions it led elect another leader.
    pub fn fence(&mut self, id: i32) -> Vec<Change> {
        let Some(b) = self.brokers.get_mut(&id) else { return Vec::new() };
        if b.fenced {
            return Vec::new();
        }
        b.fenced = true;
        let live = self.live();
        let mut changes = vec![Change::BrokerFenced { id }];
        for (name, t) in &mut self.topics {
            let (min_isr, policy) = (t.min_isr(), t.policy());
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.contains(&id) {
                    let isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id).collect();
                    changed |= set_isr(p, isr, min_isr);
                }
                if p.leader == Some(id) {
                    changed |= elect_leader_with(p, &live, policy).is_some();
                }
                if changed {
                    changes.push(partition_changed(name, p));
                }
            }
        }
        changes
    }

    /// Elects a leader for every offline partition that now has an eligible live replica.
    fn elect_offline(&mut self) -> Vec<Change> {
        let live: BTreeSet<i32> = self.live();
        let mut changes = Vec::new();
        for (name, t) in &mut self.topics {
            let policy = t.policy();
            for p in t.partitions.iter_mut().filter(|p| p.leader.is_none()) {
                if elect_leader_with(p, &live, policy).is_some() {
                    changes.push(partition_changed(name, p));
                }
            }
        }
        changes
    }
}
