//! What a bench runs against (an embedded broker, `--broker`, or the transport-only
//! server) and the topic it uses; how both are set up and cleaned up.

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use anyhow::Context;
use sluice_broker::config::MAX_MESSAGE_BYTES_CEILING;
use sluice_client::{Admin, Client, ProducerConfig, proto::TopicDescription};
use sluice_core::Durability;

use super::{
    args::{Common, Stop},
    embedded::{EmbeddedBroker, ProcessMemory},
    load::{Clock, LoadSpec},
    null_server::NullServer,
    report::{BrokerStats, Report, TargetInfo},
};

#[derive(Debug)]
enum Backend {
    Embedded(EmbeddedBroker),
    External,
    TransportOnly(NullServer),
}

/// The topic a bench runs on.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Use this existing topic (its own partitions and durability) instead of creating
    /// `bench-<random>`.
    pub existing: Option<String>,
    pub partitions: u32,
    pub durability: Durability,
    /// The largest batch producers will send; above the broker's default
    /// `max.message.bytes` the created topic allows it.
    pub largest_batch: u64,
    /// Keep a created topic on a `--broker` (it is deleted otherwise).
    pub keep: bool,
}

/// What the transport-only server answers fetches with.
#[derive(Debug, Clone, Copy)]
pub struct TransportOnly {
    pub record_size: usize,
    pub batch_size: usize,
}

/// A bench's broker and topic.
#[derive(Debug)]
pub struct Session {
    backend: Backend,
    pub addr: String,
    pub target: TargetInfo,
    pub topic: String,
    pub partitions: u32,
    /// The topic's effective durability, as the broker reports it.
    pub durability: String,
    /// True when the bench created the topic (it is empty at the start).
    pub created: bool,
    /// `--keep-topic`: leave what the bench created (topic, group offsets) on a `--broker`.
    pub keep_topic: bool,
}

impl Session {
    /// Starts the embedded or transport-only server if needed, then creates the topic
    /// (or checks the one named by `--topic`).
    pub async fn open(
        broker: Option<String>,
        transport_only: Option<TransportOnly>,
        topic: &TopicSpec,
    ) -> anyhow::Result<Self> {
        let (backend, addr, target) = match (broker, transport_only) {
            (Some(_), Some(_)) => {
                anyhow::bail!("--transport-only runs its own server; it cannot be used with --broker")
            }
            (Some(addr), None) => {
                let target = TargetInfo::External { address: addr.clone() };
                (Backend::External, addr, target)
            }
            (None, Some(t)) => {
                let server = NullServer::start(t.record_size, t.batch_size).await?;
                let addr = server.addr.to_string();
                (Backend::TransportOnly(server), addr.clone(), TargetInfo::TransportOnly { address: addr })
            }
            (None, None) => {
                let broker = EmbeddedBroker::start().await?;
                let addr = broker.addr().to_string();
                let data_dir = broker.data_dir().display().to_string();
                eprintln!("bench: started an embedded broker at {addr} with data in {data_dir}");
                (Backend::Embedded(broker), addr.clone(), TargetInfo::Embedded { address: addr, data_dir })
            }
        };
        let (name, created, desc) = match prepare_topic(&addr, topic).await {
            Ok(t) => t,
            Err(e) => {
                let _ = backend.stop().await;
                return Err(e);
            }
        };
        Ok(Self {
            backend,
            addr,
            target,
            partitions: desc.partitions.len() as u32,
            durability: desc.config.get("durability").cloned().unwrap_or_else(|| "unknown".into()),
            topic: name,
            created,
            keep_topic: topic.keep,
        })
    }

    /// The load a workload sends: `common`'s producer settings against this topic.
    pub fn load(&self, common: &Common, stop: Stop, rate: Option<u64>, stamp: bool, clock: Clock) -> LoadSpec {
        let defaults = ProducerConfig::default();
        LoadSpec {
            addr: self.addr.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            producers: common.producers,
            record_size: common.record_size,
            payload: common.payload,
            stop,
            rate,
            config: ProducerConfig {
                acks: common.acks,
                linger: Duration::from_millis(common.linger_ms),
                batch_size: common.batch_size,
                compression: common.compression,
                enable_idempotence: common.idempotence,
                // Room for a few full batches even when they are large.
                buffer_memory: defaults.buffer_memory.max(4 * common.batch_size),
                ..defaults
            },
            stamp,
            clock,
        }
    }

    /// A report with this session's and `common`'s settings filled in.
    pub fn report(&self, workload: &'static str, common: &Common) -> Report {
        Report {
            workload,
            target: self.target.clone(),
            topic: self.topic.clone(),
            records: 0,
            record_size: common.record_size,
            producers: common.producers,
            consumers: 0,
            partitions: self.partitions,
            acks: common.acks.as_str().to_string(),
            durability: self.durability.clone(),
            batch_size: common.batch_size,
            linger_ms: common.linger_ms,
            compression: common.compression.to_string(),
            idempotence: common.idempotence && common.acks != sluice_client::Acks::None,
            rate: None,
            elapsed_s: 0.0,
            records_per_sec: 0.0,
            mb_per_sec: 0.0,
            latency: None,
            errors: 0,
            first_error: None,
            fill: None,
            broker: None,
            notes: Vec::new(),
        }
    }

