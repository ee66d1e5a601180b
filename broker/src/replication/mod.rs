//! Replication between brokers, given a [`MetadataStore`](crate::metadata::MetadataStore)
//! that [`replicates`](crate::metadata::MetadataStore::replicates): followers pull from
//! their leader as Kafka's do, the leader tracks their log end offsets and advances the
//! high watermark over the ISR, and ISR changes go to the controller through
//! `alter_partition`. With one replica, or a store that does not replicate, none of this
//! runs and the data path is exactly the single-broker one.
//!
//! - `leader`: per partition this broker leads, each follower's log end offset and
//!   last caught-up time; the high watermark rule (minimum log end offset over the ISR,
//!   only while the ISR has at least `min.insync.replicas` members, KIP-966).
//! - `serve`: the leader's side of `sluice.v1.Replication`: ReplicaFetch (long poll,
//!   fencing, diverging epochs) and OffsetForLeaderEpoch.
//! - `isr`: the leader's periodic ISR check: shrink followers that did not catch up
//!   within `replica.lag.time.max.ms`, expand those that did.
//! - `fetcher`: the follower's side: one fetch loop per leader broker, over every
//!   partition followed there; truncation by leader epoch before fetching.
//! - `truncate`: the follower's truncation rules (KIP-101, KIP-279, KIP-320).

pub mod fetcher;
pub mod isr;
pub mod leader;
pub mod serve;
mod truncate;

use std::time::Duration;

pub use leader::Leaders;

/// Kafka's default `replica.lag.time.max.ms`.
pub const DEFAULT_REPLICA_LAG_TIME_MAX: Duration = Duration::from_millis(30_000);
/// Longest a leader holds a ReplicaFetch when nothing is new.
pub const REPLICA_FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Bytes of batches per partition in one ReplicaFetch answer.
pub const REPLICA_FETCH_PARTITION_MAX_BYTES: usize = 1024 * 1024;
/// Bytes of batches in one ReplicaFetch answer, all partitions together.
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How often followers look at the metadata for leader changes, and leaders check
/// their ISR.
pub const METADATA_POLL: Duration = Duration::from_millis(150);
