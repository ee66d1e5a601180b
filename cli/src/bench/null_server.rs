//! The transport-only baseline: an in-process `sluice.v1.Sluice` server with storage
//! switched off, so a bench can show the ceiling the gRPC path alone allows.
//!
//! Produce reads the record count from the batch header (no CRC or framing checks)
//! and answers at once with increasing offsets. Fetch serves a batch built once at
//! start (with the bench's record size and batch size), up to the offsets produced so
//! far. Each batch of a response gets its base offset written in (outside the CRC, as
//! the real broker does at append), because a consumer skips batches whose offsets are
//! below its position; copying the batch bytes into the response is what the real
//! broker does too. The server uses the real broker's
//! window sizes and message limits, so only storage differs.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use sluice_broker::{
    broker::{DEFAULT_FETCH_MAX_BYTES, FETCH_MAX_BYTES_CEILING, MAX_FETCH_WAIT},
    config::MAX_MESSAGE_BYTES_CEILING,
};
use sluice_client::proto::{self as pb, sluice_server::Sluice, sluice_server::SluiceServer};
use sluice_core::{BatchBuilder, batch};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Request, Response, Status, transport::Server, transport::server::TcpIncoming};

/// Shown as the topics' `durability`.
const DURABILITY: &str = "none (storage off)";

/// A running null server; [`NullServer::stop`] ends it.
#[derive(Debug)]
pub struct NullServer {
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl NullServer {
    /// Serves on a free local port. Fetches return batches of `record_size`-byte
    /// records, about `batch_size` bytes each.
    pub async fn start(record_size: usize, batch_size: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("cannot bind the transport-only server")?;
        let addr = listener.local_addr()?;
        let service =
            NullService { topics: RwLock::new(HashMap::new()), template: Template::new(record_size, batch_size)? };
        // The same limits and windows as `sluice_broker::server::start`.
        let service = SluiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES_CEILING as usize + 64 * 1024)
            .max_encoding_message_size(FETCH_MAX_BYTES_CEILING + MAX_MESSAGE_BYTES_CEILING as usize + 64 * 1024);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .initial_stream_window_size(Some(8 * 1024 * 1024))
                .initial_connection_window_size(Some(16 * 1024 * 1024))
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.await;
                }),
        );
        Ok(Self { addr, shutdown, task })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("transport-only server task failed")??;
        Ok(())
    }
}

/// The batch fetches are made of.
#[derive(Debug)]
struct Template {
    record_size: usize,
    batch: Bytes,
    records: u32,
    timestamp_ms: i64,
}

impl Template {
    fn new(record_size: usize, batch_size: usize) -> anyhow::Result<Self> {
        let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let value = vec![0x5a; record_size];
        let per_record = BatchBuilder::record_size(timestamp_ms, None, Some(&value), &[]);
        // As many records as the producer would put in one batch, at least one.
        let records = (batch_size.saturating_sub(batch::HEADER_LEN) / per_record.max(1)).max(1) as u32;
        let batch = build(records, &value, timestamp_ms)?;
        Ok(Self { record_size, batch, records, timestamp_ms })
    }

    /// A batch of `n` records: the template itself, or a shorter one at the log end.
    fn batch(&self, n: u32) -> Result<Bytes, sluice_core::BatchError> {
        if n == self.records {
            Ok(self.batch.clone())
        } else {
            build(n, &vec![0x5a; self.record_size], self.timestamp_ms)
        }
    }
}

fn build(n: u32, value: &[u8], timestamp_ms: i64) -> Result<Bytes, sluice_core::BatchError> {
    let mut b = BatchBuilder::with_capacity(n as usize * (value.len() + 8));
    for _ in 0..n {
        b.push(timestamp_ms, None, Some(value), &[]);
    }
    b.finish()
}

/// Per topic, each partition's log end offset: the only state kept.
type Partitions = Arc<[AtomicU64]>;

#[derive(Debug)]
struct NullService {
    topics: RwLock<HashMap<String, Partitions>>,
    template: Template,
}

fn not_found(topic: &str, partition: Option<u32>) -> Status {
    let what = partition.map_or(format!("topic '{topic}'"), |p| format!("partition {topic}-{p}"));
    Status::not_found(format!("unknown {what}"))
}

