//! FindCoordinator and the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) over the coordinator's classic groups; OffsetCommit and OffsetFetch on
//! the same committed offsets as the gRPC API. The consumer protocol's subscription
//! and assignment are decoded here only so that the coordinator can describe the group.

use std::{collections::BTreeSet, time::Duration};

use bytes::{Buf, Bytes};
use kafka_protocol::{
    ResponseError,
    messages::{
        BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
        FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
        LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
        OffsetFetchResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
        find_coordinator_response::Coordinator as CoordinatorEntry,
        join_group_response::JoinGroupResponseMember,
        leave_group_response::MemberResponse,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
    },
    protocol::{Decodable, StrBytes},
};
use sluice_groups::{ClassicError, Join, TopicPartition};

use super::{
    Context,
    connection::{Answer, first_error},
    errors,
};
use crate::{error::BrokerError, groups::ClassicRefusal};

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// The Kafka error code of a classic-protocol refusal.
fn refusal_code(e: &ClassicRefusal) -> i16 {
    match e {
        ClassicRefusal::Classic(ClassicError::UnknownMember(_)) => ResponseError::UnknownMemberId.code(),
        ClassicRefusal::Classic(ClassicError::IllegalGeneration { .. }) => ResponseError::IllegalGeneration.code(),
        ClassicRefusal::Classic(ClassicError::RebalanceInProgress) => ResponseError::RebalanceInProgress.code(),
        ClassicRefusal::Classic(ClassicError::InconsistentProtocol(_)) => {
            ResponseError::InconsistentGroupProtocol.code()
        }
        ClassicRefusal::Classic(ClassicError::MemberIdRequired(_)) => ResponseError::MemberIdRequired.code(),
        ClassicRefusal::Broker(BrokerError::InvalidRequest(_)) => ResponseError::InvalidGroupId.code(),
        ClassicRefusal::Broker(b) => errors::code(b),
    }
}

