//! The producer: batches records per partition, sends one request per batch, and
//! resolves a [`DeliveryFuture`] per record with its offset.
//!
//! Each partition has a queue and a sender task. Records go into the partition's open
//! batch; the sender takes a batch when it is full (`batch_size`), when it is older than
//! `linger`, or on [`Producer::flush`]. Different partitions proceed in parallel, and
//! while requests are in flight the next batch keeps filling, which is where throughput
//! comes from.
//!
//! The producer is idempotent by default (as Kafka's is since 3.0): before its first
//! send it obtains a producer id and epoch (`InitProducerId`), and every batch carries
//! them with its partition's sequence number, so the broker stores a retried batch once
//! and answers it with its original offset. That allows up to 5 requests in flight per
//! partition without reordering or duplicates. Without idempotence a partition has one
//! request in flight (unless `max_in_flight` says otherwise), so its batches are
//! appended in send order even across retries.
//!
//! - [`accumulator`]: the batching rules (which batch a record joins, when a batch is
//!   sealed, sequence numbers, buffer accounting), pure and tested with explicit `Instant`s.
//! - `sender`: the per-partition task that sends sealed batches, with retries.
//! - `in_flight`: the batches of a partition in flight, for ordering retries.
//! - `config`: [`ProducerConfig`].

mod accumulator;
mod config;
mod in_flight;
mod sender;

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::future::{FutureExt, Shared};
use sluice_core::Header;
use tokio::sync::{Notify, oneshot};

use self::accumulator::{Completion, InFlight, PartitionBatches, RecordParts};
use crate::{
    connection::Client,
    error::{ClientError, Result},
    partitioner,
};

pub use self::config::{MAX_IN_FLIGHT_IDEMPOTENT, ProducerConfig};
pub use sluice_core::Acks;

/// A record to send.
#[derive(Debug, Clone)]
pub struct ProducerRecord {
    pub topic: String,
    /// Explicit partition; otherwise chosen from the key (murmur2, as Kafka does), or
    /// sticky for records without a key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; defaults to now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>) -> Self {
        Self { topic: topic.into(), partition: None, key: None, value: None, headers: Vec::new(), timestamp_ms: None }
    }
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header { key: key.into(), value: Some(value.into()) });
        self
    }
    pub fn timestamp_ms(mut self, ts: i64) -> Self {
        self.timestamp_ms = Some(ts);
        self
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: u32,
    /// `None` with acks=0.
    pub offset: Option<u64>,
    pub timestamp_ms: i64,
}

type BatchOutcome = std::result::Result<Option<u64>, ClientError>;
type SharedOutcome = Shared<oneshot::Receiver<BatchOutcome>>;

/// Resolves when the record's batch is acknowledged (or fails).
#[derive(Debug)]
pub struct DeliveryFuture {
    outcome: SharedOutcome,
    index: u32,
    topic: Arc<str>,
    partition: u32,
    timestamp_ms: i64,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = std::task::ready!(self.outcome.poll_unpin(cx));
        Poll::Ready(match outcome {
            Ok(Ok(base)) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: base.map(|b| b + u64::from(self.index)),
                timestamp_ms: self.timestamp_ms,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Closed),
        })
    }
}

/// How a batch is completed: the sender resolves `done`; every record of the batch
/// holds a clone of `outcome`.
#[derive(Debug)]
struct BatchCompletion {
    done: oneshot::Sender<BatchOutcome>,
    outcome: SharedOutcome,
}

impl BatchCompletion {
    fn new() -> Self {
        let (done, rx) = oneshot::channel();
        Self { done, outcome: rx.shared() }
    }
}

impl Completion for BatchCompletion {
    type Ticket = SharedOutcome;
    fn ticket(&self) -> SharedOutcome {
        self.outcome.clone()
    }
    fn fail(self, error: sluice_core::BatchError) {
        let _ = self.done.send(Err(ClientError::Encode(error)));
    }
}

#[derive(Debug)]
struct PartitionQueue {
    topic: Arc<str>,
    partition: u32,
    batches: Mutex<PartitionBatches<BatchCompletion>>,
    /// Wakes the partition's sender (a batch sealed or opened or completed, a flush, close).
    wake: Notify,
    /// Batches sent and not yet completed.
    sending: in_flight::InFlightBatches,
    /// Set once a batch of the partition was acknowledged.
    acknowledged: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    config: ProducerConfig,
    /// Requests in flight per partition (from `config`).
    max_in_flight: usize,
    /// The idempotent producer's id and epoch, obtained at the first send.
    producer_id: tokio::sync::OnceCell<(i64, i16)>,
    /// Partition count per topic and when it was looked up.
    partition_counts: Mutex<HashMap<String, (u32, Instant)>>,
    queues: Mutex<HashMap<(String, u32), Arc<PartitionQueue>>>,
    sticky: Mutex<HashMap<String, u32>>,
    /// Sealed-but-uncompleted batches, for `buffer_memory` back-pressure and `flush`.
    in_flight: InFlight,
    /// Signalled whenever a batch completes.
    progress: Notify,
    closed: AtomicBool,
}

