//! The gRPC API as a client in another language meets it: fields left unset ask for the
//! safe default (acks: all; replica id: a consumer), ACKS_NONE reports no offset, a
//! CreateTopic without partitions is refused, and health and reflection (v1 and
//! v1alpha) name every service. Over real sockets, to an in-process broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use common::TestBroker;
use sluice_broker::{
    error::Result,
    metadata::{BrokerAddress, MetadataStore, PartitionPlacement, TopicSpec},
};
use sluice_client::{Acks, Producer, ProducerConfig, ProducerRecord, proto};
use sluice_core::BatchBuilder;
use sluice_proto::error_detail;
use tonic::{Code, transport::Channel};

fn batch(n: usize) -> Bytes {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(1_000, None, Some(format!("v{i}").as_bytes()), &[]);
    }
    b.finish().expect("batch encodes")
}

fn produce(topic: &str, acks: i32, records: usize) -> proto::ProduceRequest {
    proto::ProduceRequest { topic: topic.into(), acks, batch: batch(records), ..Default::default() }
}

/// Standalone metadata in memory that also holds a topic with replication factor 2,
/// which a standalone broker cannot create: where acks=all and acks=1 differ.
#[derive(Debug)]
struct WithReplicatedTopic {
    topics: Mutex<Vec<TopicSpec>>,
}

impl WithReplicatedTopic {
    fn new() -> Arc<Self> {
        let replicated = TopicSpec {
            name: "replicated".into(),
            partitions: 1,
            replication_factor: 2,
            config: BTreeMap::new(),
            internal: false,
        };
        Arc::new(Self { topics: Mutex::new(vec![replicated]) })
    }
}

