//! Reading a group from its coordinator and applying resets, over the brokers' gRPC API.
//! The brokers are found through their Leases (the address each broker annotates its
//! Lease with); any live broker answers FindCoordinator, and the calls go to the
//! coordinator it names.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use sluice_client::group::admin::ResetTo as ClientResetTo;
use sluice_client::proto::{self as pb, ErrorCode};
use sluice_client::{Client, ClientError, GroupAdmin};
use sluice_crd::contract::ADDRESS_ANNOTATION;
use sluice_crd::{ConsumerGroupState, GroupMember, OffsetReset, PartitionLag, ResetLine, ResetTo};

use super::decide::{Described, Unobserved};
use crate::liveness;

/// How long one broker gets to answer before the next is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses of the live brokers of `cluster`, by broker id.
pub fn broker_addresses(cluster: &str, leases: &[Lease], now: Timestamp) -> Vec<String> {
    let live = liveness::live_brokers(cluster, leases, now);
    leases
        .iter()
        .filter(|l| {
            let name = l.metadata.name.as_deref().unwrap_or_default();
            sluice_crd::contract::broker_id_from_lease_name(cluster, name).is_some_and(|id| live.contains_key(&id))
        })
        .filter_map(|l| l.metadata.annotations.as_ref()?.get(ADDRESS_ANNOTATION).cloned())
        .collect()
}

/// A connection to the first of `addresses` that answers.
pub async fn connect(addresses: &[String]) -> Result<Client, Unobserved> {
    if addresses.is_empty() {
        return Err(Unobserved::NoBrokers);
    }
    let mut last = String::new();
    for a in addresses {
        match tokio::time::timeout(CALL_TIMEOUT, Client::connect(a)).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => last = format!("broker {a}: {e}"),
            Err(_) => last = format!("broker {a}: no answer within {CALL_TIMEOUT:?}"),
        }
    }
    Err(Unobserved::Unreachable(format!("no live broker answered; last: {last}")))
}

fn unreachable(what: &str, e: impl std::fmt::Display) -> Unobserved {
    Unobserved::Unreachable(format!("{what}: {e}"))
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<Result<T, ClientError>, Unobserved> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| unreachable(what, format!("no answer within {CALL_TIMEOUT:?}")))
}

/// The group as its coordinator describes it; a group the brokers do not know is `Dead`.
pub async fn describe(client: &Client, group: &str) -> Result<Described, Unobserved> {
    let find = async {
        let r = client.groups().find_coordinator(pb::FindCoordinatorRequest { group: group.to_string() }).await;
        r.map(|r| r.into_inner().broker_id).map_err(ClientError::from)
    };
    let coordinator = timed("FindCoordinator", find).await?.map_err(|e| unreachable("FindCoordinator", e))?;
    let admin = GroupAdmin::new(client.clone());
    match timed("DescribeGroup", admin.describe(group)).await? {
        Ok(d) => Ok(described(coordinator, d)),
        Err(e) if e.kind() == Some(ErrorCode::GroupNotFound) => {
            Ok(Described { coordinator, state: ConsumerGroupState::Dead, ..Default::default() })
        }
        Err(e) => Err(unreachable("DescribeGroup", e)),
    }
}