/// A Sluice producer. Cheap to clone; clones share batches and connections.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data in a consistent state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new producer id and epoch from the broker (InitProducerId), waiting at most
/// `timeout` for the answer.
async fn new_producer_id(client: &Client, timeout: std::time::Duration) -> Result<(i64, i16)> {
    let req = sluice_proto::v1::InitProducerIdRequest { transactional_id: None };
    let mut raw = client.raw();
    let r = tokio::time::timeout(timeout, raw.init_producer_id(req))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
        .map_err(ClientError::from)?
        .into_inner();
    let epoch = i16::try_from(r.producer_epoch)
        .map_err(|_| ClientError::InvalidArgument(format!("the broker gave producer epoch {}", r.producer_epoch)))?;
    tracing::debug!(producer_id = r.producer_id, epoch, "idempotent producer");
    Ok((r.producer_id, epoch))
}

impl Producer {
    pub fn new(client: Client, config: ProducerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                max_in_flight: config.max_in_flight(),
                producer_id: tokio::sync::OnceCell::new(),
                config,
                partition_counts: Mutex::new(HashMap::new()),
                queues: Mutex::new(HashMap::new()),
                sticky: Mutex::new(HashMap::new()),
                in_flight: InFlight::default(),
                progress: Notify::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        let max_age = self.inner.config.metadata_max_age;
        if let Some((n, at)) = lock(&self.inner.partition_counts).get(topic)
            && at.elapsed() < max_age
        {
            return Ok(*n);
        }
        let n = crate::Admin::new(self.inner.client.clone()).partition_count(topic).await?;
        lock(&self.inner.partition_counts).insert(topic.to_string(), (n, Instant::now()));
        Ok(n)
    }

    /// The producer id and epoch of an idempotent producer, obtained once.
    async fn producer_id(&self) -> Result<Option<(i64, i16)>> {
        if !self.inner.config.idempotent() {
            return Ok(None);
        }
        let timeout = self.inner.config.request_timeout;
        let id = self.inner.producer_id.get_or_try_init(|| new_producer_id(&self.inner.client, timeout)).await?;
        Ok(Some(*id))
    }

    fn queue(&self, topic: &str, partition: u32, producer: Option<(i64, i16)>) -> Arc<PartitionQueue> {
        let mut queues = lock(&self.inner.queues);
        if let Some(q) = queues.get(&(topic.to_string(), partition)) {
            return q.clone();
        }
        let batches = match producer {
            Some((id, epoch)) => PartitionBatches::idempotent(id, epoch),
            None => PartitionBatches::default(),
        };
        let q = Arc::new(PartitionQueue {
            topic: topic.into(),
            partition,
            batches: Mutex::new(batches),
            wake: Notify::new(),
            sending: Default::default(),
            acknowledged: AtomicBool::new(false),
        });
        queues.insert((topic.to_string(), partition), q.clone());
        tokio::spawn(sender::sender_loop(Arc::downgrade(&self.inner), q.clone()));
        q
    }

    /// Adds a record to its partition's batch. Waits only when `buffer_memory` is
    /// exhausted. The returned future resolves when the batch is acknowledged; it may be
    /// dropped (the record is still sent; [`Producer::flush`] waits for it).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let producer = self.producer_id().await?;
        let count = self.partition_count(&record.topic).await?;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partitioner::partition_for_key(k, count),
            (None, None) => *lock(&self.inner.sticky).entry(record.topic.clone()).or_insert_with(|| rand_index(count)),
        };
        let ts = record.timestamp_ms.unwrap_or_else(now_ms);
        let q = self.queue(&record.topic, partition, producer);
        let cfg = &self.inner.config;
        let parts = RecordParts {
            timestamp_ms: ts,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
        };
        let appended = lock(&q.batches).append(
            parts,
            cfg.batch_size,
            cfg.compression,
            Instant::now(),
            &self.inner.in_flight,
            BatchCompletion::new,
        );
        let future = DeliveryFuture {
            outcome: appended.ticket,
            index: appended.index,
            topic: q.topic.clone(),
            partition,
            timestamp_ms: ts,
        };
        if appended.sealed_bytes > 0 || appended.opened {
            q.wake.notify_one();
        }
        if appended.sealed_bytes > 0 && record.partition.is_none() && record.key.is_none() {
            // Sticky partitioning (KIP-480): move on once a batch is complete.
            lock(&self.inner.sticky).insert(record.topic.clone(), rand_index(count));
        }
        // Back-pressure: wait while too many bytes are queued.
        while self.inner.in_flight.exceeds(cfg.buffer_memory) {
            let notified = self.inner.progress.notified();
            if !self.inner.in_flight.exceeds(cfg.buffer_memory) {
                break;
            }
            notified.await;
        }
        Ok(future)
    }

    /// Sends every buffered record now and waits until all sent batches are
    /// acknowledged or failed.
    pub async fn flush(&self) {
        let queues: Vec<Arc<PartitionQueue>> = lock(&self.inner.queues).values().cloned().collect();
        for q in &queues {
            lock(&q.batches).flush(&self.inner.in_flight);
            q.wake.notify_one();
        }
        loop {
            let notified = self.inner.progress.notified();
            if self.inner.in_flight.batches() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Flushes and stops the sender tasks; later sends fail with `Closed`.
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.store(true, Ordering::Release);
        for q in lock(&self.inner.queues).values() {
            q.wake.notify_one();
        }
    }
}

fn rand_index(n: u32) -> u32 {
    // A cheap, well-spread choice; exact uniformity does not matter for stickiness.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (nanos.wrapping_mul(2_654_435_761)) % n.max(1)
}
