//! The gRPC adapter: `sluice.v1.Sluice` requests in, domain calls on [`Broker`], protobuf
//! out. Every broker error becomes a gRPC status here, and only here.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sluice_core::BatchError;
use sluice_proto::v1::{self as pb, sluice_server::Sluice};
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::{
    broker::{Acks, Broker, FetchParams, OffsetQuery, TopicInfo},
    error::BrokerError,
    metadata::MetadataStore,
};

/// The tonic service; cheap to clone.
#[derive(Debug, Clone)]
pub struct SluiceService {
    broker: Arc<Broker>,
}

impl SluiceService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    fn fail(&self, rpc: &str, e: BrokerError) -> Status {
        let status = status(e);
        let code = format!("{:?}", status.code());
        self.broker.metrics().errors.get_or_create(&crate::metrics::ErrorLabels { rpc: rpc.into(), code }).inc();
        status
    }
}

/// Maps a broker error to a gRPC status whose details carry an [`pb::ErrorDetail`]
/// (packed in a `google.rpc.Status`, see [`sluice_proto::error_status`]).
pub fn status(e: BrokerError) -> Status {
    use pb::ErrorCode as E;
    let mut detail = pb::ErrorDetail { leader_id: -1, ..Default::default() };
    let (code, ecode) = match &e {
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
            (Code::NotFound, E::UnknownTopicOrPartition)
        }
        BrokerError::InvalidTopicName(_) => (Code::InvalidArgument, E::InvalidTopicName),
        BrokerError::TopicAlreadyExists(_) => (Code::AlreadyExists, E::TopicAlreadyExists),
        BrokerError::Batch(BatchError::RecordTooLarge { .. }) => (Code::InvalidArgument, E::RecordTooLarge),
        BrokerError::Batch(BatchError::BatchTooLarge { .. }) => (Code::InvalidArgument, E::BatchTooLarge),
        BrokerError::Batch(_) => (Code::InvalidArgument, E::CorruptBatch),
        BrokerError::OffsetOutOfRange { log_start, high_watermark, .. } => {
            detail.log_start_offset = *log_start;
            detail.high_watermark = *high_watermark;
            (Code::OutOfRange, E::OffsetOutOfRange)
        }
        BrokerError::InvalidConfig(_) => (Code::InvalidArgument, E::InvalidConfig),
        BrokerError::InvalidRequest(_) => (Code::InvalidArgument, E::InvalidRequest),
        BrokerError::Storage(_) | BrokerError::DataDir { .. } | BrokerError::Listen { .. } => {
            (Code::Internal, E::StorageError)
        }
        BrokerError::DiskFull { .. } => {
            detail.retriable = true;
            (Code::ResourceExhausted, E::StorageError)
        }
        BrokerError::Damaged(_) => (Code::DataLoss, E::StorageError),
        // Both name where to go instead, when it is known.
        BrokerError::NotLeader { leader: at, .. } | BrokerError::NotCoordinator { coordinator: at, .. } => {
            detail.retriable = true;
            if let Some((id, address)) = at {
                detail.leader_id = *id;
                detail.leader_address = address.clone();
            }
            let code = if matches!(e, BrokerError::NotLeader { .. }) { E::NotLeader } else { E::NotCoordinator };
            (Code::Unavailable, code)
        }
        BrokerError::CoordinatorLoading { .. } => {
            detail.retriable = true;
            (Code::Unavailable, E::CoordinatorLoadInProgress)
        }
        BrokerError::CoordinatorNotAvailable { .. } => {
            detail.retriable = true;
            (Code::Unavailable, E::CoordinatorNotAvailable)
        }
        BrokerError::NotEnoughReplicas { .. } => (Code::FailedPrecondition, E::NotEnoughReplicas),
        BrokerError::NotEnoughInSyncReplicas { .. } => {
            detail.retriable = true;
            (Code::FailedPrecondition, E::NotEnoughReplicas)
        }
        // Kafka answers REQUEST_TIMED_OUT; the closest code here, retriable.
        BrokerError::ReplicationTimeout { .. } => {
            detail.retriable = true;
            (Code::DeadlineExceeded, E::NotEnoughReplicas)
        }
        BrokerError::ShuttingDown => {
            detail.retriable = true;
            (Code::Unavailable, E::ShuttingDown)
        }
        BrokerError::TopicBeingCreated(_) => {
            detail.retriable = true;
            (Code::NotFound, E::UnknownTopicOrPartition)
        }
        BrokerError::Unsupported(_) => (Code::Unimplemented, E::Unsupported),
        BrokerError::GroupNotFound(_) => (Code::NotFound, E::GroupNotFound),
        BrokerError::UnknownMember { .. } => (Code::FailedPrecondition, E::UnknownMemberId),
        BrokerError::FencedMemberEpoch { .. } | BrokerError::RebalanceInProgress(_) => {
            (Code::FailedPrecondition, E::FencedMemberEpoch)
        }
        BrokerError::PartitionNotOwned { .. } => (Code::FailedPrecondition, E::PartitionNotOwned),
        BrokerError::GroupNotEmpty { .. } => (Code::FailedPrecondition, E::GroupNotEmpty),
        BrokerError::OutOfOrderSequence { .. } => (Code::FailedPrecondition, E::OutOfOrderSequence),
        BrokerError::ProducerFenced { .. } => (Code::FailedPrecondition, E::InvalidProducerEpoch),
    };
    detail.code = ecode as i32;
    sluice_proto::error_status(code, e.to_string(), &detail)
}

