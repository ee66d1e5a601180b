//! The data path: produce (acks, durability, the partition's leader epoch), fetch long
//! poll, list offsets, record deletion, retention runs and per-partition gauges. Reads and
//! writes of a partition's log go through [`PartitionStore`].

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use sluice_core::batch;
use sluice_log::{PartitionLog, PartitionStore, ReadResult, RetentionLimits, producer_state::ProducerBatch};
use tokio::time::timeout_at;
use tracing::{debug, info, warn};

use super::{Acks, Broker, Topic, idempotence::IdempotentAppend, now_ms, replica::DEFAULT_PRODUCE_TIMEOUT};
use crate::{
    config::Durability,
    error::{BrokerError, Result},
    metrics::{DurabilityLabels, Metrics, PartitionLabels},
    replication::leader::{LeaderPartition, lock},
};

/// What a successful append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub record_count: u32,
    pub append_time_ms: i64,
    pub log_start: u64,
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    Timestamp(i64),
}

/// A fetch request in domain terms.
#[derive(Debug, Clone)]
pub struct FetchParams {
    pub offset: i64,
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
}

/// Default fetch size when a request says 0, and the ceiling for any request.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1024 * 1024;
pub const FETCH_MAX_BYTES_CEILING: usize = 32 * 1024 * 1024;
/// Longest long-poll a fetch may ask for.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

impl Broker {
    /// Validates one batch (a Kafka RecordBatch v2: header, CRC and every record, a
    /// compressed one decompressed for the check) and appends it as it came, with its
    /// base offset and leader epoch written in; waits for durability as the topic
    /// requires. A batch of an idempotent producer is checked against its producer
    /// state first: a retry of a stored batch is answered with its original offset.
    pub async fn produce(&self, topic: &str, partition: u32, acks: Acks, batch: Bytes) -> Result<Appended> {
        self.produce_with_timeout(topic, partition, acks, batch, DEFAULT_PRODUCE_TIMEOUT).await
    }

    /// [`Self::produce`] with the request's timeout: how long acks=all waits for the
    /// in-sync replicas on a replicated partition (Kafka's Produce `timeout_ms`).
    pub async fn produce_with_timeout(
        &self,
        topic: &str,
        partition: u32,
        acks: Acks,
        batch: Bytes,
        timeout: Duration,
    ) -> Result<Appended> {
        let started = Instant::now();
        self.metadata.check_leader(topic, partition)?;
        let (t, log) = self.partition(topic, partition)?;
        let replicated = if self.is_replicated(&t) { Some(self.leader_partition(&t, partition)?) } else { None };
        if let Some(state) = &replicated {
            if acks == Acks::All {
                self.check_in_sync(topic, partition, &lock(state))?;
            }
        } else if acks == Acks::All && t.spec.replication_factor > 1 {
            // Without replication, "all in-sync replicas" would be a promise not kept.
            return Err(BrokerError::NotEnoughReplicas {
                topic: topic.to_string(),
                replication_factor: t.spec.replication_factor,
            });
        }
        let info = batch::validate(&batch, t.config.max_message_bytes as usize)?;
        let now = now_ms();
        let leader_epoch = self.metadata.leader_epoch(topic, partition);
        // The check and the write block on the disk: off the async workers.
        let appended = {
            let (log, batch, idempotence, metrics) =
                (log.clone(), batch.clone(), self.idempotence.clone(), self.metrics.clone());
            tokio::task::spawn_blocking(move || match ProducerBatch::of(&info) {
                None => Ok(IdempotentAppend::Appended(log.append(&batch, info, leader_epoch)?)),
                Some(producer) => idempotence.append(&log, producer, &batch, info, leader_epoch, &metrics),
            })
            .await
            .map_err(|e| BrokerError::Storage(format!("append task failed: {e}")))?
        };
        let stored = match appended {
            Ok(IdempotentAppend::Appended(stored)) => stored,
            Ok(IdempotentAppend::Duplicate { base_offset, last_offset }) => {
                if let Some(state) = &replicated {
                    // The original may not be committed yet: answer once it is, as the
                    // original's answer would have come.
                    if acks == Acks::All {
                        self.wait_committed(topic, partition, &log, state, last_offset + 1, timeout).await?;
                    }
                } else if t.config.durability == Durability::Always && acks != Acks::None {
                    // The original may still wait for its flush, or its request may
                    // have been cancelled with the connection: answer once it is
                    // durable, and make it visible.
                    self.group_commit.flushed().await?;
                    log.advance_high_watermark(last_offset + 1);
                }
                return Ok(Appended {
                    base_offset,
                    record_count: info.record_count,
                    append_time_ms: now,
                    log_start: log.log_start_offset(),
                });
            }
            Err(e) => {
                if matches!(e, BrokerError::DiskFull { .. }) {
                    self.metrics.disk_full.set(1);
                }
                return Err(e);
            }
        };
        let next = stored.next_offset();
        if let Some(state) = &replicated {
            self.commit_replicated(topic, partition, &t, &log, state, acks, next, timeout).await?;
        } else {
            self.commit(&t, &log, acks, next).await?;
        }
        self.metrics.disk_full.set(0);
        let labels = Metrics::topic(topic);
        self.metrics.produce_requests.get_or_create(&labels).inc();
        self.metrics.produce_records.get_or_create(&labels).inc_by(u64::from(info.record_count));
        self.metrics.produce_bytes.get_or_create(&labels).inc_by(batch.len() as u64);
        self.metrics
            .produce_latency
            .get_or_create(&DurabilityLabels { durability: t.config.durability.as_str().to_string() })
            .observe(started.elapsed().as_secs_f64());
        debug!(topic, partition, base_offset = stored.base_offset, records = info.record_count, "appended");
        Ok(Appended {
            base_offset: stored.base_offset,
            record_count: info.record_count,
            append_time_ms: now,
            log_start: log.log_start_offset(),
        })
    }

