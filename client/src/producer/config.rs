//! [`ProducerConfig`]: the producer's settings, with Kafka's names, and what follows from
//! them (whether it is idempotent, how many requests it keeps in flight per partition).

use std::time::Duration;

use sluice_core::{Acks, Compression};

/// Producer settings (Kafka's names in brackets).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// [acks]
    pub acks: Acks,
    /// Longest time a record waits for its batch to fill [linger.ms].
    pub linger: Duration,
    /// Target batch size in bytes [batch.size]; must stay below the topic's
    /// max.message.bytes.
    pub batch_size: usize,
    /// Bytes of sealed batches waiting to be sent before `send` waits [buffer.memory].
    pub buffer_memory: usize,
    /// Longest time from a record's append to its acknowledgement, across waiting in
    /// its batch, waiting for earlier batches and every retry; the record then fails
    /// with [`ClientError::DeliveryTimeout`](crate::ClientError::DeliveryTimeout)
    /// [delivery.timeout.ms].
    pub delivery_timeout: Duration,
    /// Longest wait for the answer to one produce request before it counts as a failed
    /// attempt (retried on a fresh look-up of the leader while the delivery timeout
    /// allows) [request.timeout.ms]. A broker that stops answering without closing the
    /// connection is noticed this way.
    pub request_timeout: Duration,
    /// Pause between retries [retry.backoff.ms].
    pub retry_backoff: Duration,
    /// How long a topic's partition count is trusted before it is looked up again, so
    /// partitions added to a topic are used without a restart [metadata.max.age.ms].
    pub metadata_max_age: Duration,
    /// Codec of every batch [compression.type]; the broker stores batches as they come
    /// and consumers decompress them. `batch_size` counts bytes before compression.
    pub compression: Compression,
    /// Idempotent producer [enable.idempotence]: a producer id and per-partition
    /// sequence numbers, so that retries never duplicate or reorder. Needs acks other
    /// than 0 (with acks=0 it is off, as the producer learns nothing to retry on).
    pub enable_idempotence: bool,
    /// Requests in flight per partition [max.in.flight.requests.per.connection];
    /// `None`: 5 with idempotence, 1 without. With idempotence at most 5 (the batches
    /// the broker remembers per producer); without it, more than 1 may reorder batches
    /// on retries.
    pub max_in_flight: Option<usize>,
}

/// Most requests in flight per partition with idempotence.
pub const MAX_IN_FLIGHT_IDEMPOTENT: usize = 5;

impl ProducerConfig {
    pub(super) fn idempotent(&self) -> bool {
        self.enable_idempotence && self.acks != Acks::None
    }

    pub(super) fn max_in_flight(&self) -> usize {
        match (self.idempotent(), self.max_in_flight) {
            (true, n) => n.unwrap_or(MAX_IN_FLIGHT_IDEMPOTENT).clamp(1, MAX_IN_FLIGHT_IDEMPOTENT),
            (false, n) => n.unwrap_or(1).max(1),
        }
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            // No artificial wait: with one request in flight per partition, records
            // that arrive while a batch is being sent form the next batch anyway.
            linger: Duration::ZERO,
            // Batches go to the broker's segment files as they come, so their size costs
            // the broker nothing; per batch there is one gRPC request, one append and
            // one producer-state check, so larger batches carry more records per
            // round trip under load (100 B records, separate broker: 64 KiB 0.61 M
            // records/s, 256 KiB 1.04 M/s; docs/benchmarks.md). `buffer_memory` bounds
            // what waits; well below the default max.message.bytes (1 MiB).
            batch_size: 256 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(30),
            // Kafka's is 30 s; shorter leaves room for retries within the delivery
            // timeout, and is still far above a produce's time on a loaded machine.
            request_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            metadata_max_age: Duration::from_secs(300),
            compression: Compression::None,
            enable_idempotence: true,
            max_in_flight: None,
        }
    }
}