    /// Ends the run. For an embedded broker, returns its memory and disk figures
    /// (`payload_bytes` is what the bench wrote); on `--broker`, deletes the topic the
    /// bench created unless asked to keep it.
    pub async fn close(self, payload_bytes: u64) -> anyhow::Result<Option<BrokerStats>> {
        match self.backend {
            Backend::Embedded(broker) => {
                let memory = ProcessMemory::read();
                let stored = stored_bytes(&self.addr, &self.topic).await.ok();
                let disk = broker.stop().await?;
                Ok(Some(BrokerStats {
                    process_rss_bytes: memory.rss_bytes,
                    process_peak_rss_bytes: memory.peak_rss_bytes,
                    data_dir_bytes: disk.allocated_bytes,
                    data_dir_apparent_bytes: disk.apparent_bytes,
                    stored_log_bytes: stored,
                    payload_bytes,
                }))
            }
            Backend::External => {
                if self.created && !self.keep_topic {
                    let admin = Admin::new(Client::connect(&self.addr).await?);
                    admin.delete_topic(&self.topic).await.with_context(|| format!("cannot delete {}", self.topic))?;
                }
                Ok(None)
            }
            Backend::TransportOnly(server) => {
                server.stop().await?;
                Ok(None)
            }
        }
    }
}

impl Backend {
    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Backend::Embedded(b) => b.stop().await.map(|_| ()),
            Backend::External => Ok(()),
            Backend::TransportOnly(s) => s.stop().await,
        }
    }
}

/// A name no other bench run of this machine uses at the same time: `<prefix>-<hex>`.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", RandomState::new().hash_one(std::process::id()) as u32)
}

/// Creates `bench-<random>` with `spec`'s partitions and durability, or describes the
/// topic named by `--topic`. Returns its name, whether it was created, and its
/// description.
async fn prepare_topic(addr: &str, spec: &TopicSpec) -> anyhow::Result<(String, bool, TopicDescription)> {
    let admin = Admin::new(Client::connect(addr).await?);
    if let Some(name) = &spec.existing {
        let desc = admin.describe_topic(name).await.with_context(|| format!("cannot use topic '{name}'"))?;
        return Ok((name.clone(), false, desc));
    }
    let name = random_name("bench");
    let mut config = BTreeMap::from([("durability".to_string(), spec.durability.as_str().to_string())]);
    const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1024 * 1024 + 12;
    if spec.largest_batch > DEFAULT_MAX_MESSAGE_BYTES {
        let max = spec.largest_batch.min(u64::from(MAX_MESSAGE_BYTES_CEILING));
        config.insert("max.message.bytes".to_string(), max.to_string());
    }
    let desc = admin
        .create_topic(&name, spec.partitions, config)
        .await
        .with_context(|| format!("cannot create topic '{name}'"))?;
    Ok((name, true, desc))
}

/// Bytes the broker stores for `topic` (broker headers + batches).
pub async fn stored_bytes(addr: &str, topic: &str) -> anyhow::Result<u64> {
    let admin = Admin::new(Client::connect(addr).await?);
    Ok(admin.describe_topic(topic).await?.partitions.iter().map(|p| p.size_bytes).sum())
}

/// Records in `topic` from the log start to the high watermark.
pub async fn records_in(addr: &str, topic: &str) -> anyhow::Result<u64> {
    let admin = Admin::new(Client::connect(addr).await?);
    let desc = admin.describe_topic(topic).await?;
    Ok(desc.partitions.iter().map(|p| p.high_watermark.saturating_sub(p.log_start_offset)).sum())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::bench::{
        args::{BenchArgs, Workload},
        produce,
    };

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_broker_serves_a_produce_run_and_is_removed() {
        let argv =
            ["x", "produce", "--count", "500", "--partitions", "2", "--durability", "always", "--linger-ms", "1"];
        let Workload::Produce(args) = Cli::parse_from(argv).bench.workload else { panic!("not produce") };
        let session = Session::open(None, None, &args.common.topic_spec(1)).await.expect("open");
        let TargetInfo::Embedded { data_dir, .. } = session.target.clone() else { panic!("not embedded") };
        let (report, payload) = produce::run(&args, &session).await.expect("produce");
        assert_eq!((report.records, report.errors, report.partitions), (500, 0, 2));
        assert_eq!(report.durability, "always");
        let stats = session.close(payload).await.expect("close").expect("embedded broker figures");
        assert_eq!(stats.payload_bytes, 500 * 100);
        assert!(stats.stored_log_bytes.expect("stored") > 500 * 100);
        assert!(!std::path::Path::new(&data_dir).exists(), "{data_dir} was not removed");
    }
}