pub(super) fn find_coordinator(ctx: &Context, r: FindCoordinatorRequest, version: i16) -> Answer {
    let me = ctx.broker.metadata().broker_id();
    // key_type 1 is a transactional id: no transaction coordinator here. Refused as a
    // Kafka broker refuses a transactional id it does not authorize: a fatal error for
    // the client (a retriable one would make it retry until its timeout).
    // Each answer: error code, message, and the coordinator (node id, host, port).
    let one = |key: &StrBytes| -> (i16, Option<StrBytes>, Option<(i32, String, i32)>) {
        if r.key_type == 1 {
            let why = "transactions are not supported by this broker";
            return (ResponseError::TransactionalIdAuthorizationFailed.code(), (version >= 1).then(|| s(why)), None);
        }
        match ctx.groups.find_coordinator(key.as_str()) {
            Ok(c) => {
                // This broker answers with its own listener; another names its Kafka one.
                let address = match c.kafka_address {
                    Some(a) if c.broker_id != me => a,
                    _ => ctx.advertised.clone(),
                };
                let (host, port) = super::split(&address);
                (0, None, Some((c.broker_id, host, port)))
            }
            Err(e) => {
                let code = match &e {
                    BrokerError::InvalidRequest(_) => ResponseError::InvalidGroupId.code(),
                    // COORDINATOR_NOT_AVAILABLE and the like: the client retries.
                    e => errors::code(e),
                };
                (code, errors::message(&e).filter(|_| version >= 1), None)
            }
        }
    };
    let mut body = FindCoordinatorResponse::default();
    if version >= 4 {
        body.coordinators = r
            .coordinator_keys
            .iter()
            .map(|k| {
                let (code, message, at) = one(k);
                let (id, host, port) = at.unwrap_or((-1, String::new(), -1));
                CoordinatorEntry::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect();
        let error = first_error(body.coordinators.iter().map(|c| c.error_code));
        return Answer::new(ResponseKind::FindCoordinator(body), error);
    }
    let (code, message, at) = one(&r.key);
    let (id, host, port) = at.unwrap_or((-1, String::new(), -1));
    body = body
        .with_error_code(code)
        .with_error_message(message)
        .with_node_id(BrokerId(id))
        .with_host(s(host))
        .with_port(port);
    Answer::new(ResponseKind::FindCoordinator(body), code)
}

/// The topics of a consumer-protocol subscription (empty for other protocols).
fn subscribed_topics(metadata: &Bytes) -> BTreeSet<String> {
    let mut b = metadata.clone();
    if b.remaining() < 2 {
        return BTreeSet::new();
    }
    let version = b.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut b, version)
        .map(|sub| sub.topics.iter().map(|t| t.as_str().to_string()).collect())
        .unwrap_or_default()
}

/// The partitions of a consumer-protocol assignment (empty for other protocols).
fn assigned_partitions(assignment: &Bytes) -> BTreeSet<TopicPartition> {
    let mut b = assignment.clone();
    if b.remaining() < 2 {
        return BTreeSet::new();
    }
    let version = b.get_i16().clamp(0, 3);
    ConsumerProtocolAssignment::decode(&mut b, version)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .flat_map(|tp| {
                    let topic = tp.topic.0.as_str().to_string();
                    tp.partitions.iter().filter_map(move |p| Some(TopicPartition::new(&topic, u32::try_from(*p).ok()?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) async fn join_group(ctx: &Context, r: JoinGroupRequest, version: i16) -> Answer {
    let consumer = r.protocol_type.as_str() == "consumer";
    let topics = r.protocols.first().filter(|_| consumer).map(|p| subscribed_topics(&p.metadata)).unwrap_or_default();
    let join = Join {
        member_id: r.member_id.as_str().to_string(),
        client_id: String::new(),
        client_host: String::new(),
        session_timeout: Duration::from_millis(r.session_timeout_ms.max(0) as u64),
        // v0 has no rebalance timeout: the session timeout stands in.
        rebalance_timeout: Duration::from_millis(
            if version == 0 { r.session_timeout_ms } else { r.rebalance_timeout_ms }.max(0) as u64,
        ),
        protocol_type: r.protocol_type.as_str().to_string(),
        protocols: r.protocols.iter().map(|p| (p.name.as_str().to_string(), p.metadata.to_vec())).collect(),
        topics,
        require_known_id: version >= 4,
    };
    let body = match ctx.groups.classic_join(r.group_id.0.as_str(), join).await {
        Ok(j) => JoinGroupResponse::default()
            .with_generation_id(j.generation)
            .with_protocol_type((version >= 7).then(|| r.protocol_type.clone()))
            .with_protocol_name(Some(s(j.protocol)))
            .with_leader(s(j.leader))
            .with_member_id(s(j.member_id))
            .with_members(
                j.members
                    .into_iter()
                    .map(|(id, meta)| {
                        JoinGroupResponseMember::default().with_member_id(s(id)).with_metadata(Bytes::from(meta))
                    })
                    .collect(),
            ),
        Err(e) => {
            let member = match &e {
                ClassicRefusal::Classic(ClassicError::MemberIdRequired(id)) => s(id.clone()),
                _ => r.member_id.clone(),
            };
            JoinGroupResponse::default()
                .with_error_code(refusal_code(&e))
                .with_generation_id(-1)
                .with_member_id(member)
                .with_protocol_name(if version >= 7 { None } else { Some(s("")) })
        }
    };
    let error = body.error_code;
    Answer::new(ResponseKind::JoinGroup(body), error)
}

pub(super) async fn sync_group(ctx: &Context, r: SyncGroupRequest, version: i16) -> Answer {
    let assignments = r
        .assignments
        .iter()
        .map(|a| (a.member_id.as_str().to_string(), a.assignment.to_vec(), assigned_partitions(&a.assignment)))
        .collect();
    let result =
        ctx.groups.classic_sync(r.group_id.0.as_str(), r.member_id.as_str(), r.generation_id, assignments).await;
    let body = match result {
        Ok(a) => SyncGroupResponse::default()
            .with_assignment(Bytes::from(a))
            .with_protocol_type(r.protocol_type.clone().filter(|_| version >= 5))
            .with_protocol_name(r.protocol_name.clone().filter(|_| version >= 5)),
        Err(e) => SyncGroupResponse::default().with_error_code(refusal_code(&e)),
    };
    let error = body.error_code;
    Answer::new(ResponseKind::SyncGroup(body), error)
}

pub(super) fn heartbeat(ctx: &Context, r: HeartbeatRequest) -> Answer {
    let code = match ctx.groups.classic_heartbeat(r.group_id.0.as_str(), r.member_id.as_str(), r.generation_id) {
        Ok(()) => 0,
        Err(e) => refusal_code(&e),
    };
    Answer::new(ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code)), code)
}

pub(super) fn leave_group(ctx: &Context, r: LeaveGroupRequest, version: i16) -> Answer {
    let group = r.group_id.0.as_str();
    let leave = |id: &str| match ctx.groups.classic_leave(group, id) {
        Ok(()) => 0,
        Err(e) => refusal_code(&e),
    };
    if version < 3 {
        let code = leave(r.member_id.as_str());
        return Answer::new(ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code)), code);
    }
    let members: Vec<MemberResponse> = r
        .members
        .iter()
        .map(|m| {
            MemberResponse::default().with_member_id(m.member_id.clone()).with_error_code(leave(m.member_id.as_str()))
        })
        .collect();
    let error = first_error(members.iter().map(|m| m.error_code));
    Answer::new(ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_members(members)), error)
}

pub(super) async fn offset_commit(ctx: &Context, r: OffsetCommitRequest) -> Answer {
    let group = r.group_id.0.as_str();
    let mut offsets = Vec::new();
    let mut bad: Vec<(String, i32, i16)> = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            let topic = t.name.0.as_str().to_string();
            match (u32::try_from(p.partition_index), u64::try_from(p.committed_offset)) {
                (Ok(partition), Ok(offset)) if ctx.broker.partition_count(&topic).is_some_and(|n| partition < n) => {
                    let meta = p.committed_metadata.as_ref().map(|m| m.as_str().to_string()).unwrap_or_default();
                    offsets.push((TopicPartition::new(&topic, partition), offset, meta));
                }
                (_, Err(_)) => bad.push((topic, p.partition_index, ResponseError::InvalidCommitOffsetSize.code())),
                _ => bad.push((topic, p.partition_index, ResponseError::UnknownTopicOrPartition.code())),
            }
        }
    }
    let committed: Vec<(String, i32)> =
        offsets.iter().map(|(tp, _, _)| (tp.topic.clone(), tp.partition as i32)).collect();
    let code = match ctx.groups.commit(group, r.member_id.as_str(), r.generation_id_or_member_epoch, offsets).await {
        Ok(()) => 0,
        Err(BrokerError::InvalidRequest(_)) => ResponseError::InvalidGroupId.code(),
        Err(e) => errors::code(&e),
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    let results = committed.into_iter().map(|(t, p)| (t, p, code)).chain(bad);
    for (topic, partition, code) in results {
        let entry = OffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(code);
        match topics.iter_mut().find(|x| x.name.0.as_str() == topic) {
            Some(x) => x.partitions.push(entry),
            None => topics
                .push(OffsetCommitResponseTopic::default().with_name(s(topic).into()).with_partitions(vec![entry])),
        }
    }
    let error = first_error(topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
    Answer::new(ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics)), error)
}

