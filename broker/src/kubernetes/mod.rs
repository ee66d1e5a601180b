//! Kubernetes mode: the broker learns its topics from `Topic` resources, holds its own
//! Lease `<cluster>-broker-<id>` for liveness, and learns the other brokers from their
//! Leases. It writes nothing but its Lease (see `operator/README.md`, "Contract with
//! the brokers").
//!
//! - [`lease`]: creates and renews the broker's Lease; without a current Lease the
//!   broker refuses to act as a leader.
//! - [`topics`]: Topic resource → [`TopicSpec`] and placement.
//! - [`KubeMetadata`]: the [`MetadataStore`] built from the Topic watch and the broker
//!   Leases (read by name, as the brokers' Role allows).

pub mod lease;
pub mod topics;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, watcher},
};
use sluice_crd::{Cluster, Topic};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    Broker, BrokerConfig,
    error::{BrokerError, Result},
    metadata::{BrokerAddress, MetadataStore, PartitionPlacement, TopicSpec},
};

/// Label on every broker Lease: the Cluster it belongs to.
pub const CLUSTER_LABEL: &str = "sluice.dev/cluster";
/// Label on a broker Lease: the rack/zone of the broker's node.
pub const RACK_LABEL: &str = "sluice.dev/rack";
/// Annotation on a broker Lease: the broker's advertised gRPC address (what clients
/// dial). Other brokers read it to name the leader in NOT_LEADER errors and Metadata.
pub const ADDRESS_ANNOTATION: &str = "sluice.dev/address";

/// Who this broker is in the cluster.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub cluster: String,
    pub namespace: String,
    pub broker_id: i32,
    /// Lease holder identity (the pod name).
    pub identity: String,
    /// The address clients dial for this broker.
    pub advertised_address: String,
    /// The broker's rack/zone, put on its Lease when known.
    pub rack: Option<String>,
    /// `leaseDurationSeconds` of the broker's Lease.
    pub lease_duration: Duration,
    /// How often the Lease is renewed.
    pub renew_every: Duration,
}

impl KubeSettings {
    /// The broker id from a pod name `<cluster>-<ordinal>`.
    pub fn id_from_pod_name(cluster: &str, pod: &str) -> Option<i32> {
        pod.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok().filter(|id: &i32| *id >= 0)
    }

    /// The name of broker `id`'s Lease.
    pub fn lease_name(&self, id: i32) -> String {
        format!("{}-broker-{id}", self.cluster)
    }

    /// Where broker `id` is reached when its Lease does not say: its pod's DNS name in
    /// the headless Service, on this broker's port.
    fn default_address(&self, id: i32) -> String {
        let port = self.advertised_address.rsplit_once(':').map_or("9092", |(_, p)| p);
        format!("{c}-{id}.{c}-brokers.{ns}.svc:{port}", c = self.cluster, ns = self.namespace)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Kafka-style name → spec and placement, for placed, not deleted Topics.
    topics: BTreeMap<String, (TopicSpec, Vec<PartitionPlacement>)>,
    /// Internal topics (`__consumer_offsets`): hosted and led by every broker itself.
    internal: BTreeMap<String, TopicSpec>,
}

/// The [`MetadataStore`] of Kubernetes mode.
pub struct KubeMetadata {
    settings: KubeSettings,
    state: RwLock<State>,
    /// The broker may act as a leader until then (its Lease is current).
    lease_valid_until: Mutex<Option<Instant>>,
    /// The cluster's broker Leases by id, as last read.
    leases: Mutex<BTreeMap<i32, Lease>>,
}

impl std::fmt::Debug for KubeMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMetadata").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn poisoned() -> BrokerError {
    BrokerError::Storage("metadata lock poisoned".into())
}

impl KubeMetadata {
    pub fn new(settings: KubeSettings) -> Self {
        Self {
            settings,
            state: RwLock::new(State::default()),
            lease_valid_until: Mutex::new(None),
            leases: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    /// Whether this broker's Lease is current (it may lead partitions).
    pub fn lease_held(&self) -> bool {
        self.lease_valid_until.lock().ok().and_then(|v| *v).is_some_and(|until| Instant::now() < until)
    }

    fn lease_renewed(&self, until: Instant) {
        if let Ok(mut v) = self.lease_valid_until.lock() {
            *v = Some(until);
        }
    }

    /// Replaces the topics with those of `topics` (every Topic in the namespace).
    fn set_topics(&self, topics: &[Arc<Topic>]) -> Result<()> {
        let converted = topics::cluster_topics(&self.settings.cluster, topics);
        self.state.write().map_err(|_| poisoned())?.topics = converted;
        Ok(())
    }

    /// Broker id → (address, rack, live) from the broker Leases seen.
    fn lease_brokers(&self) -> BTreeMap<i32, (BrokerAddress, bool)> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let leases = self.leases.lock().map(|l| l.clone()).unwrap_or_default();
        let mut out = BTreeMap::new();
        for (id, l) in leases {
            let address = l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ADDRESS_ANNOTATION))
                .cloned()
                .unwrap_or_else(|| self.settings.default_address(id));
            let rack = l.metadata.labels.as_ref().and_then(|a| a.get(RACK_LABEL)).cloned().unwrap_or_default();
            out.insert(id, (BrokerAddress { id, address, rack }, lease::is_current(&l, now)));
        }
        out
    }

    fn leader_address(&self, id: i32) -> String {
        if id == self.settings.broker_id {
            return self.settings.advertised_address.clone();
        }
        self.lease_brokers().remove(&id).map_or_else(|| self.settings.default_address(id), |(b, _)| b.address)
    }
}

