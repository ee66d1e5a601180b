//! Wires the controllers together and runs them under leader election.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
// Brokers label their Lease with their Cluster: the operator watches only broker Leases.
use sluice_crd::contract::CLUSTER_LABEL;
use sluice_crd::{Cluster, ConsumerGroup, Topic};

use crate::context::{Context, Settings};
use crate::leader::{self, LeaderSettings};
use crate::metrics::{self, Metrics};
use crate::{Result, cluster, group, liveness, topic};

/// Label of every object the operator renders.
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=sluice-operator";

/// Everything `run` needs besides the client.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    pub leader: LeaderSettings,
    pub reconcile: Settings,
    /// Where to serve `/metrics`; none when `None`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Runs the operator until `shutdown` completes, recording into `metrics`.
pub async fn run(
    client: Client,
    settings: RunSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let server = settings.metrics_addr.map(|addr| tokio::spawn(metrics::serve(addr, metrics.clone())));
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), settings.reconcile, settings.leader.identity.clone()).await,
    );
    let ns = settings.namespace.clone();
    let work = move || controllers(ctx.clone(), ns.clone());
    let elected = leader::run_while_leader(client, &settings.leader, metrics, shutdown, work);
    match server {
        // The metrics server ending is an error: the process must not run unobserved.
        Some(mut server) => tokio::select! {
            r = elected => r,
            r = &mut server => match r {
                Ok(Ok(())) => Err(crate::Error::Config("metrics server stopped".into())),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(crate::Error::Config(format!("metrics server failed: {e}"))),
            },
        },
        None => elected.await,
    }
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The Cluster, Topic and ConsumerGroup controllers, until aborted.
pub async fn controllers(ctx: Arc<Context>, ns: Option<String>) {
    let client = ctx.client.clone();
    let cfg = watcher::Config::default();
    let owned = watcher::Config::default().labels(MANAGED_SELECTOR);
    let leases = watcher::Config::default().labels(CLUSTER_LABEL);

    let cluster_news = LeaseNews::default();
    let clusters = Controller::new(api::<Cluster>(&client, &ns), cfg.clone())
        .owns(api::<StatefulSet>(&client, &ns), owned.clone())
        .owns(api::<Service>(&client, &ns), owned.clone())
        .owns(api::<ConfigMap>(&client, &ns), owned.clone())
        .owns(api::<ServiceAccount>(&client, &ns), owned.clone())
        .owns(api::<Role>(&client, &ns), owned.clone())
        .owns(api::<RoleBinding>(&client, &ns), owned)
        .watches(api::<Lease>(&client, &ns), leases.clone(), move |lease| {
            let cluster = lease.labels().get(CLUSTER_LABEL)?;
            if !cluster_news.is_news(&lease) {
                return None;
            }
            Some(ObjectRef::<Cluster>::new(cluster).within(&lease.namespace()?))
        })
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    let topics = Controller::new(api::<Topic>(&client, &ns), cfg.clone());
    let by_cluster = topics.store();
    let by_lease = by_cluster.clone();
    let topic_news = LeaseNews::default();
    let topics = topics
        .watches(api::<Cluster>(&client, &ns), cfg, move |c| {
            topics_of(&by_cluster, c.namespace().as_deref(), &c.name_any())
        })
        .watches(api::<Lease>(&client, &ns), leases, move |lease| match lease.labels().get(CLUSTER_LABEL) {
            Some(cluster) if topic_news.is_news(&lease) => topics_of(&by_lease, lease.namespace().as_deref(), cluster),
            _ => Vec::new(),
        })
        .run(topic::reconcile, topic::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    // Groups are polled (their state lives on the brokers, not in the API server).
    let groups = Controller::new(api::<ConsumerGroup>(&client, &ns), watcher::Config::default())
        .run(group::reconcile, group::error_policy, ctx)
        .for_each(|_| futures::future::ready(()));

    futures::join!(clusters, topics, groups);
}

/// Passes only broker Lease events that can change liveness (see [`liveness::is_news`]).
#[derive(Debug, Default)]
struct LeaseNews(Mutex<HashMap<(Option<String>, String), liveness::Seen>>);

impl LeaseNews {
    fn is_news(&self, lease: &Lease) -> bool {
        let key = (lease.namespace(), lease.name_any());
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (news, now) = liveness::is_news(seen.get(&key), lease);
        seen.insert(key, now);
        news
    }
}

fn topics_of(store: &Store<Topic>, ns: Option<&str>, cluster: &str) -> Vec<ObjectRef<Topic>> {
    store
        .state()
        .iter()
        .filter(|t| t.spec.cluster == cluster && t.namespace().as_deref() == ns)
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}