    /// Makes an appended batch visible on an unreplicated partition: at once with
    /// `interval` durability, after its flush with `always` (the single-broker path).
    async fn commit(&self, t: &Topic, log: &Arc<PartitionLog>, acks: Acks, next: u64) -> Result<()> {
        match t.config.durability {
            Durability::Interval => log.advance_high_watermark(next),
            Durability::Always if acks == Acks::None => {
                // Nobody waits for the answer, but consumers must still see only
                // flushed data.
                let gc = self.group_commit.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    if gc.flushed().await.is_ok() {
                        log.advance_high_watermark(next);
                    }
                });
            }
            Durability::Always => {
                if let Err(e) = self.group_commit.flushed().await {
                    if e.is_disk_full() {
                        self.metrics.disk_full.set(1);
                    }
                    return Err(e.into());
                }
                log.advance_high_watermark(next);
            }
        }
        Ok(())
    }

    /// The commit of a replicated partition: followers are woken to fetch the batch;
    /// the high watermark moves by the ISR rule (with `always` durability once the
    /// leader's copy is flushed); acks=all waits until it passes the batch.
    #[allow(clippy::too_many_arguments)]
    async fn commit_replicated(
        &self,
        topic: &str,
        partition: u32,
        t: &Topic,
        log: &Arc<PartitionLog>,
        state: &Mutex<LeaderPartition>,
        acks: Acks,
        next: u64,
        timeout: Duration,
    ) -> Result<()> {
        self.leaders.notify_appended();
        if t.config.durability == Durability::Always
            && acks != Acks::None
            && let Err(e) = self.group_commit.flushed().await
        {
            if e.is_disk_full() {
                self.metrics.disk_full.set(1);
            }
            return Err(e.into());
        }
        self.update_high_watermark(log, &lock(state));
        if acks == Acks::All {
            self.wait_committed(topic, partition, log, state, next, timeout).await?;
        }
        Ok(())
    }

    /// Reads batches from `offset`; waits up to `max_wait` for `min_bytes` to be there.
    pub async fn fetch(&self, topic: &str, partition: u32, params: FetchParams) -> Result<ReadResult> {
        let started = Instant::now();
        self.metadata.check_leader(topic, partition)?;
        let (_, log) = self.partition(topic, partition)?;
        let max_bytes = match params.max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES,
            n => n.min(FETCH_MAX_BYTES_CEILING),
        };
        let deadline = tokio::time::Instant::now() + params.max_wait.min(MAX_FETCH_WAIT);
        let mut hw = log.watch_high_watermark();
        let mut stopping = self.stopping.subscribe();
        let result = loop {
            hw.borrow_and_update();
            let r = log.read(params.offset, max_bytes)?;
            if r.batches.len() >= params.min_bytes.max(1)
                || tokio::time::Instant::now() >= deadline
                || *stopping.borrow()
            {
                break r;
            }
            tokio::select! {
                changed = timeout_at(deadline, hw.changed()) => match changed {
                    Ok(Ok(())) => continue,
                    // The partition was deleted while we waited.
                    Ok(Err(_)) => return Err(BrokerError::UnknownTopic(topic.to_string())),
                    Err(_) => break log.read(params.offset, max_bytes)?,
                },
                // Shutdown: answer with what is there rather than hold the connection open.
                _ = stopping.wait_for(|s| *s) => break log.read(params.offset, max_bytes)?,
            }
        };
        let labels = Metrics::topic(topic);
        self.metrics.fetch_requests.get_or_create(&labels).inc();
        self.metrics.fetch_bytes.get_or_create(&labels).inc_by(result.batches.len() as u64);
        self.metrics.fetch_latency.observe(started.elapsed().as_secs_f64());
        Ok(result)
    }

    /// Looks up an offset. For a timestamp later than every record, returns the high
    /// watermark and no timestamp (as Kafka does).
    pub fn list_offsets(&self, topic: &str, partition: u32, query: OffsetQuery) -> Result<(u64, Option<i64>)> {
        self.metadata.check_leader(topic, partition)?;
        let (_, log) = self.partition(topic, partition)?;
        let o = log.offsets();
        Ok(match query {
            OffsetQuery::Earliest => (o.log_start, None),
            OffsetQuery::Latest => (o.high_watermark, None),
            OffsetQuery::Timestamp(ts) => match log.offset_for_timestamp(ts)? {
                Some((off, ts)) => (off, Some(ts)),
                None => (o.high_watermark, None),
            },
        })
    }

    /// Log start, high watermark and log end of this broker's own replica of a
    /// partition, whatever its role (a follower's high watermark trails the leader's by
    /// a fetch round trip); `None` when no replica of it is hosted here.
    pub fn local_offsets(&self, topic: &str, partition: u32) -> Option<(u64, u64, u64)> {
        let (_, log) = self.partition(topic, partition).ok()?;
        let o = log.offsets();
        Some((o.log_start, o.high_watermark, o.log_end))
    }

    /// Deletes every batch of a partition that ends at or before `offset` (compaction
    /// of internal topics). Returns the number of batches deleted.
    pub fn delete_before(&self, topic: &str, partition: u32, offset: u64) -> Result<u64> {
        let (_, log) = self.partition(topic, partition)?;
        Ok(log.delete_records_before(offset)?)
    }

    /// Applies retention to every partition once, as of `now_ms`. Returns batches deleted.
    pub fn apply_retention(&self, now_ms: i64) -> u64 {
        let topics: Vec<Arc<Topic>> = match self.topics.read() {
            Ok(t) => t.values().cloned().collect(),
            Err(_) => return 0,
        };
        let mut total = 0;
        for t in topics {
            let limits =
                RetentionLimits { retention_ms: t.config.retention_ms, retention_bytes: t.config.retention_bytes };
            if limits.retention_ms.is_none() && limits.retention_bytes.is_none() {
                continue;
            }
            for p in t.partitions.values() {
                match p.apply_retention(limits, now_ms) {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(topic = %t.spec.name, partition = p.partition(), batches = n,
                              log_start = p.log_start_offset(), "retention deleted batches");
                        self.metrics.retention_deleted_batches.get_or_create(&Metrics::topic(&t.spec.name)).inc_by(n);
                        total += n;
                    }
                    Err(e) => warn!(topic = %t.spec.name, partition = p.partition(), error = %e, "retention failed"),
                }
            }
        }
        total
    }

    /// Refreshes per-partition gauges (called before each scrape).
    pub fn refresh_gauges(&self) {
        let Ok(topics) = self.topics.read() else { return };
        let mut n = 0;
        for t in topics.values() {
            for p in t.partitions.values() {
                n += 1;
                let l = PartitionLabels { topic: t.spec.name.clone(), partition: p.partition() };
                let o = p.offsets();
                self.metrics.partition_size_bytes.get_or_create(&l).set(p.size_bytes() as i64);
                self.metrics.partition_log_start.get_or_create(&l).set(o.log_start as i64);
                self.metrics.partition_log_end.get_or_create(&l).set(o.log_end as i64);
                self.metrics.partition_high_watermark.get_or_create(&l).set(o.high_watermark as i64);
            }
        }
        self.metrics.partitions.set(n);
    }
}