impl NullService {
    fn partitions(&self, topic: &str) -> Result<Partitions, Status> {
        let topics = self.topics.read().map_err(|_| Status::internal("lock poisoned"))?;
        topics.get(topic).cloned().ok_or_else(|| not_found(topic, None))
    }

    fn log_end(&self, topic: &str, partition: u32) -> Result<(Partitions, usize), Status> {
        let parts = self.partitions(topic)?;
        let p = partition as usize;
        if p >= parts.len() {
            return Err(not_found(topic, Some(partition)));
        }
        Ok((parts, p))
    }

    fn describe(&self, name: &str, parts: &Partitions) -> pb::TopicDescription {
        pb::TopicDescription {
            name: name.to_string(),
            config: HashMap::from([("durability".to_string(), DURABILITY.to_string())]),
            overridden: vec![],
            internal: false,
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, end)| {
                    let end = end.load(Ordering::Acquire);
                    pb::PartitionDescription {
                        partition: i as u32,
                        log_end_offset: end,
                        high_watermark: end,
                        replicas: vec![0],
                        isr: vec![0],
                        ..Default::default()
                    }
                })
                .collect(),
        }
    }

    /// Batches from `offset` up to `end`, at most about `max_bytes`.
    fn read(&self, offset: u64, end: u64, max_bytes: usize) -> Result<Bytes, sluice_core::BatchError> {
        let t = &self.template;
        let per_batch = t.batch.len();
        let mut out = BytesMut::with_capacity(
            max_bytes.min(per_batch.saturating_mul(((end - offset) as usize).div_ceil(t.records as usize))),
        );
        let mut base = offset;
        while base < end {
            let n = (end - base).min(u64::from(t.records)) as u32;
            let batch = t.batch(n)?;
            if !out.is_empty() && out.len() + batch.len() > max_bytes {
                break;
            }
            let at = out.len();
            out.extend_from_slice(&batch);
            batch::set_base_offset(&mut out[at..], base);
            base += u64::from(n);
        }
        Ok(out.freeze())
    }
}

#[tonic::async_trait]
impl Sluice for NullService {
    async fn produce(&self, req: Request<pb::ProduceRequest>) -> Result<Response<pb::ProduceResponse>, Status> {
        let r = req.into_inner();
        let (parts, p) = self.log_end(&r.topic, r.partition)?;
        let record_count = batch::peek(&r.batch).map_or(0, |i| i.record_count);
        let base_offset = parts[p].fetch_add(u64::from(record_count), Ordering::AcqRel);
        // As the broker answers: no offset with acks=0.
        let base_offset = (r.acks != pb::Acks::None as i32).then_some(base_offset);
        Ok(Response::new(pb::ProduceResponse { base_offset, record_count, log_append_time_ms: 0, log_start_offset: 0 }))
    }

