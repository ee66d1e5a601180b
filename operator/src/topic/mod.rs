//! The Topic reconciler: places partitions on live brokers and keeps leaders on live
//! in-sync replicas, writing both to `status.partitions[]`; deletion goes through a
//! finalizer.

pub mod decide;
pub mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_crd::contract::{self, TOPIC_FINALIZER};
use sluice_crd::{Cluster, Topic, TopicStatus};

use crate::cluster::recheck_after;
use crate::context::{Context, key};
use crate::{Error, Result, conditions, liveness, mapping};

const CONTROLLER: &str = "topic";

/// Entry point for the controller runtime: finalizer first, then apply or cleanup.
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = topic.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let k = key(topic.as_ref());
    let action = finalizer(&api, TOPIC_FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(t) => reconcile_topic(&t, &ctx, &ns).await,
            Finalizer::Cleanup(t) => cleanup_topic(&t, &ctx, &ns).await,
        }
    })
    .await;
    let action = crate::finalized(action)?;
    ctx.succeeded(&k);
    Ok(action)
}

/// Retries with exponential backoff per Topic.
pub fn error_policy(topic: Arc<Topic>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(topic = %topic.name_any(), %error, "reconcile failed");
    ctx.metrics.failed(CONTROLLER, error);
    Action::requeue(ctx.backoff(key(topic.as_ref())))
}

/// The older of two Topics keeps a contested topic name ([`contract::topic_precedence`],
/// the order the brokers apply too).
fn older(a: &Topic, b: &Topic) -> bool {
    let key = |t: &Topic| (t.metadata.creation_timestamp.as_ref().map(|c| c.0), t.name_any());
    let (a, b) = (key(a), key(b));
    contract::topic_precedence(a.0, &a.1) < contract::topic_precedence(b.0, &b.1)
}

fn live_candidates(cluster: &str, leases: &[Lease], now: Timestamp) -> Vec<sluice_controller::BrokerInfo> {
    liveness::live_brokers(cluster, leases, now).into_values().map(mapping::broker_info).collect()
}

async fn reconcile_topic(topic: &Topic, ctx: &Context, ns: &str) -> Result<Action> {
    let client = ctx.client.clone();
    let name = topic.name_any();
    let cluster = Api::<Cluster>::namespaced(client.clone(), ns).get_opt(&topic.spec.cluster).await?;
    let topics = Api::<Topic>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    let my_name = validate::topic_name(&topic.spec, &name);
    let older_duplicate = topics
        .iter()
        .filter(|t| t.name_any() != name && t.spec.cluster == topic.spec.cluster)
        .filter(|t| t.metadata.deletion_timestamp.is_none())
        .filter(|t| validate::topic_name(&t.spec, t.metadata.name.as_deref().unwrap_or_default()) == my_name)
        .filter(|t| older(t, topic))
        .min_by(|a, b| if older(a, b) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater })
        .map(|t| t.name_any());
    let now = Timestamp::now();
    let leases = Api::<Lease>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    let live = live_candidates(&topic.spec.cluster, &leases, now);

    let old = topic.status.clone().unwrap_or_default();
    let decision = decide::decide(&decide::Observed {
        metadata_name: &name,
        spec: &topic.spec,
        partitions: &old.partitions,
        cluster: cluster.as_ref().map(|c| &c.spec),
        older_duplicate: older_duplicate.as_deref(),
        live: &live,
    });
    let status = TopicStatus {
        observed_generation: topic.metadata.generation,
        conditions: conditions::merge(
            &old.conditions,
            decision.conditions,
            topic.metadata.generation,
            &conditions::now(),
        ),
        topic_name: Some(decision.topic_name),
        partitions: decision.partitions,
    };
    if status != old {
        let api: Api<Topic> = Api::namespaced(client, ns);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await {
            Ok(_) => {}
            // Deleted while we looked: nothing left to report on.
            Err(e) if crate::is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        ctx.metrics.status_written(CONTROLLER);
        let ready_changed = conditions::ready(&old.conditions).map(|c| (&c.status, &c.reason))
            != conditions::ready(&status.conditions).map(|c| (&c.status, &c.reason));
        if let (true, Some((reason, note))) = (ready_changed, decision.warning) {
            ctx.event(topic, EventType::Warning, &reason, note).await;
        }
    }
    let expiry = liveness::next_expiry(&liveness::live_brokers(&topic.spec.cluster, &leases, now));
    Ok(Action::requeue(recheck_after(ctx.settings.recheck, expiry, now)))
}

/// Deletion: brokers drop a topic's partitions when its Topic is gone (they watch
/// Topics); the operator records which replicas were live to do so and which were
/// skipped, and lets the deletion complete either way — a broker gone for good must
/// not block it.
async fn cleanup_topic(topic: &Topic, ctx: &Context, ns: &str) -> Result<Action> {
    let leases = Api::<Lease>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?.items;
    let live: BTreeSet<i32> =
        liveness::live_brokers(&topic.spec.cluster, &leases, Timestamp::now()).into_keys().collect();
    let hosts: BTreeSet<i32> =
        topic.status.iter().flat_map(|s| &s.partitions).flat_map(|p| p.replicas.iter().copied()).collect();
    let (up, gone): (Vec<i32>, Vec<i32>) = hosts.iter().partition(|id| live.contains(id));
    let name = topic.status.as_ref().and_then(|s| s.topic_name.clone()).unwrap_or_else(|| topic.name_any());
    let (type_, note) = if gone.is_empty() {
        (EventType::Normal, format!("topic {name:?} deleted; brokers {up:?} remove its data"))
    } else {
        (
            EventType::Warning,
            format!("topic {name:?} deleted; brokers {up:?} remove its data; skipped brokers not live: {gone:?}"),
        )
    };
    ctx.event(topic, type_, "TopicDeleted", note).await;
    Ok(Action::await_change())
}