const ADMIN_REFUSAL: &str = "this broker runs in Kubernetes mode: topics are managed through Topic resources \
     (kubectl apply a sluice.dev/v1alpha1 Topic with spec.cluster set to the cluster), not through the admin API";

impl MetadataStore for KubeMetadata {
    fn topics(&self) -> Result<Vec<TopicSpec>> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let mut out: Vec<TopicSpec> =
            s.topics.values().map(|(t, _)| t.clone()).chain(s.internal.values().cloned()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        if !spec.internal {
            return Err(BrokerError::Unsupported(ADMIN_REFUSAL.into()));
        }
        self.state.write().map_err(|_| poisoned())?.internal.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    fn delete_topic(&self, _name: &str) -> Result<()> {
        Err(BrokerError::Unsupported(ADMIN_REFUSAL.into()))
    }

    fn update_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.create_topic(spec)
    }

    fn admin_refusal(&self) -> Option<String> {
        Some(ADMIN_REFUSAL.into())
    }

    fn hosted_partitions(&self, topic: &str) -> Option<Vec<u32>> {
        let s = self.state.read().ok()?;
        let (_, placement) = s.topics.get(topic)?;
        Some(placement.iter().filter(|p| p.replicas.contains(&self.settings.broker_id)).map(|p| p.partition).collect())
    }

    fn check_leader(&self, topic: &str, partition: u32) -> Result<()> {
        let leader = {
            let s = self.state.read().map_err(|_| poisoned())?;
            let Some((_, placement)) = s.topics.get(topic) else {
                // Internal or unknown topics: the broker answers for itself.
                return Ok(());
            };
            let Some(p) = placement.iter().find(|p| p.partition == partition) else { return Ok(()) };
            p.leader
        };
        let me = self.settings.broker_id;
        match leader {
            Some(id) if id == me => {
                if self.lease_held() {
                    Ok(())
                } else {
                    Err(BrokerError::NotLeader {
                        reason: format!(
                            "broker {me} cannot renew its Lease {} and does not act as leader of {topic}-{partition} until it does",
                            self.settings.lease_name(me)
                        ),
                        leader: None,
                    })
                }
            }
            Some(id) => Err(BrokerError::NotLeader {
                reason: format!("broker {me} is not the leader of {topic}-{partition}: broker {id} is"),
                leader: Some((id, self.leader_address(id))),
            }),
            None => Err(BrokerError::NotLeader {
                reason: format!("{topic}-{partition} has no leader right now (no live replica)"),
                leader: None,
            }),
        }
    }

    fn placement(&self, topic: &str) -> Option<Vec<PartitionPlacement>> {
        self.state.read().ok()?.topics.get(topic).map(|(_, p)| p.clone())
    }

    fn leader_epoch(&self, topic: &str, partition: u32) -> i32 {
        let Ok(s) = self.state.read() else { return 0 };
        s.topics
            .get(topic)
            .and_then(|(_, placement)| placement.iter().find(|p| p.partition == partition))
            .map_or(0, |p| p.leader_epoch)
    }

    fn brokers(&self) -> Option<Vec<BrokerAddress>> {
        let mut live: Vec<BrokerAddress> =
            self.lease_brokers().into_values().filter(|(_, live)| *live).map(|(b, _)| b).collect();
        let me = self.settings.broker_id;
        if !live.iter().any(|b| b.id == me) && self.lease_held() {
            live.push(BrokerAddress {
                id: me,
                address: self.settings.advertised_address.clone(),
                rack: self.settings.rack.clone().unwrap_or_default(),
            });
            live.sort_by_key(|b| b.id);
        }
        Some(live)
    }
}

/// Starts the Kubernetes side of a started broker: its Lease, reading the others' Leases, the
/// Topic watch. The tasks end when `shutdown` turns true.
pub fn spawn(
    meta: Arc<KubeMetadata>,
    broker: Arc<Broker>,
    client: Client,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(lease::renew_loop(meta.clone(), broker.clone(), client.clone(), shutdown.clone())),
        tokio::spawn(read_leases(meta.clone(), client.clone(), shutdown.clone())),
        tokio::spawn(watch_topics(meta, broker, client, shutdown)),
    ]
}

