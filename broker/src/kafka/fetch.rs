//! Fetch (long poll over all requested partitions, per-partition and per-response byte
//! limits, stored batches as they are), ListOffsets and OffsetForLeaderEpoch. Every read
//! is [`Broker::fetch`](crate::Broker::fetch) or [`Broker::list_offsets`](crate::Broker::list_offsets).

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::{
    ResponseError,
    messages::{
        FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
        OffsetForLeaderEpochResponse, ResponseKind,
        fetch_response::{FetchableTopicResponse, PartitionData},
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
    },
};
use tokio::time::Instant;

use super::{
    Context,
    connection::{Answer, first_error},
    errors,
};
use crate::{
    broker::{FetchParams, MAX_FETCH_WAIT, OffsetQuery},
    error::BrokerError,
};

/// Checks a request's `current_leader_epoch` (-1: no expectation) against the
/// partition's, as Kafka does: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
fn check_epoch(ctx: &Context, topic: &str, partition: u32, expected: i32) -> Result<i32, ResponseError> {
    let epoch = ctx.broker.metadata().leader_epoch(topic, partition);
    match expected {
        e if e < 0 || e == epoch => Ok(epoch),
        e if e < epoch => Err(ResponseError::FencedLeaderEpoch),
        _ => Err(ResponseError::UnknownLeaderEpoch),
    }
}

/// Why one partition of a request is refused: a broker error, or a Kafka-only one.
enum Refusal {
    Broker(BrokerError),
    Kafka(ResponseError),
}

impl From<BrokerError> for Refusal {
    fn from(e: BrokerError) -> Self {
        Refusal::Broker(e)
    }
}

impl From<ResponseError> for Refusal {
    fn from(e: ResponseError) -> Self {
        Refusal::Kafka(e)
    }
}

impl Refusal {
    fn code(&self) -> i16 {
        match self {
            Refusal::Broker(e) => errors::code(e),
            Refusal::Kafka(k) => k.code(),
        }
    }
}

fn partition_index(p: i32) -> Result<u32, BrokerError> {
    u32::try_from(p).map_err(|_| BrokerError::InvalidRequest(format!("partition {p} is negative")))
}

pub(super) async fn fetch(ctx: &Context, r: FetchRequest, version: i16) -> Answer {
    if r.session_id != 0 {
        // Sessions are never created (every answer says session 0), so an incremental
        // fetch names a session this broker does not have (KIP-227).
        let body = FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return Answer::new(ResponseKind::Fetch(body), ResponseError::FetchSessionIdNotFound.code());
    }
    let max_wait = Duration::from_millis(r.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + max_wait;
    let min_bytes = r.min_bytes.max(0) as usize;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (responses, total, waits) = read_all(ctx, &r, version).await;
        let errors = responses.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0);
        if total >= min_bytes || errors || Instant::now() >= deadline || *shutdown.borrow() || waits.is_empty() {
            let error = first_error(responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
            return Answer::new(ResponseKind::Fetch(FetchResponse::default().with_responses(responses)), error);
        }
        // Wait until any partition's high watermark moves past what was read, the
        // deadline, or shutdown; then read everything again.
        let left = deadline.saturating_duration_since(Instant::now());
        let polls = waits.into_iter().map(|(topic, partition, hw)| {
            Box::pin(async move {
                let params = FetchParams { offset: hw, max_wait: left, min_bytes: 1, max_bytes: 1 };
                let _ = ctx.broker.fetch(&topic, partition, params).await;
            })
        });
        tokio::select! {
            _ = select_all(polls) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }
}

/// One pass over every requested partition, without waiting. Returns the responses,
/// the bytes read, and (topic, partition, high watermark) to wait on.
async fn read_all(
    ctx: &Context,
    r: &FetchRequest,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, Vec<(String, u32, i64)>) {
    let budget = if r.max_bytes <= 0 { usize::MAX } else { r.max_bytes as usize };
    let mut total = 0usize;
    let mut waits = Vec::new();
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in &r.topics {
        let name = t.topic.0.as_str();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut out = PartitionData::default().with_partition_index(p.partition);
            let read = async {
                let partition = partition_index(p.partition)?;
                check_epoch(ctx, name, partition, p.current_leader_epoch)?;
                let full = total > 0 && total >= budget;
                // Past the response limit: offsets only (Kafka's KIP-74: the first batch
                // of the response comes whole, then the limit holds).
                let max_bytes = if full { 1 } else { (p.partition_max_bytes.max(1) as usize).min(budget - total) };
                let read = ctx
                    .broker
                    .fetch(
                        name,
                        partition,
                        FetchParams { offset: p.fetch_offset, max_wait: Duration::ZERO, min_bytes: 0, max_bytes },
                    )
                    .await?;
                Ok::<_, Refusal>((partition, read, full))
            };
            match read.await {
                Ok((partition, read, full)) => {
                    let hw = read.offsets.high_watermark as i64;
                    out = out
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(if version >= 5 { read.offsets.log_start as i64 } else { -1 });
                    if !full {
                        total += read.batches.len();
                        if read.batches.is_empty() {
                            waits.push((name.to_string(), partition, p.fetch_offset.max(hw)));
                        }
                        out = out.with_records(Some(read.batches));
                    } else {
                        out = out.with_records(Some(Bytes::new()));
                    }
                }
                Err(e) => {
                    out = out.with_error_code(e.code()).with_high_watermark(-1).with_records(None);
                    if let Refusal::Broker(BrokerError::OffsetOutOfRange { log_start, high_watermark, .. }) = e {
                        out = out.with_high_watermark(high_watermark as i64);
                        if version >= 5 {
                            out = out.with_log_start_offset(log_start as i64);
                        }
                    }
                }
            }
            partitions.push(out);
        }
        topics.push(FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(partitions));
    }
    (topics, total, waits)
}

