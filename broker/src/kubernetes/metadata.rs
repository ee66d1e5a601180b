//! [`KubeMetadata`]: the metadata store of Kubernetes mode. Topics and placement come
//! from the Topic watch ([`super::topics`]), the other brokers from their Leases
//! ([`super::peers`]), and whether this broker may lead from its own Lease
//! ([`super::lease`]). The gRPC layer only maps what this answers.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use tokio::sync::Notify;

use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use sluice_crd::{
    Topic,
    contract::{self, ADDRESS_ANNOTATION, RACK_LABEL},
};

use super::{KubeSettings, topics};
use crate::{
    error::{BrokerError, Result},
    metadata::{BrokerAddress, MetadataStore, PartitionPlacement, TopicSpec},
};

#[derive(Debug, Default)]
pub(super) struct State {
    /// Kafka-style name → spec and placement, for placed, not deleted Topics.
    pub(super) topics: BTreeMap<String, (TopicSpec, Vec<PartitionPlacement>)>,
    /// Internal topics (`__consumer_offsets`): hosted and led by every broker itself.
    internal: BTreeMap<String, TopicSpec>,
}

/// The [`MetadataStore`] of Kubernetes mode.
pub struct KubeMetadata {
    settings: KubeSettings,
    pub(super) state: RwLock<State>,
    /// The broker may act as a leader until then (its Lease is current).
    lease_valid_until: Mutex<Option<Instant>>,
    /// The cluster's broker Leases by id, as last read.
    pub(super) leases: Mutex<BTreeMap<i32, Lease>>,
    /// Topics Kafka clients asked for that do not exist (auto-creation): listed on the
    /// Lease until a Topic resource for them appears.
    requested: Mutex<BTreeSet<String>>,
    /// Wakes the Lease loop when a topic is requested.
    pub(super) topic_requested: Notify,
}

impl std::fmt::Debug for KubeMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMetadata").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn poisoned() -> BrokerError {
    BrokerError::Storage("metadata lock poisoned".into())
}

/// Whether `lease` is held and not past `renewTime + leaseDurationSeconds` (the
/// contract's rule, applied to a Lease object).
pub fn lease_is_current(lease: &Lease, now: Timestamp) -> bool {
    let spec = lease.spec.as_ref();
    contract::lease_is_current(
        spec.and_then(|s| s.holder_identity.as_deref()),
        spec.and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref())).map(|t| t.0),
        spec.and_then(|s| s.lease_duration_seconds),
        now,
    )
}

impl KubeMetadata {
    pub fn new(settings: KubeSettings) -> Self {
        Self {
            settings,
            state: RwLock::new(State::default()),
            lease_valid_until: Mutex::new(None),
            leases: Mutex::new(BTreeMap::new()),
            requested: Mutex::new(BTreeSet::new()),
            topic_requested: Notify::new(),
        }
    }

    /// The requested topics that still do not exist, for the Lease annotation
    /// ([`contract::REQUESTED_TOPICS_ANNOTATION`]); those that exist now are forgotten.
    pub(super) fn pending_topic_requests(&self) -> Vec<String> {
        let Ok(mut requested) = self.requested.lock() else { return Vec::new() };
        if let Ok(s) = self.state.read() {
            requested.retain(|name| !s.topics.contains_key(name));
        }
        requested.iter().cloned().collect()
    }

    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    /// Whether this broker's Lease is current (it may lead partitions).
    pub fn lease_held(&self) -> bool {
        self.lease_valid_until.lock().ok().and_then(|v| *v).is_some_and(|until| Instant::now() < until)
    }

    pub(super) fn lease_renewed(&self, until: Instant) {
        if let Ok(mut v) = self.lease_valid_until.lock() {
            *v = Some(until);
        }
    }

    /// Replaces the topics with those of `topics` (every Topic in the namespace).
    pub(super) fn set_topics(&self, topics: &[Arc<Topic>]) -> Result<()> {
        let converted = topics::cluster_topics(&self.settings.cluster, topics);
        self.state.write().map_err(|_| poisoned())?.topics = converted;
        Ok(())
    }

    /// Broker id → (address, rack, live) from the broker Leases seen.
    fn lease_brokers(&self) -> BTreeMap<i32, (BrokerAddress, bool)> {
        let now = Timestamp::now();
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
            out.insert(id, (BrokerAddress { id, address, rack, kafka_address: None }, lease_is_current(&l, now)));
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

    fn request_topic(&self, name: &str) -> bool {
        // Only names a Topic could carry (valid, not internal); no comma can be in one.
        if sluice_core::topic::validate_user_topic_name(name).is_err() {
            return false;
        }
        let Ok(mut requested) = self.requested.lock() else { return false };
        if !requested.contains(name) {
            if requested.len() >= contract::MAX_REQUESTED_TOPICS {
                return false;
            }
            requested.insert(name.to_string());
            tracing::info!(topic = name, "a Kafka client asked for an unknown topic: creation requested on the Lease");
            self.topic_requested.notify_one();
        }
        true
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

    /// Placed topics: the Topic's status. Internal topics: this broker leads its own.
    fn placement(&self, topic: &str, partitions: u32) -> Vec<PartitionPlacement> {
        let placed = self.state.read().ok().and_then(|s| s.topics.get(topic).map(|(_, p)| p.clone()));
        placed.unwrap_or_else(|| PartitionPlacement::led_by(self.settings.broker_id, partitions))
    }

    fn leader_epoch(&self, topic: &str, partition: u32) -> i32 {
        let Ok(s) = self.state.read() else { return 0 };
        s.topics
            .get(topic)
            .and_then(|(_, placement)| placement.iter().find(|p| p.partition == partition))
            .map_or(0, |p| p.leader_epoch)
    }

    fn brokers(&self) -> Vec<BrokerAddress> {
        let mut live: Vec<BrokerAddress> =
            self.lease_brokers().into_values().filter(|(_, live)| *live).map(|(b, _)| b).collect();
        let me = self.settings.broker_id;
        if !live.iter().any(|b| b.id == me) && self.lease_held() {
            live.push(BrokerAddress {
                id: me,
                address: self.settings.advertised_address.clone(),
                rack: self.settings.rack.clone().unwrap_or_default(),
                kafka_address: None,
            });
            live.sort_by_key(|b| b.id);
        }
        live
    }

    fn broker_id(&self) -> i32 {
        self.settings.broker_id
    }
}