impl MetadataStore for WithReplicatedTopic {
    fn topics(&self) -> Result<Vec<TopicSpec>> {
        let mut topics = self.topics.lock().unwrap().clone();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }
    fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.topics.lock().unwrap().push(spec.clone());
        Ok(())
    }
    fn delete_topic(&self, name: &str) -> Result<()> {
        self.topics.lock().unwrap().retain(|t| t.name != name);
        Ok(())
    }
    fn update_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.delete_topic(&spec.name)?;
        self.create_topic(spec)
    }
    fn placement(&self, _topic: &str, partitions: u32) -> Vec<PartitionPlacement> {
        PartitionPlacement::led_by(0, partitions)
    }
    fn brokers(&self) -> Vec<BrokerAddress> {
        Vec::new()
    }
    fn broker_id(&self) -> i32 {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_acks_means_all_and_acks_none_reports_no_offset() {
    let store = WithReplicatedTopic::new();
    let broker = TestBroker::start_with(|c| c.metadata = Some(store)).await;
    broker.admin().await.create_topic("plain", 1, BTreeMap::new()).await.unwrap();
    let mut raw = broker.client().await.raw();

    // Where all and leader differ (replication factor 2, no replication yet): unset is
    // refused exactly as ACKS_ALL is, and ACKS_LEADER is taken.
    let all = raw.produce(produce("replicated", proto::Acks::All as i32, 1)).await.unwrap_err();
    let unset = raw.produce(produce("replicated", 0, 1)).await.unwrap_err();
    assert_eq!(proto::Acks::Unspecified as i32, 0);
    for s in [&all, &unset] {
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert_eq!(error_detail(s).unwrap().code, proto::ErrorCode::NotEnoughReplicas as i32);
    }
    assert_eq!(unset.message(), all.message());
    let leader = raw.produce(produce("replicated", proto::Acks::Leader as i32, 1)).await.unwrap().into_inner();
    assert_eq!(leader.base_offset, Some(0));

    // Unset acks answers with the offset, as acks=all does.
    let r = raw.produce(produce("plain", 0, 2)).await.unwrap().into_inner();
    assert_eq!((r.base_offset, r.record_count), (Some(0), 2));

    // ACKS_NONE: no offset in the answer, but the batch is stored.
    let r = raw.produce(produce("plain", proto::Acks::None as i32, 3)).await.unwrap().into_inner();
    assert_eq!((r.base_offset, r.record_count), (None, 3));
    let latest = proto::ListOffsetsRequest {
        topic: "plain".into(),
        spec: proto::OffsetSpec::Latest as i32,
        ..Default::default()
    };
    assert_eq!(raw.list_offsets(latest).await.unwrap().into_inner().offset, 5);
    let r = raw.produce(produce("plain", proto::Acks::All as i32, 1)).await.unwrap().into_inner();
    assert_eq!(r.base_offset, Some(5), "offsets continue after the fire-and-forget batch");

    // The Rust producer: acks=0 deliveries carry no offset, acks=1 ones do.
    for (acks, expect) in [(Acks::None, None), (Acks::Leader, Some(7))] {
        let producer = Producer::new(broker.client().await, ProducerConfig { acks, ..Default::default() });
        let delivery = producer.send(ProducerRecord::new("plain").partition(0).value("x")).await.unwrap();
        producer.flush().await;
        assert_eq!(delivery.await.unwrap().offset, expect, "acks={acks}");
        producer.close().await;
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topic_without_partitions_and_replica_fetches_are_refused() {
    let broker = TestBroker::start().await;
    let mut raw = broker.client().await.raw();

    let s =
        raw.create_topic(proto::CreateTopicRequest { name: "none".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert_eq!(s.message(), "invalid request: a topic needs at least 1 partition (partitions is 0 or unset)");
    assert_eq!(error_detail(&s).unwrap().code, proto::ErrorCode::InvalidRequest as i32);
    let listed = raw.list_topics(proto::ListTopicsRequest::default()).await.unwrap().into_inner();
    assert!(listed.topics.is_empty(), "nothing was created: {listed:?}");

    // Unset replica id: a consumer. Set (0 is a broker id): refused until brokers
    // replicate, rather than served as if it were a consumer.
    let created = raw
        .create_topic(proto::CreateTopicRequest { name: "t".into(), partitions: 1, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(created.into_inner().topic.unwrap().partitions.len(), 1);
    raw.produce(produce("t", 0, 2)).await.unwrap();
    let fetch = proto::FetchRequest { topic: "t".into(), ..Default::default() };
    let r = raw.fetch(fetch.clone()).await.unwrap().into_inner();
    assert_eq!(r.high_watermark, 2);
    assert!(!r.batches.is_empty());
    let s = raw.fetch(proto::FetchRequest { replica_id: Some(0), ..fetch }).await.unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
    assert_eq!(
        s.message(),
        "fetches from replicas are not served here: followers fetch with \
         sluice.v1.Replication/ReplicaFetch (replica_id 0; leave it unset to fetch as a consumer)"
    );
    assert_eq!(error_detail(&s).unwrap().code, proto::ErrorCode::Unsupported as i32);
    broker.stop().await;
}

async fn channel(broker: &TestBroker) -> Channel {
    Channel::from_shared(format!("http://{}", broker.addr)).unwrap().connect().await.unwrap()
}

const SERVICES: [&str; 6] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "sluice.v1.Groups",
    "sluice.v1.Replication",
    "sluice.v1.Sluice",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_both_reflection_versions_name_every_service() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let broker = TestBroker::start().await;
    let mut health = HealthClient::new(channel(&broker).await);
    for service in ["", "sluice.v1.Sluice", "sluice.v1.Groups", "sluice.v1.Replication"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "health of '{service}'");
    }

    let v1 = {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&broker).await);
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client.server_reflection_info(tokio_stream::once(list)).await.unwrap().into_inner();
        match answers.message().await.unwrap().and_then(|a| a.message_response) {
            Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
            other => panic!("v1 list services: {other:?}"),
        }
    };
    let v1alpha = {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&broker).await);
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client.server_reflection_info(tokio_stream::once(list)).await.unwrap().into_inner();
        match answers.message().await.unwrap().and_then(|a| a.message_response) {
            Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
            other => panic!("v1alpha list services: {other:?}"),
        }
    };
    for mut listed in [v1, v1alpha] {
        listed.sort();
        assert_eq!(listed, SERVICES);
    }
    broker.stop().await;
}