fn described(coordinator: i32, d: pb::DescribeGroupResponse) -> Described {
    let state = match d.state.as_str() {
        "Empty" => ConsumerGroupState::Empty,
        "Stable" => ConsumerGroupState::Stable,
        "Reconciling" | "PreparingRebalance" | "CompletingRebalance" | "Assigning" => ConsumerGroupState::Reconciling,
        "Dead" => ConsumerGroupState::Dead,
        _ => ConsumerGroupState::Unknown,
    };
    let members = d
        .members
        .into_iter()
        .map(|m| GroupMember {
            member_id: m.member_id,
            client_id: m.client_id,
            assignment: m.assignment.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect(),
        })
        .collect();
    let partitions = d
        .partitions
        .into_iter()
        .map(|p| PartitionLag {
            topic: p.topic,
            partition: p.partition,
            committed_offset: p.committed.map(clamp),
            log_end_offset: clamp(p.log_end_offset),
            lag: clamp(p.lag),
        })
        .collect();
    Described { coordinator, state, members, partitions, total_lag: clamp(d.total_lag) }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Why a reset was not applied.
#[derive(Debug)]
pub enum ResetFailure {
    /// The brokers refused the spec (unknown topic, partition out of range, ...).
    Invalid(String),
    /// A member joined meanwhile.
    MembersActive,
    Unreachable(Unobserved),
}

/// Plans (`reset.dry_run`) or applies `reset` on `topics` (name, partitions; all
/// partitions when empty); returns every partition's line.
pub async fn reset(
    client: &Client,
    group: &str,
    reset: &OffsetReset,
    topics: &[(String, Vec<u32>)],
) -> Result<Vec<ResetLine>, ResetFailure> {
    let to = match reset.to {
        ResetTo::Earliest => ClientResetTo::Earliest,
        ResetTo::Latest => ClientResetTo::Latest,
        ResetTo::Timestamp => ClientResetTo::Timestamp(reset.timestamp_ms.unwrap_or_default()),
        ResetTo::Offset => ClientResetTo::Offset(u64::try_from(reset.offset.unwrap_or_default()).unwrap_or_default()),
        ResetTo::ShiftBy => ClientResetTo::ShiftBy(reset.shift_by.unwrap_or_default()),
    };
    let admin = GroupAdmin::new(client.clone());
    // Plan every topic first: an invalid one must not leave the others half applied.
    let mut plans = Vec::new();
    for (topic, partitions) in topics {
        plans.push(run(&admin, group, topic, partitions, to, false).await?);
    }
    if !reset.dry_run {
        plans.clear();
        for (topic, partitions) in topics {
            plans.push(run(&admin, group, topic, partitions, to, true).await?);
        }
    }
    Ok(plans
        .into_iter()
        .flat_map(|r| r.plan)
        .map(|l| ResetLine {
            topic: l.topic,
            partition: l.partition,
            from: l.current.map(clamp),
            to: clamp(l.new_offset),
        })
        .collect())
}

async fn run(
    admin: &GroupAdmin,
    group: &str,
    topic: &str,
    partitions: &[u32],
    to: ClientResetTo,
    execute: bool,
) -> Result<pb::ResetOffsetsResponse, ResetFailure> {
    match timed("ResetOffsets", admin.reset_partitions(group, topic, partitions, to, execute)).await {
        Err(u) => Err(ResetFailure::Unreachable(u)),
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(match e.kind() {
            Some(ErrorCode::GroupNotEmpty) => ResetFailure::MembersActive,
            Some(ErrorCode::UnknownTopicOrPartition | ErrorCode::InvalidRequest | ErrorCode::InvalidTopicName) => {
                ResetFailure::Invalid(format!("topic {topic:?}: {e}"))
            }
            _ => ResetFailure::Unreachable(unreachable("ResetOffsets", e)),
        }),
    }
}

/// Deletes the group's committed offsets; `Ok(None)` when the brokers know no such group.
pub async fn delete(client: &Client, group: &str) -> Result<Option<u32>, ResetFailure> {
    let admin = GroupAdmin::new(client.clone());
    match timed("DeleteGroup", admin.delete(group)).await {
        Err(u) => Err(ResetFailure::Unreachable(u)),
        Ok(Ok(n)) => Ok(Some(n)),
        Ok(Err(e)) if e.kind() == Some(ErrorCode::GroupNotFound) => Ok(None),
        Ok(Err(e)) if e.kind() == Some(ErrorCode::GroupNotEmpty) => Err(ResetFailure::MembersActive),
        Ok(Err(e)) => Err(ResetFailure::Unreachable(unreachable("DeleteGroup", e))),
    }
}
