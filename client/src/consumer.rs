//! The consumer: reads assigned partitions by offset. Each partition keeps one fetch
//! (a long poll) in flight, so new data is returned as soon as the broker has it and
//! partitions are read in parallel. Records below the requested position (the start
//! of a batch) are skipped. Consumer groups build on this in a later layer.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use sluice_core::{Batches, Header};
use sluice_proto::v1 as pb;
use tokio::time::Instant;

use crate::{
    connection::Client,
    error::{ClientError, Result},
};

/// What to do when the position is outside the retained log [auto.offset.reset].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// Jump to the log start offset.
    #[default]
    Earliest,
    /// Jump to the high watermark.
    Latest,
    /// Return the out-of-range error to the application.
    None,
}

/// Where reading of an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    Offset(u64),
    /// First record at or after this timestamp (ms since the Unix epoch).
    Timestamp(i64),
}

/// Consumer settings (Kafka's names in brackets).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Longest a fetch waits for data [fetch.max.wait.ms].
    pub max_wait: Duration,
    /// Bytes a fetch waits for [fetch.min.bytes].
    pub min_bytes: u32,
    /// Bytes per partition per fetch [max.partition.fetch.bytes].
    pub max_partition_bytes: u32,
    /// [auto.offset.reset]
    pub auto_offset_reset: AutoOffsetReset,
    /// Check each batch's CRC before handing out its records [check.crcs]. Compressed
    /// batches are decompressed here, whatever the codec.
    pub check_crcs: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_partition_bytes: 4 * 1024 * 1024,
            auto_offset_reset: AutoOffsetReset::Earliest,
            check_crcs: true,
        }
    }
}

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

type FetchOutcome = (String, u32, u64, std::result::Result<pb::FetchResponse, ClientError>);
type FetchFuture = std::pin::Pin<Box<dyn std::future::Future<Output = FetchOutcome> + Send>>;

#[derive(Debug)]
struct Assignment {
    topic: Arc<str>,
    position: u64,
    in_flight: bool,
    high_watermark: u64,
    /// Bumped on seek so that a response for an old position is ignored.
    generation: u64,
}

/// A spawned fetch, aborted when the consumer drops it (unassigned, closed).
struct AbortOnDrop(tokio::task::JoinHandle<FetchOutcome>);