/// Reads the broker Leases of the cluster every renewal period. By name, not by a
/// watch: the brokers' Role grants `get` on the cluster's broker Leases only (ids
/// `0..spec.brokers` of the Cluster), not `list`/`watch` on Leases.
async fn read_leases(meta: Arc<KubeMetadata>, client: Client, mut shutdown: watch::Receiver<bool>) {
    let s = meta.settings().clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &s.namespace);
    let clusters: Api<Cluster> = Api::namespaced(client, &s.namespace);
    let mut warned = false;
    loop {
        // Brokers the Cluster wants, and any id a placement names (scale-down).
        let mut ids: BTreeSet<i32> = match clusters.get_opt(&s.cluster).await {
            Ok(Some(c)) => (0..c.spec.brokers).collect(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                warn!(error = %e, cluster = %s.cluster, "cannot read the Cluster");
                BTreeSet::new()
            }
        };
        ids.insert(s.broker_id);
        if let Ok(st) = meta.state.read() {
            ids.extend(st.topics.values().flat_map(|(_, ps)| ps.iter().flat_map(|p| p.replicas.iter().copied())));
        }
        let previous = meta.leases.lock().map(|l| l.clone()).unwrap_or_default();
        let mut seen = BTreeMap::new();
        let mut failed = false;
        let wanted = ids.len();
        for id in ids {
            match leases.get_opt(&s.lease_name(id)).await {
                Ok(Some(l)) => {
                    seen.insert(id, l);
                }
                Ok(None) => {}
                Err(e) => {
                    // Keep what was known; a transient error must not forget a broker.
                    if let Some(l) = previous.get(&id) {
                        seen.insert(id, l.clone());
                    }
                    failed = true;
                    if !warned {
                        warn!(lease = %s.lease_name(id), error = %e, "cannot read a broker Lease");
                        warned = true;
                    }
                }
            }
        }
        if !failed {
            warned = false;
        }
        // A broker without a Lease yet (starting at the same time) is looked for again soon.
        let every = if seen.len() < wanted { s.renew_every.min(Duration::from_millis(300)) } else { s.renew_every };
        if let Ok(mut l) = meta.leases.lock() {
            *l = seen;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn watch_topics(
    meta: Arc<KubeMetadata>,
    broker: Arc<Broker>,
    client: Client,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Topic> = Api::namespaced(client, &meta.settings.namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    futures::pin_mut!(stream);
    let mut listed = false;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let changed = match event {
            Some(Ok(watcher::Event::InitDone)) => {
                listed = true;
                true
            }
            Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => listed,
            Some(Ok(_)) => false,
            Some(Err(e)) => {
                warn!(error = %e, "Topic watch failed; retrying");
                false
            }
            None => return,
        };
        if !changed {
            continue;
        }
        if let Err(e) = meta.set_topics(&reader.state()) {
            warn!(error = %e, "cannot update topics");
            continue;
        }
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || b.sync_with_metadata()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot apply topic changes to the log; retrying at the next change"),
            Err(e) => warn!(error = %e, "topic sync panicked"),
        }
    }
}

/// Runs a broker in Kubernetes mode until SIGINT or SIGTERM.
pub async fn run_until_signal(mut config: BrokerConfig, settings: KubeSettings) -> Result<()> {
    let client = Client::try_default()
        .await
        .map_err(|e| BrokerError::InvalidConfig(format!("no Kubernetes client configuration: {e}")))?;
    config.broker_id = settings.broker_id;
    config.advertised_address = Some(settings.advertised_address.clone());
    info!(cluster = %settings.cluster, namespace = %settings.namespace, broker_id = settings.broker_id,
          address = %settings.advertised_address, "starting in Kubernetes mode");
    let meta = Arc::new(KubeMetadata::new(settings));
    config.metadata = Some(meta.clone());
    let handle = crate::server::start(config).await?;
    let trigger = handle.shutdown_trigger();
    let tasks = spawn(meta.clone(), handle.broker().clone(), client.clone(), trigger.subscribe());
    let t = trigger.clone();
    tokio::spawn(async move {
        crate::server::wait_for_signal().await;
        info!("shutdown signal received");
        let _ = t.send(true);
    });
    let result = handle.wait().await;
    let _ = trigger.send(true);
    for t in tasks {
        let _ = t.await;
    }
    lease::release(&meta, &client).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_id_is_the_ordinal_of_the_pod_name() {
        assert_eq!(KubeSettings::id_from_pod_name("demo", "demo-0"), Some(0));
        assert_eq!(KubeSettings::id_from_pod_name("demo", "demo-12"), Some(12));
        assert_eq!(KubeSettings::id_from_pod_name("my-cluster", "my-cluster-2"), Some(2));
        assert_eq!(KubeSettings::id_from_pod_name("demo", "other-1"), None);
        assert_eq!(KubeSettings::id_from_pod_name("demo", "demo-x"), None);
        assert_eq!(KubeSettings::id_from_pod_name("demo", "demo--1"), None);
        assert_eq!(KubeSettings::id_from_pod_name("demo", "demo1"), None);
    }
}