    async fn fetch(&self, req: Request<pb::FetchRequest>) -> Result<Response<pb::FetchResponse>, Status> {
        let r = req.into_inner();
        let (parts, p) = self.log_end(&r.topic, r.partition)?;
        let max_bytes = match r.max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES,
            n => (n as usize).min(FETCH_MAX_BYTES_CEILING),
        };
        let offset = u64::try_from(r.offset).map_err(|_| Status::out_of_range("negative offset"))?;
        let mut end = parts[p].load(Ordering::Acquire);
        if offset >= end {
            // A long poll without storage to wait on: sleep once, then answer. The
            // consume bench only reads what was produced, so it does not get here.
            let wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_FETCH_WAIT);
            tokio::time::sleep(wait.min(Duration::from_millis(10))).await;
            end = parts[p].load(Ordering::Acquire);
        }
        let batches = if offset < end {
            self.read(offset, end, max_bytes).map_err(|e| Status::internal(e.to_string()))?
        } else {
            Bytes::new()
        };
        Ok(Response::new(pb::FetchResponse { high_watermark: end, log_end_offset: end, log_start_offset: 0, batches }))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let r = req.into_inner();
        let (parts, p) = self.log_end(&r.topic, r.partition)?;
        let offset = match pb::OffsetSpec::try_from(r.spec) {
            Ok(pb::OffsetSpec::Latest) => parts[p].load(Ordering::Acquire),
            _ => 0,
        };
        Ok(Response::new(pb::ListOffsetsResponse { offset, timestamp_ms: -1 }))
    }

    async fn metadata(&self, req: Request<pb::MetadataRequest>) -> Result<Response<pb::MetadataResponse>, Status> {
        let r = req.into_inner();
        let topics = self.topics.read().map_err(|_| Status::internal("lock poisoned"))?;
        let mut out = Vec::new();
        for (name, parts) in topics.iter().filter(|(n, _)| r.topics.is_empty() || r.topics.contains(n)) {
            out.push(pb::TopicMetadata {
                name: name.clone(),
                internal: false,
                partitions: (0..parts.len() as u32)
                    .map(|p| pb::PartitionMetadata {
                        partition: p,
                        leader: 0,
                        leader_epoch: 0,
                        replicas: vec![0],
                        isr: vec![0],
                    })
                    .collect(),
            });
        }
        if let Some(missing) = r.topics.iter().find(|t| !topics.contains_key(*t)) {
            return Err(not_found(missing, None));
        }
        Ok(Response::new(pb::MetadataResponse { brokers: vec![], topics: out, responding_broker: 0 }))
    }

    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let r = req.into_inner();
        let parts: Partitions = (0..r.partitions.max(1)).map(|_| AtomicU64::new(0)).collect();
        let mut topics = self.topics.write().map_err(|_| Status::internal("lock poisoned"))?;
        if topics.contains_key(&r.name) {
            return Err(Status::already_exists(format!("topic '{}' already exists", r.name)));
        }
        topics.insert(r.name.clone(), parts.clone());
        Ok(Response::new(pb::CreateTopicResponse { topic: Some(self.describe(&r.name, &parts)) }))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = req.into_inner().name;
        let mut topics = self.topics.write().map_err(|_| Status::internal("lock poisoned"))?;
        topics.remove(&name).ok_or_else(|| not_found(&name, None))?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn describe_topic(
        &self,
        req: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let name = req.into_inner().name;
        let parts = self.partitions(&name)?;
        Ok(Response::new(pb::DescribeTopicResponse { topic: Some(self.describe(&name, &parts)) }))
    }

    async fn list_topics(
        &self,
        _req: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self.topics.read().map_err(|_| Status::internal("lock poisoned"))?;
        let topics = topics
            .iter()
            .map(|(name, parts)| pb::TopicSummary {
                name: name.clone(),
                partitions: parts.len() as u32,
                replication_factor: 1,
                internal: false,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn alter_topic_config(
        &self,
        _req: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        Err(Status::unimplemented("the transport-only server has no topic configuration"))
    }

    async fn init_producer_id(
        &self,
        _req: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        // It checks no sequences; one id serves every producer.
        Ok(Response::new(pb::InitProducerIdResponse { producer_id: 0, producer_epoch: 0 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Batches;

    fn service(record_size: usize, batch_size: usize) -> NullService {
        NullService {
            topics: RwLock::new(HashMap::new()),
            template: Template::new(record_size, batch_size).expect("template"),
        }
    }

    #[test]
    fn template_fills_a_producer_sized_batch() {
        let t = Template::new(100, 16 * 1024).expect("template");
        assert!(t.records > 100, "{}", t.records);
        assert!(t.batch.len() <= 16 * 1024);
        assert_eq!(batch::validate(&t.batch, usize::MAX).expect("valid").record_count, t.records);
    }

    #[test]
    fn reads_are_dense_and_stop_at_the_log_end() {
        let s = service(10, 1024);
        let per = u64::from(s.template.records);
        let end = per * 3 + 5;
        let buf = s.read(7, end, usize::MAX).expect("read");
        let mut next = 7;
        for b in Batches::new(buf) {
            let b = b.expect("batch");
            b.verify().expect("verify");
            assert_eq!(b.header.first_offset(), next);
            next = b.header.next_offset();
        }
        assert_eq!(next, end);
        // A small max_bytes still returns one whole batch.
        assert_eq!(Batches::new(s.read(0, end, 1).expect("read")).count(), 1);
    }
}
