//! The ConsumerGroup reconciler: reads the group from its coordinator (a broker of the
//! Cluster, over gRPC) every few seconds and writes state, members, per-partition lag
//! and conditions to status — only when they changed; applies `spec.offsetReset` once
//! per spec generation while the group has no members; on deletion, deletes the
//! group's offsets on the brokers when `spec.deleteOffsetsOnRemoval` says so.

pub mod decide;
pub mod observe;

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_client::Client;
use sluice_crd::contract::GROUP_FINALIZER;
use sluice_crd::{Cluster, ConsumerGroup, ConsumerGroupStatus, ResetRecord};
use tracing::info;

use crate::context::{Context, key};
use crate::{Error, Result, conditions};
use decide::{Described, ResetStep, Unobserved};
use observe::ResetFailure;

const CONTROLLER: &str = "consumergroup";

/// Entry point for the controller runtime: finalizer first, then observe or clean up.
pub async fn reconcile(group: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = group.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<ConsumerGroup> = Api::namespaced(ctx.client.clone(), &ns);
    let k = key(group.as_ref());
    let action = finalizer(&api, GROUP_FINALIZER, group, |event| async {
        match event {
            Finalizer::Apply(g) => reconcile_group(&g, &ctx, &ns).await,
            Finalizer::Cleanup(g) => cleanup_group(&g, &ctx, &ns).await,
        }
    })
    .await;
    let action = crate::finalized(action)?;
    ctx.succeeded(&k);
    Ok(action)
}

/// Retries with exponential backoff per ConsumerGroup.
pub fn error_policy(group: Arc<ConsumerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(consumergroup = %group.name_any(), %error, "reconcile failed");
    ctx.metrics.failed(CONTROLLER, error);
    Action::requeue(ctx.backoff(key(group.as_ref())))
}

/// A connection to a live broker of the group's Cluster.
async fn broker(ctx: &Context, ns: &str, cluster: &str) -> Result<std::result::Result<Client, Unobserved>> {
    if Api::<Cluster>::namespaced(ctx.client.clone(), ns).get_opt(cluster).await?.is_none() {
        return Ok(Err(Unobserved::ClusterNotFound));
    }
    let leases = Api::<Lease>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?.items;
    let addresses = observe::broker_addresses(cluster, &leases, Timestamp::now());
    Ok(observe::connect(&addresses).await)
}

