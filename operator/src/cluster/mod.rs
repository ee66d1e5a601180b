//! The Cluster reconciler: renders the brokers' objects, applies them server-side, and
//! reports broker liveness (from broker Leases) in the status.

pub mod autocreate;
pub mod decide;
pub mod resources;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sluice_controller::{HostedReplicas, PartitionAssignment};
use sluice_crd::{Cluster, ClusterStatus, Topic};

use crate::context::{Context, key};
use crate::{Error, MANAGER, Result, conditions, liveness, mapping};

const CONTROLLER: &str = "cluster";

/// Entry point for the controller runtime.
pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let action = reconcile_cluster(&cluster, &ctx).await?;
    ctx.succeeded(&key(cluster.as_ref()));
    Ok(action)
}

/// Retries with exponential backoff per Cluster.
pub fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), %error, "reconcile failed");
    ctx.metrics.failed(CONTROLLER, error);
    Action::requeue(ctx.backoff(key(cluster.as_ref())))
}

async fn apply<K>(api: Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().ok_or(Error::MissingField("metadata.name"))?;
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?;
    Ok(())
}

async fn reconcile_cluster(cluster: &Cluster, ctx: &Context) -> Result<Action> {
    let client = ctx.client.clone();
    if cluster.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the children; nothing to do or report.
        return Ok(Action::await_change());
    }
    let ns = cluster.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = cluster.name_any();

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = sts_api.get_opt(&resources::statefulset_name(cluster)).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let now = Timestamp::now();
    let lease_list = leases.list(&ListParams::default()).await?.items;
    let live_map = liveness::live_brokers(&name, &lease_list, now);
    let live: BTreeSet<i32> = live_map.keys().copied().collect();
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns);
    let topic_list = topics.list(&ListParams::default()).await?.items;
    let hosted = hosted_replicas(&name, &topic_list);
    autocreate::create_requested(cluster, ctx, &ns, &lease_list, &topic_list, now).await?;

    let observed = decide::Observed {
        cluster,
        current_replicas: sts.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas),
        ready_replicas: sts.as_ref().and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0),
        live: &live,
        hosted: &hosted,
    };
    let decision = decide::decide(&observed);

    if let Some(replicas) = decision.replicas {
        apply_children(cluster, ctx, &ns, replicas, sts.as_ref()).await?;
    }

    let old = cluster.status.clone().unwrap_or_default();
    let status = ClusterStatus {
        observed_generation: cluster.metadata.generation,
        conditions: conditions::merge(
            &old.conditions,
            decision.conditions,
            cluster.metadata.generation,
            &conditions::now(),
        ),
        ready_brokers: observed.ready_replicas,
        live_brokers: decision.live_brokers,
        brokers: decision.brokers,
    };
    if status != old {
        let api: Api<Cluster> = Api::namespaced(client, &ns);
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
            ctx.event(cluster, EventType::Warning, &reason, note).await;
        }
    }
    Ok(Action::requeue(recheck_after(ctx.settings.recheck, liveness::next_expiry(&live_map), now)))
}

async fn apply_children(
    cluster: &Cluster,
    ctx: &Context,
    ns: &str,
    replicas: i32,
    existing: Option<&StatefulSet>,
) -> Result<()> {
    let c = ctx.client.clone();
    apply(Api::<ServiceAccount>::namespaced(c.clone(), ns), &resources::service_account(cluster)).await?;
    apply(Api::<Role>::namespaced(c.clone(), ns), &resources::role(cluster, replicas)).await?;
    apply(Api::<RoleBinding>::namespaced(c.clone(), ns), &resources::role_binding(cluster)).await?;
    apply(Api::<ConfigMap>::namespaced(c.clone(), ns), &resources::config_map(cluster)).await?;
    apply(Api::<Service>::namespaced(c.clone(), ns), &resources::headless_service(cluster)).await?;
    apply(Api::<Service>::namespaced(c.clone(), ns), &resources::client_service(cluster)).await?;
    let pdb_api: Api<DynamicObject> = Api::namespaced_with(c.clone(), ns, &ctx.pdb_api);
    let pdb = resources::pdb(cluster, &ctx.pdb_api.api_version);
    pdb_api.patch(&resources::pdb_name(cluster), &PatchParams::apply(MANAGER).force(), &Patch::Apply(pdb)).await?;
    // A 1.20 API server stamps a new managed-fields time on every apply of a StatefulSet,
    // even an unchanged one; apply it only when what we render changed, so the operator
    // is quiet at rest.
    let mut sts = resources::statefulset(cluster, replicas);
    let hash = render_hash(&sts)?;
    let current = existing.and_then(|s| s.annotations().get(RENDER_HASH)).map(String::as_str);
    if current != Some(hash.as_str()) {
        sts.metadata.annotations.get_or_insert_default().insert(RENDER_HASH.into(), hash);
        apply(Api::<StatefulSet>::namespaced(c, ns), &sts).await?;
    }
    Ok(())
}

/// Annotation holding the hash of the StatefulSet as last rendered.
pub const RENDER_HASH: &str = "sluice.dev/render-hash";

fn render_hash<T: Serialize>(obj: &T) -> Result<String> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    // SipHash with fixed keys: stable for a given binary; a new operator version may
    // re-apply once.
    let mut h = DefaultHasher::new();
    serde_json::to_string(obj)?.hash(&mut h);
    Ok(format!("{:016x}", h.finish()))
}

/// Broker id → topic name → replicas, over the Topics of `cluster` (counted by the
/// controller, [`sluice_controller::hosted_replicas`]).
pub fn hosted_replicas(cluster: &str, topics: &[Topic]) -> HostedReplicas {
    let placed: Vec<(String, Vec<PartitionAssignment>)> = topics
        .iter()
        .filter(|t| t.spec.cluster == cluster)
        .filter_map(|t| {
            let status = t.status.as_ref()?;
            let name = status.topic_name.clone().unwrap_or_else(|| t.name_any());
            Some((name, mapping::assignments(&status.partitions)))
        })
        .collect();
    sluice_controller::hosted_replicas(placed.iter().map(|(name, ps)| (name.as_str(), ps.as_slice())))
}

/// Look again when the first live broker's Lease would expire (so its death is seen
/// within a second), and at least every `recheck`.
pub fn recheck_after(recheck: Duration, next_expiry: Option<Timestamp>, now: Timestamp) -> Duration {
    next_expiry
        .and_then(|e| e.duration_since(now).checked_add(k8s_openapi::jiff::SignedDuration::from_secs(1)))
        .and_then(|d| Duration::try_from(d).ok())
        .map_or(recheck, |d| d.min(recheck))
}