/// Committed offsets of one group: (topic, [(partition, offset or -1, metadata)]).
type GroupOffsets = Vec<(String, Vec<(i32, i64, String)>)>;

fn group_offsets(ctx: &Context, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> Result<GroupOffsets, i16> {
    let committed = ctx.groups.fetch_offsets(group, &[]).map_err(|e| errors::code(&e))?;
    let lookup = |topic: &str, p: i32| {
        committed
            .iter()
            .find(|(tp, _)| tp.topic == topic && tp.partition as i32 == p)
            .map(|(_, c)| (c.offset as i64, c.metadata.clone()))
    };
    Ok(match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(t, ps)| {
                let rows =
                    ps.into_iter().map(|p| lookup(&t, p).map_or((p, -1, String::new()), |(o, m)| (p, o, m))).collect();
                (t, rows)
            })
            .collect(),
        None => {
            let mut out: GroupOffsets = Vec::new();
            for (tp, c) in &committed {
                let row = (tp.partition as i32, c.offset as i64, c.metadata.clone());
                match out.iter_mut().find(|(t, _)| *t == tp.topic) {
                    Some((_, rows)) => rows.push(row),
                    None => out.push((tp.topic.clone(), vec![row])),
                }
            }
            out
        }
    })
}

pub(super) fn offset_fetch(ctx: &Context, r: OffsetFetchRequest, version: i16) -> Answer {
    if version >= 8 {
        let groups: Vec<OffsetFetchResponseGroup> = r
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter().map(|t| (t.name.0.as_str().to_string(), t.partition_indexes.clone())).collect()
                });
                match group_offsets(ctx, g.group_id.0.as_str(), wanted) {
                    Ok(rows) => OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone()).with_topics(
                        rows.into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default().with_name(s(t).into()).with_partitions(
                                    ps.into_iter()
                                        .map(|(p, o, m)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o)
                                                .with_committed_leader_epoch(-1)
                                                .with_metadata(Some(s(m)))
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    ),
                    Err(code) => {
                        OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone()).with_error_code(code)
                    }
                }
            })
            .collect();
        let error = first_error(groups.iter().map(|g| g.error_code));
        return Answer::new(ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups)), error);
    }
    let wanted = r
        .topics
        .as_ref()
        .map(|ts| ts.iter().map(|t| (t.name.0.as_str().to_string(), t.partition_indexes.clone())).collect());
    let body = match group_offsets(ctx, r.group_id.0.as_str(), wanted) {
        Ok(rows) => OffsetFetchResponse::default().with_topics(
            rows.into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default().with_name(s(t).into()).with_partitions(
                        ps.into_iter()
                            .map(|(p, o, m)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(-1)
                                    .with_metadata(Some(s(m)))
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
    };
    let error = body.error_code;
    Answer::new(ResponseKind::OffsetFetch(body), error)
}