#[tracing::instrument(skip_all, fields(consumergroup = %cg.name_any(), group = %cg.group_id()))]
async fn reconcile_group(cg: &ConsumerGroup, ctx: &Context, ns: &str) -> Result<Action> {
    let group = cg.group_id();
    let old = cg.status.clone().unwrap_or_default();
    let generation = cg.metadata.generation.unwrap_or_default();
    let mut status = ConsumerGroupStatus {
        observed_generation: cg.metadata.generation,
        last_reset: old.last_reset.clone(),
        ..Default::default()
    };
    let decided = match observe_and_reset(cg, ctx, ns, &group, generation, &mut status).await? {
        Ok((described, step)) => {
            let invalid = match &step {
                ResetStep::Invalid(m) => Some(m.as_str()),
                _ => None,
            };
            let mut decided = decide::observed_conditions(&cg.spec, &described, invalid);
            decided.extend(decide::reset_condition(&cg.spec, status.last_reset.as_ref(), &step));
            ctx.metrics.group_lag(ns, &group, Some(&described.partitions));
            status.state = described.state;
            status.members = i32::try_from(described.members.len()).unwrap_or(i32::MAX);
            status.total_lag = described.total_lag;
            status.coordinator = Some(described.coordinator);
            status.member_details = described.members;
            status.partitions = described.partitions;
            decided
        }
        Err(why) => {
            ctx.metrics.group_lag(ns, &group, None);
            let c = decide::unobserved_condition(&cg.spec.cluster, &why);
            // What was last seen stays visible, marked not Ready.
            status.state = old.state;
            status.members = old.members;
            status.total_lag = old.total_lag;
            status.coordinator = old.coordinator;
            status.member_details = old.member_details.clone();
            status.partitions = old.partitions.clone();
            vec![c]
        }
    };
    status.conditions = conditions::merge(&old.conditions, decided, cg.metadata.generation, &conditions::now());
    if status != old {
        let api: Api<ConsumerGroup> = Api::namespaced(ctx.client.clone(), ns);
        let name = cg.name_any();
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await {
            Ok(_) => {}
            Err(e) if crate::is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        ctx.metrics.status_written(CONTROLLER);
        // One Warning Event when a problem appears, not one per poll.
        for c in problems(&status).into_iter().filter(|c| !problems(&old).iter().any(|o| o.reason == c.reason)) {
            ctx.event(cg, EventType::Warning, &c.reason, c.message.clone().unwrap_or_default()).await;
        }
    }
    Ok(Action::requeue(ctx.settings.group_poll))
}

/// The conditions that need the user: Ready False (an invalid reset included).
fn problems(status: &ConsumerGroupStatus) -> Vec<&sluice_crd::Condition> {
    let bad = |c: &&sluice_crd::Condition| {
        c.type_ == sluice_crd::conditions::READY && c.status == sluice_crd::ConditionStatus::False
    };
    status.conditions.iter().filter(bad).collect()
}

/// Reads the group; runs a reset when one is due (then reads the group again).
async fn observe_and_reset(
    cg: &ConsumerGroup,
    ctx: &Context,
    ns: &str,
    group: &str,
    generation: i64,
    status: &mut ConsumerGroupStatus,
) -> Result<std::result::Result<(Described, ResetStep), Unobserved>> {
    let client = match broker(ctx, ns, &cg.spec.cluster).await? {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    let described = match observe::describe(&client, group).await {
        Ok(d) => d,
        Err(why) => return Ok(Err(why)),
    };
    let now_ms = Timestamp::now().as_millisecond();
    let step = decide::reset_step(&cg.spec, generation, status.last_reset.as_ref(), &described, now_ms);
    let ResetStep::Run { reset, generation } = &step else { return Ok(Ok((described, step))) };
    let topics: Vec<(String, Vec<u32>)> = if reset.topics.is_empty() {
        let committed: std::collections::BTreeSet<&String> =
            described.partitions.iter().filter(|p| p.committed_offset.is_some()).map(|p| &p.topic).collect();
        committed.into_iter().map(|t| (t.clone(), Vec::new())).collect()
    } else {
        reset.topics.iter().map(|t| (t.name.clone(), t.partitions.clone())).collect()
    };
    let lines = match observe::reset(&client, group, reset, &topics).await {
        Ok(lines) => lines,
        Err(ResetFailure::Invalid(m)) => return Ok(Ok((described, ResetStep::Invalid(m)))),
        Err(ResetFailure::MembersActive) => {
            let members = described.members.len().max(1);
            return Ok(Ok((described, ResetStep::Wait { members })));
        }
        Err(ResetFailure::Unreachable(why)) => return Ok(Err(why)),
    };
    let record = ResetRecord {
        reset: reset.clone(),
        generation: *generation,
        dry_run: reset.dry_run,
        time: conditions::now(),
        partitions: lines,
    };
    let (reason, verb) = if reset.dry_run { ("OffsetResetPlanned", "planned") } else { ("OffsetsReset", "applied") };
    info!(group, dry_run = reset.dry_run, partitions = record.partitions.len(), "offset reset {verb}");
    let note =
        format!("offset reset to {:?} {verb} on {} partition(s) of group {group:?}", reset.to, record.partitions.len());
    ctx.event(cg, EventType::Normal, reason, note).await;
    status.last_reset = Some(record);
    // The status shows the offsets as they now are.
    let described = observe::describe(&client, group).await.unwrap_or(described);
    Ok(Ok((described, ResetStep::None)))
}

/// Deletion: the group's offsets go only when `spec.deleteOffsetsOnRemoval` says so, and
/// only once the group is empty (it waits, with an Event, while members are live).
async fn cleanup_group(cg: &ConsumerGroup, ctx: &Context, ns: &str) -> Result<Action> {
    let group = cg.group_id();
    ctx.metrics.group_lag(ns, &group, None);
    if !cg.spec.delete_offsets_on_removal {
        return Ok(Action::await_change());
    }
    let client = match broker(ctx, ns, &cg.spec.cluster).await? {
        Ok(c) => c,
        Err(Unobserved::ClusterNotFound) => {
            let note = format!("Cluster {:?} is gone: no offsets of group {group:?} to delete", cg.spec.cluster);
            ctx.event(cg, EventType::Warning, "OffsetsNotDeleted", note).await;
            return Ok(Action::await_change());
        }
        Err(why) => return Err(Error::Config(format!("cannot delete the offsets of group {group:?}: {why:?}"))),
    };
    match observe::delete(&client, &group).await {
        Ok(n) => {
            let note = format!("deleted {} committed offset(s) of group {group:?}", n.unwrap_or(0));
            ctx.event(cg, EventType::Normal, "OffsetsDeleted", note).await;
            Ok(Action::await_change())
        }
        Err(ResetFailure::MembersActive) => {
            let note = format!("group {group:?} still has members: its offsets are deleted once they leave");
            ctx.event(cg, EventType::Warning, "GroupNotEmpty", note).await;
            Err(Error::Config(format!("group {group:?} is not empty")))
        }
        Err(ResetFailure::Invalid(m)) => Err(Error::Config(m)),
        Err(ResetFailure::Unreachable(why)) => {
            Err(Error::Config(format!("cannot delete the offsets of group {group:?}: {why:?}")))
        }
    }
}
