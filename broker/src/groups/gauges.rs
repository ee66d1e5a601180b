//! Consumer-lag gauges: committed offset and lag per group and partition, members per
//! group. Set from the coordinator's state just before each metrics scrape, so they
//! cost nothing between scrapes.

use super::Coordinator;
use crate::metrics::{GroupLabels, GroupPartitionLabels};

impl Coordinator {
    /// Sets the consumer-lag gauges from the committed offsets (called before a scrape).
    pub fn refresh_gauges(&self) {
        let Ok(state) = self.lock() else { return };
        let m = self.broker.metrics();
        m.group_lag.clear();
        m.group_committed.clear();
        m.group_members.clear();
        for (group, offsets) in state.offsets.iter() {
            for (tp, c) in offsets {
                let l = GroupPartitionLabels { group: group.clone(), topic: tp.topic.clone(), partition: tp.partition };
                let (_, log_end) = self.log_range(tp);
                m.group_committed.get_or_create(&l).set(c.offset as i64);
                m.group_lag.get_or_create(&l).set(log_end.saturating_sub(c.offset) as i64);
            }
        }
        for (group, g) in &state.groups {
            m.group_members.get_or_create(&GroupLabels { group: group.clone() }).set(g.members.len() as i64);
        }
    }
}
