//! Produce and InitProducerId. Each partition's records (one RecordBatch v2, as Kafka
//! requires from v3 on) go to [`Broker::produce`](crate::Broker::produce) untouched;
//! errors are per partition. acks=0 gets no response at all, as from Kafka. With
//! acks=-1 on a replicated partition, the request's `timeout_ms` bounds the wait for
//! the in-sync replicas (REQUEST_TIMED_OUT after it).

use kafka_protocol::{
    ResponseError,
    messages::{
        BrokerId, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ResponseKind,
        produce_response::{LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse},
    },
    protocol::StrBytes,
};

use super::{
    Context,
    connection::{Answer, first_error},
    errors,
};
use crate::{broker::Acks, error::BrokerError};

pub(super) async fn produce(ctx: &Context, r: ProduceRequest, version: i16) -> Answer {
    let acks = match r.acks {
        0 => Acks::None,
        1 => Acks::Leader,
        -1 => Acks::All,
        other => {
            let why = format!("acks={other} is not one of 0, 1, -1 (all)");
            return answer(refusal(&r, ResponseError::InvalidRequiredAcks, &why, version), true);
        }
    };
    if r.transactional_id.is_some() {
        let why = "transactions are not supported by this broker (transactional.id is set)";
        return answer(
            refusal(&r, ResponseError::TransactionalIdAuthorizationFailed, why, version),
            acks != Acks::None,
        );
    }
    // How long acks=all waits for the in-sync replicas (Kafka's `timeout_ms`; a
    // negative or zero value takes the default, as a broker cannot wait less than the
    // append itself takes).
    let timeout = match u64::try_from(r.timeout_ms) {
        Ok(ms) if ms > 0 => std::time::Duration::from_millis(ms),
        _ => crate::broker::DEFAULT_PRODUCE_TIMEOUT,
    };
    let mut topics = Vec::with_capacity(r.topic_data.len());
    for t in &r.topic_data {
        let name = t.name.0.as_str();
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for p in &t.partition_data {
            let result = match (&p.records, u32::try_from(p.index)) {
                _ if sluice_core::topic::is_internal(name) => Err(BrokerError::InvalidRequest(format!(
                    "'{name}' is an internal topic; clients cannot produce to it"
                ))),
                (None, _) => Err(BrokerError::InvalidRequest("no records".into())),
                (_, Err(_)) => Err(BrokerError::UnknownPartition {
                    topic: name.to_string(),
                    partition: 0,
                    count: ctx.broker.partition_count(name).unwrap_or(0),
                }),
                (Some(records), Ok(partition)) => {
                    ctx.broker.produce_with_timeout(name, partition, acks, records.clone(), timeout).await
                }
            };
            partitions.push(match result {
                Ok(a) => PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(a.base_offset as i64)
                    // CreateTime topics: Kafka answers -1 here.
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(if version >= 5 { a.log_start as i64 } else { -1 }),
                Err(e) => {
                    let mut resp = PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(errors::code(&e))
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                        .with_error_message(if version >= 8 { errors::message(&e) } else { None });
                    if let BrokerError::NotLeader { leader: Some((id, _)), .. } = &e
                        && version >= 10
                    {
                        let epoch = ctx.broker.metadata().leader_epoch(name, p.index as u32);
                        resp.current_leader =
                            LeaderIdAndEpoch::default().with_leader_id(BrokerId(*id)).with_leader_epoch(epoch);
                    }
                    resp
                }
            });
        }
        topics.push(TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(partitions));
    }
    answer(topics, acks != Acks::None)
}

/// Every partition of the request refused with one error.
fn refusal(r: &ProduceRequest, e: ResponseError, why: &str, version: i16) -> Vec<TopicProduceResponse> {
    r.topic_data
        .iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(e.code())
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                        .with_error_message((version >= 8).then(|| StrBytes::from_string(why.to_string())))
                })
                .collect();
            TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(partitions)
        })
        .collect()
}

fn answer(topics: Vec<TopicProduceResponse>, respond: bool) -> Answer {
    let error = first_error(topics.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)));
    if !respond {
        return Answer::silent(error);
    }
    Answer::new(ResponseKind::Produce(ProduceResponse::default().with_responses(topics)), error)
}

/// Kafka's InitProducerId for idempotent producers: the broker's own producer ids
/// ([`Broker::init_producer_id`](crate::Broker::init_producer_id)), the same as gRPC
/// producers get. A transactional id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED
/// ("transactions are not supported"), which clients report as fatal, never a hang.
pub(super) async fn init_producer_id(ctx: &Context, r: InitProducerIdRequest) -> Answer {
    let refused = |error: ResponseError| {
        let body = InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        Answer::new(ResponseKind::InitProducerId(body), error.code())
    };
    if r.transactional_id.is_some() {
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    // Without a transactional id every call gets a new producer id at epoch 0, also a
    // call that names its old id to bump the epoch (KIP-360): a new id is a valid answer
    // to that, and its sequences start again at 0 on every partition.
    match ctx.broker.init_producer_id(None).await {
        Ok((id, epoch)) => {
            let body = InitProducerIdResponse::default().with_producer_id(id.into()).with_producer_epoch(epoch);
            Answer::new(ResponseKind::InitProducerId(body), 0)
        }
        Err(e) => refused(errors::kind(&e)),
    }
}