/// The call's deadline from its `grpc-timeout` header (digits and a unit: H, M, S, m,
/// u, n), when it has one.
fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The request's acks; unset (the zero value) is all, as Kafka's default.
fn acks(a: i32) -> Result<Acks, Status> {
    match pb::Acks::try_from(a) {
        Ok(pb::Acks::Unspecified) => Ok(Acks::All),
        Ok(pb::Acks::None) => Ok(Acks::None),
        Ok(pb::Acks::Leader) => Ok(Acks::Leader),
        Ok(pb::Acks::All) => Ok(Acks::All),
        Err(_) => Err(status(BrokerError::InvalidRequest(format!("unknown acks value {a}")))),
    }
}

/// DescribeTopic's view of a topic: offsets and sizes from the log, leaders, epochs and
/// replicas from the metadata store (the same answer Metadata gives).
fn describe(t: TopicInfo, store: &dyn MetadataStore) -> pb::TopicDescription {
    let overridden = t.spec.config.keys().cloned().collect();
    let placement = store.placement(&t.spec.name, t.spec.partitions);
    pb::TopicDescription {
        name: t.spec.name,
        config: t.config.to_map().into_iter().collect(),
        overridden,
        internal: t.spec.internal,
        partitions: t
            .partitions
            .into_iter()
            .map(|p| {
                let placed = placement.iter().find(|pl| pl.partition == p.partition);
                pb::PartitionDescription {
                    partition: p.partition,
                    leader: placed.and_then(|pl| pl.leader).unwrap_or(-1),
                    leader_epoch: placed.map_or(0, |pl| pl.leader_epoch),
                    log_start_offset: p.offsets.log_start,
                    log_end_offset: p.offsets.log_end,
                    high_watermark: p.offsets.high_watermark,
                    size_bytes: p.size_bytes,
                    batch_count: p.batch_count,
                    replicas: placed.map(|pl| pl.replicas.clone()).unwrap_or_default(),
                    isr: placed.map(|pl| pl.isr.clone()).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Sluice for SluiceService {
    async fn produce(&self, req: Request<pb::ProduceRequest>) -> Result<Response<pb::ProduceResponse>, Status> {
        // acks=all on a replicated partition waits for the ISR at most the call's
        // deadline (a little less, so that the answer still arrives), else the default.
        let timeout = grpc_timeout(&req).map_or(crate::broker::DEFAULT_PRODUCE_TIMEOUT, |t| t.mul_f64(0.9));
        let r = req.into_inner();
        // Internal topics are written by the broker itself (committed offsets go
        // through OffsetCommit, which checks membership).
        if sluice_core::topic::is_internal(&r.topic) {
            let why = format!("'{}' is an internal topic; clients cannot produce to it", r.topic);
            return Err(self.fail("produce", BrokerError::InvalidRequest(why)));
        }
        let acks = acks(r.acks)?;
        let span = info_span!("produce", topic = %r.topic, partition = r.partition, bytes = r.batch.len());
        let appended = self
            .broker
            .produce_with_timeout(&r.topic, r.partition, acks, r.batch, timeout)
            .instrument(span)
            .await
            .map_err(|e| self.fail("produce", e))?;
        Ok(Response::new(pb::ProduceResponse {
            // acks=0: the producer asked not to learn where the batch went.
            base_offset: (acks != Acks::None).then_some(appended.base_offset),
            record_count: appended.record_count,
            log_append_time_ms: appended.append_time_ms,
            log_start_offset: appended.log_start,
        }))
    }

    async fn fetch(&self, req: Request<pb::FetchRequest>) -> Result<Response<pb::FetchResponse>, Status> {
        let r = req.into_inner();
        if let Some(id) = r.replica_id {
            // Followers read past the high watermark, through their own service.
            let why = format!(
                "fetches from replicas are not served here: followers fetch with \
                 sluice.v1.Replication/ReplicaFetch (replica_id {id}; leave it unset to fetch as a consumer)"
            );
            return Err(self.fail("fetch", BrokerError::Unsupported(why)));
        }
        let span = info_span!("fetch", topic = %r.topic, partition = r.partition, offset = r.offset);
        let params = FetchParams {
            offset: r.offset,
            max_wait: Duration::from_millis(u64::from(r.max_wait_ms)),
            min_bytes: r.min_bytes as usize,
            max_bytes: r.max_bytes as usize,
        };
        let read = self
            .broker
            .fetch(&r.topic, r.partition, params)
            .instrument(span)
            .await
            .map_err(|e| self.fail("fetch", e))?;
        Ok(Response::new(pb::FetchResponse {
            high_watermark: read.offsets.high_watermark,
            log_end_offset: read.offsets.log_end,
            log_start_offset: read.offsets.log_start,
            batches: read.batches,
        }))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let r = req.into_inner();
        let query = match pb::OffsetSpec::try_from(r.spec) {
            Ok(pb::OffsetSpec::Earliest) => OffsetQuery::Earliest,
            Ok(pb::OffsetSpec::Latest) => OffsetQuery::Latest,
            Ok(pb::OffsetSpec::Timestamp) => OffsetQuery::Timestamp(r.timestamp_ms),
            Err(_) => return Err(status(BrokerError::InvalidRequest(format!("unknown offset spec {}", r.spec)))),
        };
        let (offset, ts) =
            self.broker.list_offsets(&r.topic, r.partition, query).map_err(|e| self.fail("list_offsets", e))?;
        Ok(Response::new(pb::ListOffsetsResponse { offset, timestamp_ms: ts.unwrap_or(-1) }))
    }

    async fn metadata(&self, req: Request<pb::MetadataRequest>) -> Result<Response<pb::MetadataResponse>, Status> {
        let r = req.into_inner();
        let all = self.broker.list_topics(true).map_err(|e| self.fail("metadata", e))?;
        for wanted in &r.topics {
            if !all.iter().any(|t| &t.spec.name == wanted) {
                return Err(self.fail("metadata", BrokerError::UnknownTopic(wanted.clone())));
            }
        }
        let store = self.broker.metadata();
        let topics = all
            .into_iter()
            .filter(|t| r.topics.is_empty() || r.topics.contains(&t.spec.name))
            .map(|t| {
                let partitions = store
                    .placement(&t.spec.name, t.spec.partitions)
                    .into_iter()
                    .map(|p| pb::PartitionMetadata {
                        partition: p.partition,
                        leader: p.leader.unwrap_or(-1),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas,
                        isr: p.isr,
                    })
                    .collect();
                pb::TopicMetadata { name: t.spec.name, internal: t.spec.internal, partitions }
            })
            .collect();
        let brokers = store
            .brokers()
            .into_iter()
            .map(|b| pb::BrokerInfo { id: b.id, address: b.address, rack: b.rack })
            .collect();
        Ok(Response::new(pb::MetadataResponse { brokers, topics, responding_broker: store.broker_id() }))
    }

    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let r = req.into_inner();
        // A required field: in proto3 an unset count and 0 look the same, and neither is
        // a partition count.
        if r.partitions == 0 {
            let why = "a topic needs at least 1 partition (partitions is 0 or unset)".to_string();
            return Err(self.fail("create_topic", BrokerError::InvalidRequest(why)));
        }
        let config: BTreeMap<String, String> = r.config.into_iter().collect();
        // Opening partitions and writing metadata block on the disk: off the async workers.
        let broker = self.broker.clone();
        let t = tokio::task::spawn_blocking(move || {
            broker.create_topic(&r.name, r.partitions, r.replication_factor, config)
        })
        .await
        .map_err(|e| self.fail("create_topic", BrokerError::Storage(format!("create task failed: {e}"))))?
        .map_err(|e| self.fail("create_topic", e))?;
        Ok(Response::new(pb::CreateTopicResponse { topic: Some(describe(t, self.broker.metadata().as_ref())) }))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        // Unlinking the partitions' files blocks on the disk: off the async workers.
        let broker = self.broker.clone();
        let name = req.into_inner().name;
        tokio::task::spawn_blocking(move || broker.delete_topic(&name))
            .await
            .map_err(|e| self.fail("delete_topic", BrokerError::Storage(format!("delete task failed: {e}"))))?
            .map_err(|e| self.fail("delete_topic", e))?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn describe_topic(
        &self,
        req: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let t = self.broker.describe_topic(&req.into_inner().name).map_err(|e| self.fail("describe_topic", e))?;
        Ok(Response::new(pb::DescribeTopicResponse { topic: Some(describe(t, self.broker.metadata().as_ref())) }))
    }

    async fn list_topics(
        &self,
        req: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self
            .broker
            .list_topics(req.into_inner().include_internal)
            .map_err(|e| self.fail("list_topics", e))?
            .into_iter()
            .map(|t| pb::TopicSummary {
                name: t.spec.name,
                partitions: t.spec.partitions,
                replication_factor: t.spec.replication_factor,
                internal: t.spec.internal,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        let r = req.into_inner();
        let t = self
            .broker
            .alter_topic_config(&r.name, r.set.into_iter().collect())
            .map_err(|e| self.fail("alter_topic_config", e))?;
        Ok(Response::new(pb::AlterTopicConfigResponse { topic: Some(describe(t, self.broker.metadata().as_ref())) }))
    }

    async fn init_producer_id(
        &self,
        req: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        let r = req.into_inner();
        let (producer_id, epoch) = self
            .broker
            .init_producer_id(r.transactional_id.as_deref())
            .await
            .map_err(|e| self.fail("init_producer_id", e))?;
        Ok(Response::new(pb::InitProducerIdResponse { producer_id, producer_epoch: i32::from(epoch) }))
    }
}