/// ListOffsets: -2 earliest, -1 latest (the high watermark), else the first offset with
/// a timestamp at or after the given one.
pub(super) fn list_offsets(ctx: &Context, r: ListOffsetsRequest, version: i16) -> Answer {
    let topics: Vec<ListOffsetsTopicResponse> = r
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let result = (|| -> Result<_, Refusal> {
                        let partition = partition_index(p.partition_index)?;
                        let epoch = check_epoch(ctx, name, partition, p.current_leader_epoch)?;
                        let query = match p.timestamp {
                            -2 => OffsetQuery::Earliest,
                            -1 => OffsetQuery::Latest,
                            ts if ts >= 0 => OffsetQuery::Timestamp(ts),
                            ts => {
                                return Err(Refusal::Broker(BrokerError::InvalidRequest(format!(
                                    "offset query {ts} is not supported (-1 latest, -2 earliest, or a timestamp)"
                                ))));
                            }
                        };
                        let (offset, ts) = ctx.broker.list_offsets(name, partition, query)?;
                        // No record that recent: Kafka answers offset -1 (clients: "none").
                        if matches!(query, OffsetQuery::Timestamp(_)) && ts.is_none() {
                            return Ok((-1, None, epoch));
                        }
                        Ok((offset as i64, ts, epoch))
                    })();
                    match result {
                        Ok((offset, ts, epoch)) => out
                            .with_offset(offset)
                            .with_timestamp(ts.unwrap_or(-1))
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Err(e) => out.with_error_code(e.code()).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    let error = first_error(topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
    Answer::new(ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics)), error)
}

/// OffsetForLeaderEpoch: the end offset of the requested epoch. The log is never
/// truncated (no replication yet), so no epoch ended before the high watermark: every
/// epoch up to the current one answers the current epoch and the high watermark, which
/// a client reads as "no divergence". A newer epoch than the partition's is
/// UNKNOWN_LEADER_EPOCH, as from Kafka.
pub(super) fn offset_for_leader_epoch(ctx: &Context, r: OffsetForLeaderEpochRequest) -> Answer {
    let topics: Vec<OffsetForLeaderTopicResult> = r
        .topics
        .iter()
        .map(|t| {
            let name = t.topic.0.as_str();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = EpochEndOffset::default().with_partition(p.partition);
                    let result = (|| -> Result<_, Refusal> {
                        let partition = partition_index(p.partition)?;
                        let epoch = check_epoch(ctx, name, partition, p.current_leader_epoch)?;
                        if p.leader_epoch > epoch {
                            return Err(ResponseError::UnknownLeaderEpoch.into());
                        }
                        let (hw, _) = ctx.broker.list_offsets(name, partition, OffsetQuery::Latest)?;
                        Ok((epoch, hw))
                    })();
                    match result {
                        Ok((epoch, hw)) => out.with_leader_epoch(epoch).with_end_offset(hw as i64),
                        Err(e) => out.with_error_code(e.code()).with_leader_epoch(-1).with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic.clone()).with_partitions(partitions)
        })
        .collect();
    let error = first_error(topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
    Answer::new(ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics)), error)
}
