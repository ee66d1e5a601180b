//! The committed offsets of every group, as replaying the records of
//! `__consumer_offsets` leaves them: the newest record of a key wins, a tombstone
//! removes the offset, and a group without offsets is forgotten.

use std::collections::BTreeMap;

use crate::{
    TopicPartition, offsets_partition,
    records::{Committed, OffsetKey},
};

/// Group id → partition → committed offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedOffsets {
    groups: BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
}

impl CommittedOffsets {
    /// Applies one record (on replay, and after a write was appended).
    pub fn apply(&mut self, key: &OffsetKey, value: Option<Committed>) {
        match value {
            Some(c) => {
                self.groups.entry(key.group.clone()).or_default().insert(key.topic_partition(), c);
            }
            None => {
                if let Some(o) = self.groups.get_mut(&key.group) {
                    o.remove(&key.topic_partition());
                    if o.is_empty() {
                        self.groups.remove(&key.group);
                    }
                }
            }
        }
    }

    /// The offsets of one group; `None` when it has none.
    pub fn group(&self, group: &str) -> Option<&BTreeMap<TopicPartition, Committed>> {
        self.groups.get(group)
    }

    /// Every group with at least one committed offset, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &BTreeMap<TopicPartition, Committed>)> {
        self.groups.iter()
    }

    /// Number of groups with committed offsets.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Forgets every group held by offsets partition `partition` (of `partitions`): the
    /// coordinator gave that partition up. Returns how many groups it forgot.
    pub fn unload(&mut self, partition: u32, partitions: u32) -> usize {
        let before = self.groups.len();
        self.groups.retain(|g, _| offsets_partition(g, partitions) != partition);
        before - self.groups.len()
    }

    /// Every live offset held by offsets partition `partition` (of `partitions`): what a
    /// compaction of that partition rewrites.
    pub fn live_in(&self, partition: u32, partitions: u32) -> Vec<(OffsetKey, Committed)> {
        self.groups
            .iter()
            .filter(|(g, _)| offsets_partition(g, partitions) == partition)
            .flat_map(|(g, offsets)| offsets.iter().map(|(tp, c)| (OffsetKey::new(g, tp), c.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, p: u32) -> OffsetKey {
        OffsetKey::new(group, &TopicPartition::new("t", p))
    }

    fn at(offset: u64) -> Option<Committed> {
        Some(Committed { offset, metadata: String::new(), commit_time_ms: 1 })
    }

    #[test]
    fn the_newest_record_wins_and_tombstones_forget_empty_groups() {
        let mut o = CommittedOffsets::default();
        o.apply(&key("g", 0), at(5));
        o.apply(&key("g", 0), at(9));
        o.apply(&key("g", 1), at(2));
        let g = o.group("g").expect("g");
        assert_eq!(g[&TopicPartition::new("t", 0)].offset, 9);
        assert_eq!(g.len(), 2);
        o.apply(&key("g", 0), None);
        assert_eq!(o.group("g").map(BTreeMap::len), Some(1));
        o.apply(&key("g", 1), None);
        assert!(o.group("g").is_none() && o.is_empty(), "a group without offsets is forgotten");
        // A tombstone for something unknown changes nothing.
        o.apply(&key("other", 0), None);
        assert_eq!(o, CommittedOffsets::default());
    }

    #[test]
    fn live_offsets_are_listed_per_offsets_partition() {
        let mut o = CommittedOffsets::default();
        let groups = ["a", "b", "c", "d", "e", "f"];
        for (i, g) in groups.iter().enumerate() {
            o.apply(&key(g, 0), at(i as u64));
            o.apply(&key(g, 1), at(i as u64));
        }
        let mut total = 0;
        for p in 0..4 {
            let live = o.live_in(p, 4);
            assert!(live.iter().all(|(k, _)| offsets_partition(&k.group, 4) == p));
            total += live.len();
        }
        assert_eq!(total, 2 * groups.len(), "every offset is in exactly one partition");
        assert_eq!(o.len(), groups.len());
    }

    #[test]
    fn unloading_a_partition_forgets_exactly_its_groups() {
        let mut o = CommittedOffsets::default();
        let groups = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for g in groups {
            o.apply(&key(g, 0), at(1));
        }
        let p = offsets_partition("a", 4);
        let held = groups.iter().filter(|g| offsets_partition(g, 4) == p).count();
        assert_eq!(o.unload(p, 4), held);
        assert_eq!(o.len(), groups.len() - held);
        assert!(o.iter().all(|(g, _)| offsets_partition(g, 4) != p), "only other partitions' groups stay");
        assert_eq!(o.unload(p, 4), 0, "nothing left to forget");
    }
}