impl std::future::Future for AbortOnDrop {
    type Output = std::result::Result<FetchOutcome, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A consumer with manually assigned partitions.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assignments: HashMap<(String, u32), Assignment>,
    fetches: FuturesUnordered<FetchFuture>,
    ready: VecDeque<ConsumerRecord>,
    /// Source of `Assignment::generation`: unique across unassign/assign, so that a
    /// fetch answered after its partition was unassigned and assigned again is ignored.
    generations: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("assignments", &self.assignments).finish_non_exhaustive()
    }
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Self {
        Self {
            client,
            config,
            assignments: HashMap::new(),
            fetches: FuturesUnordered::new(),
            ready: VecDeque::new(),
            generations: 0,
        }
    }

    /// Adds a partition to read from `start`. Unknown topics or partitions fail here.
    pub async fn assign(&mut self, topic: &str, partition: u32, start: StartOffset) -> Result<()> {
        // The free function, not `self.resolve`: a `&Consumer` held across the await
        // would make this future `!Send` (`Consumer` is not `Sync`).
        let position = resolve(self.client.clone(), topic.to_string(), partition, start).await?;
        self.generations += 1;
        let generation = self.generations;
        self.assignments.insert(
            (topic.to_string(), partition),
            Assignment { topic: topic.into(), position, in_flight: false, high_watermark: 0, generation },
        );
        Ok(())
    }

    /// Assigns every partition of `topic`.
    pub async fn assign_topic(&mut self, topic: &str, start: StartOffset) -> Result<u32> {
        let n = crate::Admin::new(self.client.clone()).partition_count(topic).await?;
        for p in 0..n {
            self.assign(topic, p, start).await?;
        }
        Ok(n)
    }

    /// Stops reading a partition.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        self.assignments.remove(&(topic.to_string(), partition));
        self.ready.retain(|r| !(&*r.topic == topic && r.partition == partition));
    }

    /// Moves the position of an assigned partition.
    pub async fn seek(&mut self, topic: &str, partition: u32, start: StartOffset) -> Result<()> {
        if !self.assignments.contains_key(&(topic.to_string(), partition)) {
            return Err(ClientError::InvalidArgument(format!("{topic}-{partition} is not assigned")));
        }
        self.assign(topic, partition, start).await?;
        self.ready.retain(|r| !(&*r.topic == topic && r.partition == partition));
        Ok(())
    }

    /// Next offset to be returned for a partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.assignments.get(&(topic.to_string(), partition)).map(|a| a.position)
    }

    /// Last high watermark seen for a partition (for lag).
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        self.assignments.get(&(topic.to_string(), partition)).map(|a| a.high_watermark)
    }

    fn start_fetches(&mut self) {
        for ((topic, partition), a) in self.assignments.iter_mut() {
            if a.in_flight {
                continue;
            }
            a.in_flight = true;
            let client = self.client.clone();
            let req = pb::FetchRequest {
                topic: topic.clone(),
                partition: *partition,
                offset: a.position as i64,
                max_wait_ms: self.config.max_wait.as_millis() as u32,
                min_bytes: self.config.min_bytes,
                max_bytes: self.config.max_partition_bytes,
                replica_id: None,
                current_leader_epoch: None,
            };
            let (topic, partition, generation) = (topic.clone(), *partition, a.generation);
            let (failed_topic, failed_partition) = (topic.clone(), partition);
            // Spawned, so the request is on its way (and its answer arriving) while the
            // application handles the records of the previous one: the next poll finds
            // it answered instead of waiting a round trip.
            let fetch = tokio::spawn(async move {
                let mut raw = client.partition_client(&topic, partition).await;
                let r = raw.fetch(req).await.map(|r| r.into_inner()).map_err(ClientError::from);
                if let Err(e) = &r
                    && crate::cluster::needs_refresh(e)
                {
                    client.refresh_route(&topic, partition, e).await;
                }
                (topic, partition, generation, r)
            });
            let fetch = AbortOnDrop(fetch);
            self.fetches.push(Box::pin(async move {
                match fetch.await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let e = ClientError::Transport(format!("fetch task: {e}"));
                        (failed_topic, failed_partition, generation, Err(e))
                    }
                }
            }));
        }
    }

    /// Returns the next records, waiting up to `timeout` for some to arrive. An empty
    /// vector means nothing arrived in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.ready.is_empty() {
                // Prefetch: the next fetch of each partition runs while these are handled.
                self.start_fetches();
                return Ok(self.ready.drain(..).collect());
            }
            self.start_fetches();
            if self.fetches.is_empty() {
                tokio::time::sleep_until(deadline).await;
                return Ok(Vec::new());
            }
            let next = tokio::time::timeout_at(deadline, self.fetches.next()).await;
            let Ok(Some((topic, partition, generation, result))) = next else {
                return Ok(Vec::new());
            };
            self.handle(topic, partition, generation, result).await?;
        }
    }

    async fn handle(
        &mut self,
        topic: String,
        partition: u32,
        generation: u64,
        result: std::result::Result<pb::FetchResponse, ClientError>,
    ) -> Result<()> {
        let key = (topic.clone(), partition);
        let Some(a) = self.assignments.get_mut(&key) else { return Ok(()) };
        if a.generation != generation {
            // Answer for a position we moved away from; a new fetch starts next poll.
            a.in_flight = false;
            return Ok(());
        }
        a.in_flight = false;
        let response = match result {
            Ok(r) => r,
            Err(e) if e.kind() == Some(pb::ErrorCode::OffsetOutOfRange) => {
                let start = match self.config.auto_offset_reset {
                    AutoOffsetReset::Earliest => StartOffset::Earliest,
                    AutoOffsetReset::Latest => StartOffset::Latest,
                    AutoOffsetReset::None => return Err(e),
                };
                tracing::info!(%topic, partition, error = %e, "resetting position");
                let position = resolve(self.client.clone(), topic.clone(), partition, start).await?;
                if let Some(a) = self.assignments.get_mut(&key) {
                    a.position = position;
                }
                return Ok(());
            }
            Err(e) if e.kind() == Some(pb::ErrorCode::NotLeader) => {
                // The route was refreshed; fetch again from the leader after a pause
                // (no leader may be elected yet).
                tracing::debug!(%topic, partition, error = %e, "not the leader; fetching from the new leader");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        a.high_watermark = response.high_watermark;
        let mut position = a.position;
        let topic_arc = a.topic.clone();
        for batch in Batches::new(response.batches) {
            let batch = batch?;
            if self.config.check_crcs {
                batch.verify()?;
            }
            if batch.header.next_offset() <= position {
                continue;
            }
            for r in batch.records()? {
                let r = r?;
                if r.offset < position {
                    continue;
                }
                position = r.offset + 1;
                self.ready.push_back(ConsumerRecord {
                    topic: topic_arc.clone(),
                    partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
            position = position.max(batch.header.next_offset());
        }
        a.position = position;
        Ok(())
    }
}

/// Resolves a start position to an offset. A free function over owned values so that
/// the futures of `Consumer` stay `Send` (a `&Consumer` held across an await would not).
async fn resolve(client: Client, topic: String, partition: u32, start: StartOffset) -> Result<u64> {
    let admin = crate::Admin::new(client);
    Ok(match start {
        StartOffset::Offset(o) => o,
        StartOffset::Earliest => admin.list_offset(&topic, partition, pb::OffsetSpec::Earliest, 0).await?.0,
        StartOffset::Latest => admin.list_offset(&topic, partition, pb::OffsetSpec::Latest, 0).await?.0,
        StartOffset::Timestamp(ts) => admin.list_offset(&topic, partition, pb::OffsetSpec::Timestamp, ts).await?.0,
    })
}
