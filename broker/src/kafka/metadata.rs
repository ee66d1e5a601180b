//! Metadata (brokers, controller, topics with leaders, replicas, ISR and leader epochs,
//! auto-creation of unknown topics as `auto.create.topics.enable`) and DescribeCluster,
//! from the same metadata store the gRPC Metadata reads.

use kafka_protocol::{
    ResponseError,
    messages::{
        BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse, ResponseKind,
        TopicName,
        describe_cluster_response::DescribeClusterBroker,
        metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    },
    protocol::StrBytes,
};
use tracing::{debug, info};

use super::{
    Context,
    connection::{Answer, first_error},
    errors,
};
use crate::{broker::TopicInfo, error::BrokerError};

/// The cluster id clients see (Kafka clients only compare it between brokers).
pub const CLUSTER_ID: &str = "sluice";

/// The broker clients should send admin requests to. Standalone: this one. On
/// Kubernetes there is no controller broker (the operator places topics); admin requests
/// come here and are refused with a message pointing at Topic resources.
fn controller_id(ctx: &Context) -> i32 {
    ctx.broker.metadata().broker_id()
}

fn brokers(ctx: &Context, version: i16) -> Vec<MetadataResponseBroker> {
    ctx.broker
        .metadata()
        .brokers()
        .iter()
        .map(|b| {
            let (host, port) = ctx.kafka_address(b);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack((version >= 1 && !b.rack.is_empty()).then(|| StrBytes::from_string(b.rack.clone())))
        })
        .collect()
}

fn topic_metadata(ctx: &Context, t: &TopicInfo, version: i16) -> MetadataResponseTopic {
    let partitions = ctx
        .broker
        .metadata()
        .placement(&t.spec.name, t.spec.partitions)
        .into_iter()
        .map(|p| {
            let leader = p.leader.unwrap_or(-1);
            MetadataResponsePartition::default()
                .with_error_code(if leader < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 })
                .with_partition_index(p.partition as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(if version >= 7 { p.leader_epoch } else { -1 })
                .with_replica_nodes(p.replicas.into_iter().map(BrokerId).collect())
                .with_isr_nodes(p.isr.into_iter().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.spec.name.clone()))))
        .with_is_internal(version >= 1 && t.spec.internal)
        .with_partitions(partitions)
}

fn error_topic(name: &str, e: &BrokerError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_error_code(errors::code(e))
}

pub(super) fn metadata(ctx: &Context, r: MetadataRequest, version: i16) -> Answer {
    // v0: an empty list means every topic; v1+: null means every topic. Before v4
    // auto-creation was always asked for.
    let wanted: Option<Vec<String>> = match r.topics {
        None => None,
        Some(ts) if ts.is_empty() && version == 0 => None,
        Some(ts) => Some(ts.into_iter().filter_map(|t| t.name.map(|n| n.0.as_str().to_string())).collect()),
    };
    let auto_create = ctx.config.auto_create_topics && (version < 4 || r.allow_auto_topic_creation);
    let topics = match wanted {
        None => match ctx.broker.list_topics(true) {
            Ok(all) => all.iter().map(|t| topic_metadata(ctx, t, version)).collect(),
            Err(e) => vec![error_topic("", &e)],
        },
        Some(names) => names.iter().map(|n| named_topic(ctx, n, auto_create, version)).collect(),
    };
    let error = first_error(topics.iter().map(|t: &MetadataResponseTopic| t.error_code));
    let body = MetadataResponse::default()
        .with_brokers(brokers(ctx, version))
        .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(if version >= 1 { controller_id(ctx) } else { -1 }))
        .with_topics(topics);
    Answer::new(ResponseKind::Metadata(body), error)
}

/// One named topic; created when unknown if auto-creation applies and this broker may
/// create topics (standalone mode).
fn named_topic(ctx: &Context, name: &str, auto_create: bool, version: i16) -> MetadataResponseTopic {
    match ctx.broker.describe_topic(name) {
        Ok(t) => topic_metadata(ctx, &t, version),
        Err(BrokerError::UnknownTopic(_)) if auto_create && ctx.broker.metadata().admin_refusal().is_none() => {
            match ctx.broker.create_topic(name, 0, 1, Default::default()) {
                Ok(t) => {
                    info!(topic = name, partitions = t.spec.partitions, "topic auto-created (Kafka Metadata)");
                    topic_metadata(ctx, &t, version)
                }
                // Created by a concurrent request meanwhile.
                Err(BrokerError::TopicAlreadyExists(_)) => match ctx.broker.describe_topic(name) {
                    Ok(t) => topic_metadata(ctx, &t, version),
                    Err(e) => error_topic(name, &e),
                },
                Err(e) => error_topic(name, &e),
            }
        }
        // Kubernetes: the operator creates the Topic resource; the client retries.
        Err(BrokerError::UnknownTopic(_)) if auto_create && ctx.broker.metadata().request_topic(name) => {
            debug!(topic = name, "topic creation requested (Kafka Metadata, auto.create.topics.enable)");
            error_topic(name, &BrokerError::TopicBeingCreated(name.to_string()))
        }
        Err(e) => error_topic(name, &e),
    }
}

pub(super) fn describe_cluster(ctx: &Context, _r: DescribeClusterRequest) -> Answer {
    let brokers = brokers(ctx, 1)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    let body = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(controller_id(ctx)))
        .with_brokers(brokers);
    Answer::new(ResponseKind::DescribeCluster(body), 0)
}
