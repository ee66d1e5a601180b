//! Committed offsets on the coordinator: commits become records of
//! `__consumer_offsets`, start-up replays them, compaction keeps the topic small.
//!
//! Compaction: when a partition of the topic has taken `compact_after_records` records
//! since its last compaction (and more than it holds live offsets), the coordinator
//! appends a snapshot of every live offset of that partition and deletes all batches
//! before the snapshot. A crash between the two steps leaves duplicates that replay
//! resolves (the newest record of a key wins), never a loss. Appends to one partition
//! are serialized by its append lock, which the snapshot holds too, so no commit can
//! slip in between the snapshot and the deletion.

use std::time::Duration;

use sluice_core::{BatchBuilder, Batches};
use sluice_groups::{Committed, GroupError, OffsetKey, TopicPartition, offsets_partition, records};
use tracing::{info, warn};

use super::{
    Coordinator,
    coordinator::{MAX_OFFSETS_BATCH, OFFSETS_TOPIC},
};
use crate::{
    broker::{Acks, FetchParams, OffsetQuery, now_ms},
    error::{BrokerError, Result},
};

/// An encoded record: key and value (`None`: a tombstone).
type RawRecord = (Vec<u8>, Option<Vec<u8>>);

impl Coordinator {
    /// Replays one offsets partition into the state; returns the records read.
    pub(super) async fn replay(&self, p: u32) -> Result<u64> {
        let (mut offset, _) = self.broker.list_offsets(OFFSETS_TOPIC, p, OffsetQuery::Earliest)?;
        let (end, _) = self.broker.list_offsets(OFFSETS_TOPIC, p, OffsetQuery::Latest)?;
        let mut n = 0;
        while offset < end {
            let params =
                FetchParams { offset: offset as i64, max_wait: Duration::ZERO, min_bytes: 0, max_bytes: 4 << 20 };
            let read = self.broker.fetch(OFFSETS_TOPIC, p, params).await?;
            if read.batches.is_empty() {
                break;
            }
            let mut state = self.lock()?;
            for batch in Batches::new(read.batches) {
                let batch = batch?;
                for r in batch.records()? {
                    let r = r?;
                    offset = r.offset + 1;
                    n += 1;
                    let Some(key) = r.key else { continue };
                    match records::decode(&key, r.value.as_deref()) {
                        Ok((k, v)) => state.offsets.apply(&k, v),
                        Err(e) => warn!(partition = p, offset = r.offset, error = %e, "skipping bad offsets record"),
                    }
                }
                offset = offset.max(batch.header.next_offset());
            }
        }
        Ok(n)
    }

    /// Stores committed offsets for a member (or, without a member id, for an empty
    /// group). Offsets above the log end are refused.
    pub async fn commit(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        offsets: Vec<(TopicPartition, u64, String)>,
    ) -> Result<()> {
        self.serve(group)?;
        for (tp, offset, _) in &offsets {
            let count =
                self.broker.partition_count(&tp.topic).ok_or_else(|| BrokerError::UnknownTopic(tp.topic.clone()))?;
            if tp.partition >= count {
                return Err(BrokerError::UnknownPartition { topic: tp.topic.clone(), partition: tp.partition, count });
            }
            // Checked where this broker leads the partition (in a cluster the coordinator
            // need not lead or host it, and Kafka checks nothing here).
            if self.broker.metadata().check_leader(&tp.topic, tp.partition).is_err() {
                continue;
            }
            let Some((log_start, hw, _)) = self.broker.local_offsets(&tp.topic, tp.partition) else { continue };
            if *offset > hw {
                return Err(BrokerError::OffsetOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *offset as i64,
                    log_start,
                    high_watermark: hw,
                });
            }
        }
        self.check_commit(group, member, epoch, offsets.iter().map(|(tp, _, _)| tp))?;
        let now = now_ms();
        let entries = offsets
            .into_iter()
            .map(|(tp, offset, metadata)| {
                (OffsetKey::new(group, &tp), Some(Committed { offset, metadata, commit_time_ms: now }))
            })
            .collect();
        // Checked again under the append lock: the member may have been fenced while
        // the offsets were validated.
        self.write(group, entries, || self.check_commit(group, member, epoch, std::iter::empty())).await
    }

    /// Appends offset records of one group (under its partition's append lock, after
    /// `check` passes) and applies them.
    pub(super) async fn write(
        &self,
        group: &str,
        entries: Vec<(OffsetKey, Option<Committed>)>,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let p = offsets_partition(group, self.partitions);
        let mut since = self.append_locks[p as usize].lock().await;
        check()?;
        let raw = entries
            .iter()
            .map(|(k, v)| Ok((records::encode_key(k)?, v.as_ref().map(records::encode_value).transpose()?)))
            .collect::<Result<Vec<RawRecord>, GroupError>>()?;
        // A leadership that moved while the commit was on its way: NOT_COORDINATOR.
        self.append(p, &raw).await.map_err(|e| self.not_coordinator(group, e))?;
        {
            let mut state = self.lock()?;
            for (k, v) in &entries {
                state.offsets.apply(k, v.clone());
            }
        }
        *since += entries.len() as u64;
        if *since >= self.config.compact_after_records
            && let Err(e) = self.compact(p, &mut since).await
        {
            warn!(partition = p, error = %e, "offsets compaction failed; will retry after the next commit");
        }
        Ok(())
    }

    /// Appends records to an offsets partition in batches; returns the first offset.
    async fn append(&self, p: u32, raw: &[RawRecord]) -> Result<u64> {
        let now = now_ms();
        let mut first = None;
        let mut builder = BatchBuilder::default();
        for (i, (k, v)) in raw.iter().enumerate() {
            builder.push(now, Some(k), v.as_deref(), &[]);
            let last = i + 1 == raw.len();
            if builder.size_bytes() >= MAX_OFFSETS_BATCH || last {
                let batch = std::mem::take(&mut builder).finish()?;
                let appended = self.broker.produce(OFFSETS_TOPIC, p, Acks::All, batch).await?;
                first.get_or_insert(appended.base_offset);
            }
        }
        match first {
            Some(f) => Ok(f),
            None => Ok(self.broker.list_offsets(OFFSETS_TOPIC, p, OffsetQuery::Latest)?.0),
        }
    }

    /// Rewrites the live offsets of partition `p` and deletes everything before them.
    /// The caller holds the partition's append lock (`since`).
    async fn compact(&self, p: u32, since: &mut u64) -> Result<()> {
        let live = self.lock()?.offsets.live_in(p, self.partitions);
        let live = live
            .iter()
            .map(|(k, c)| Ok((records::encode_key(k)?, Some(records::encode_value(c)?))))
            .collect::<Result<Vec<RawRecord>, GroupError>>()?;
        if *since <= live.len() as u64 {
            return Ok(());
        }
        let start = self.append(p, &live).await?;
        let deleted = self.broker.delete_before(OFFSETS_TOPIC, p, start)?;
        info!(partition = p, live = live.len(), batches_deleted = deleted, "offsets partition compacted");
        *since = 0;
        Ok(())
    }

    /// Committed offsets of a group; all of them when `tps` is empty.
    pub fn fetch_offsets(&self, group: &str, tps: &[TopicPartition]) -> Result<Vec<(TopicPartition, Committed)>> {
        self.serve(group)?;
        let state = self.lock()?;
        let Some(offsets) = state.offsets.group(group) else { return Ok(Vec::new()) };
        Ok(offsets
            .iter()
            .filter(|(tp, _)| tps.is_empty() || tps.contains(tp))
            .map(|(tp, c)| (tp.clone(), c.clone()))
            .collect())
    }
}
