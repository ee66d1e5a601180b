//! Rust client for Sluice: [`Producer`], [`Consumer`], [`Admin`], and consumer groups
//! ([`GroupConsumer`], [`GroupAdmin`]) over one [`Client`] connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{Client, Producer, ProducerConfig, ProducerRecord};
//! let client = Client::connect("127.0.0.1:9092").await?;
//! let producer = Producer::new(client.clone(), ProducerConfig::default());
//! let delivery = producer.send(ProducerRecord::new("orders").key("k").value("v")).await?;
//! let meta = delivery.await?;
//! println!("stored at {}-{}@{:?}", meta.topic, meta.partition, meta.offset);
//! # Ok(()) }
//! ```

pub mod admin;
mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod partitioner;
pub mod producer;

pub use admin::Admin;
pub use connection::Client;
pub use consumer::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, StartOffset};
pub use error::ClientError;
pub use group::{GroupAdmin, GroupConfig, GroupConsumer, RebalanceListener, Strategy, TopicPartition};
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use sluice_core::{Header, Record};
pub use sluice_proto::v1 as proto;
