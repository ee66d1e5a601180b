//! [`ClusterMetadata`]: the metadata store of cluster mode. Topics, placement and the
//! other brokers come from the controller's metadata watch; topic admin and ISR
//! changes are asked of the controller; whether this broker may lead follows from its
//! heartbeats (self-fencing).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use sluice_controller_grpc::pb::{self, controller_client::ControllerClient};
use tonic::{Code, transport::Channel};
use tracing::info;

use super::ClusterSettings;
use crate::{
    error::{BrokerError, Result},
    metadata::{BrokerAddress, IsrChange, MetadataStore, PartitionPlacement, TopicSpec},
};

/// What the last metadata snapshot said.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) version: u64,
    /// Topics of the cluster: spec and placement.
    topics: BTreeMap<String, (TopicSpec, Vec<PartitionPlacement>)>,
    /// Unfenced brokers.
    brokers: Vec<BrokerAddress>,
}

/// Heartbeat bookkeeping: the broker may lead while its last accepted heartbeat was
/// *sent* less than two thirds of the session ago (the controller fences it a whole
/// session after *receiving* it, so the two never overlap), and once its metadata has
/// caught up with the version that heartbeat answered.
#[derive(Debug)]
struct Session {
    last_accepted_send: Option<Instant>,
    timeout: Duration,
    required_version: u64,
}

/// The [`MetadataStore`] of cluster mode.
pub struct ClusterMetadata {
    settings: ClusterSettings,
    client: ControllerClient<Channel>,
    pub(super) state: Arc<RwLock<State>>,
    session: Mutex<Session>,
}

impl std::fmt::Debug for ClusterMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMetadata").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn poisoned() -> BrokerError {
    BrokerError::Storage("cluster metadata lock poisoned".into())
}

pub(super) fn placement(p: &pb::PartitionMetadata) -> PartitionPlacement {
    PartitionPlacement {
        partition: u32::try_from(p.partition).unwrap_or(0),
        leader: (p.leader >= 0).then_some(p.leader),
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
    }
}

fn topic(t: &pb::TopicMetadata) -> (TopicSpec, Vec<PartitionPlacement>) {
    let spec = TopicSpec {
        name: t.name.clone(),
        partitions: u32::try_from(t.partitions.len()).unwrap_or(u32::MAX),
        replication_factor: t.replication_factor,
        config: t.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        internal: sluice_core::topic::is_internal(&t.name),
    };
    (spec, t.partitions.iter().map(placement).collect())
}

/// A refusal or failure of the controller as the broker's error.
fn controller_error(controller: &str, s: tonic::Status, topic: &str) -> BrokerError {
    match s.code() {
        Code::AlreadyExists => BrokerError::TopicAlreadyExists(topic.to_string()),
        Code::NotFound => BrokerError::UnknownTopic(topic.to_string()),
        Code::InvalidArgument | Code::FailedPrecondition => BrokerError::InvalidRequest(s.message().to_string()),
        _ => BrokerError::Storage(format!("the controller at {controller} did not answer: {}", s.message())),
    }
}

/// Runs `f` to completion from the broker's synchronous trait methods: on the
/// multi-thread runtime the worker hands its other tasks off while it waits.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(|| h.block_on(f))),
        _ => Err(BrokerError::Unsupported("cluster mode needs the multi-thread tokio runtime".into())),
    }
}

impl ClusterMetadata {
    pub fn new(settings: ClusterSettings, client: ControllerClient<Channel>) -> Self {
        Self {
            settings,
            client,
            state: Arc::new(RwLock::new(State::default())),
            session: Mutex::new(Session {
                last_accepted_send: None,
                timeout: sluice_controller_grpc::DEFAULT_SESSION_TIMEOUT,
                required_version: 0,
            }),
        }
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    pub(super) fn client(&self) -> ControllerClient<Channel> {
        self.client.clone()
    }

    /// Records an accepted heartbeat sent at `sent`.
    pub(super) fn heartbeat_accepted(&self, sent: Instant, timeout: Duration, version: u64) {
        if let Ok(mut s) = self.session.lock() {
            s.last_accepted_send = Some(s.last_accepted_send.map_or(sent, |t| t.max(sent)));
            s.timeout = timeout;
            s.required_version = s.required_version.max(version);
        }
    }

    /// The session timeout the controller last announced.
    pub fn session_timeout(&self) -> Duration {
        self.session.lock().map(|s| s.timeout).unwrap_or(sluice_controller_grpc::DEFAULT_SESSION_TIMEOUT)
    }

    /// Why this broker must not act as a leader now, if it must not.
    pub fn fenced_reason(&self) -> Option<String> {
        let (last, timeout, required) = match self.session.lock() {
            Ok(s) => (s.last_accepted_send, s.timeout, s.required_version),
            Err(_) => return Some("session lock poisoned".into()),
        };
        let limit = timeout * 2 / 3;
        match last {
            None => return Some("no heartbeat has been accepted by the controller yet".into()),
            Some(t) if t.elapsed() >= limit => {
                return Some(format!(
                    "no heartbeat accepted by the controller for {} ms (it fences brokers after {} ms)",
                    t.elapsed().as_millis(),
                    timeout.as_millis()
                ));
            }
            Some(_) => {}
        }
        let have = self.state.read().map(|s| s.version).unwrap_or(0);
        (have < required).then(|| format!("metadata version {have} is behind the controller's {required}"))
    }

    /// Replaces the cluster's topics and brokers with `m`; `force` accepts an older
    /// version (the first snapshot of a new watch: the controller may have restarted).
    /// Returns whether it was applied.
    pub(super) fn apply(&self, m: &pb::ClusterMetadata, force: bool) -> Result<bool> {
        let mut s = self.state.write().map_err(|_| poisoned())?;
        if !force && m.version < s.version {
            return Ok(false);
        }
        s.version = m.version;
        s.topics = m.topics.iter().map(|t| (t.name.clone(), topic(t))).collect();
        s.brokers = m
            .brokers
            .iter()
            .filter(|b| !b.fenced)
            .map(|b| BrokerAddress {
                id: b.id,
                address: b.grpc_address.clone(),
                rack: b.rack.clone(),
                kafka_address: Some(b.kafka_address.clone()).filter(|a| !a.is_empty()),
            })
            .collect();
        drop(s);
        if let Ok(mut session) = self.session.lock()
            && m.session_timeout_ms > 0
        {
            session.timeout = Duration::from_millis(m.session_timeout_ms);
        }
        Ok(true)
    }

    /// One topic as the controller just answered it (before the watch brings it).
    fn apply_topic(&self, t: &pb::TopicMetadata, version: u64) -> Result<()> {
        let mut s = self.state.write().map_err(|_| poisoned())?;
        s.topics.insert(t.name.clone(), topic(t));
        s.version = s.version.max(version);
        Ok(())
    }

    fn leader_address(&self, id: i32) -> String {
        self.state
            .read()
            .ok()
            .and_then(|s| s.brokers.iter().find(|b| b.id == id).map(|b| b.address.clone()))
            .unwrap_or_default()
    }

    fn me(&self) -> BrokerAddress {
        BrokerAddress {
            id: self.settings.broker_id,
            address: self.settings.grpc_address.clone(),
            rack: self.settings.rack.clone().unwrap_or_default(),
            kafka_address: self.settings.kafka_address.clone(),
        }
    }

    fn update(&self, spec: &TopicSpec) -> Result<()> {
        let mut client = self.client();
        let req = pb::UpdateTopicRequest {
            name: spec.name.clone(),
            partitions: spec.partitions,
            config: spec.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let r = block_on(client.update_topic(req))?
            .map_err(|s| controller_error(&self.settings.controller, s, &spec.name))?
            .into_inner();
        if let Some(t) = &r.topic {
            self.apply_topic(t, r.version)?;
        }
        Ok(())
    }
}

impl MetadataStore for ClusterMetadata {
    fn topics(&self) -> Result<Vec<TopicSpec>> {
        let s = self.state.read().map_err(|_| poisoned())?;
        Ok(s.topics.values().map(|(t, _)| t.clone()).collect())
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        let mut client = self.client();
        let req = pb::CreateTopicRequest {
            name: spec.name.clone(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            config: spec.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let r = block_on(client.create_topic(req))?
            .map_err(|s| controller_error(&self.settings.controller, s, &spec.name))?
            .into_inner();
        let t = r.topic.ok_or_else(|| BrokerError::Storage("the controller answered no topic".into()))?;
        self.apply_topic(&t, r.version)?;
        info!(topic = %spec.name, replication_factor = t.replication_factor, "topic created by the controller");
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        let mut client = self.client();
        let req = pb::DeleteTopicRequest { name: name.to_string() };
        let r = block_on(client.delete_topic(req))?
            .map_err(|s| controller_error(&self.settings.controller, s, name))?
            .into_inner();
        let mut s = self.state.write().map_err(|_| poisoned())?;
        s.topics.remove(name);
        s.version = s.version.max(r.version);
        Ok(())
    }

    fn update_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.update(spec)
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
            Some(id) if id == me => match self.fenced_reason() {
                None => Ok(()),
                Some(why) => Err(BrokerError::NotLeader {
                    reason: format!("broker {me} does not act as leader of {topic}-{partition}: {why}"),
                    leader: None,
                }),
            },
            Some(id) => Err(BrokerError::NotLeader {
                reason: format!("broker {me} is not the leader of {topic}-{partition}: broker {id} is"),
                leader: Some((id, self.leader_address(id))),
            }),
            None => Err(BrokerError::NotLeader {
                reason: format!("{topic}-{partition} is offline: no eligible replica is live"),
                leader: None,
            }),
        }
    }

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
        let mut live = self.state.read().map(|s| s.brokers.clone()).unwrap_or_default();
        if !live.iter().any(|b| b.id == self.settings.broker_id) {
            live.push(self.me());
            live.sort_by_key(|b| b.id);
        }
        live
    }

    fn replicates(&self) -> bool {
        true
    }

    fn shares_internal_topics(&self) -> bool {
        true
    }

    fn alter_partition(&self, change: IsrChange) -> BoxFuture<'static, Result<PartitionPlacement>> {
        let mut client = self.client();
        let controller = self.settings.controller.clone();
        let req = pb::AlterPartitionRequest {
            topic: change.topic.clone(),
            partition: i32::try_from(change.partition).unwrap_or(i32::MAX),
            leader_id: change.leader_id,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change.new_isr,
        };
        let state = self.state.clone();
        Box::pin(async move {
            let r = client
                .alter_partition(req)
                .await
                .map_err(|s| controller_error(&controller, s, &change.topic))?
                .into_inner();
            use pb::AlterPartitionError as E;
            let what = format!("AlterPartition {}-{}", change.topic, change.partition);
            match r.error() {
                E::None => {
                    let p =
                        r.partition.as_ref().map(placement).ok_or_else(|| {
                            BrokerError::Storage(format!("{what}: the controller answered no partition"))
                        })?;
                    // Known at once, before the watch brings it.
                    if let Ok(mut s) = state.write()
                        && let Some((_, ps)) = s.topics.get_mut(&change.topic)
                        && let Some(old) = ps.iter_mut().find(|o| o.partition == p.partition)
                        && old.partition_epoch < p.partition_epoch
                    {
                        *old = p.clone();
                    }
                    Ok(p)
                }
                E::NotLeader | E::FencedLeaderEpoch => {
                    Err(BrokerError::NotLeader { reason: format!("{what} refused: {}", r.message), leader: None })
                }
                E::UnknownTopicOrPartition => Err(BrokerError::UnknownTopic(change.topic.clone())),
                E::InvalidUpdateVersion | E::IneligibleReplica | E::InvalidIsr => Err(BrokerError::InvalidRequest(
                    format!("{what} refused ({}): {}", r.error().as_str_name(), r.message),
                )),
            }
        })
    }

    fn broker_id(&self) -> i32 {
        self.settings.broker_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ClusterMetadata {
        let settings = ClusterSettings {
            controller: "127.0.0.1:1".into(),
            broker_id: 1,
            grpc_address: "127.0.0.1:9094".into(),
            kafka_address: Some("127.0.0.1:9095".into()),
            rack: None,
            incarnation: 7,
        };
        let client = sluice_controller_grpc::connect(&settings.controller).expect("address");
        ClusterMetadata::new(settings, client)
    }

    fn snapshot(version: u64, leader: i32) -> pb::ClusterMetadata {
        let broker = |id: i32| pb::BrokerMetadata {
            id,
            grpc_address: format!("127.0.0.1:{}", 9092 + 2 * id),
            kafka_address: format!("127.0.0.1:{}", 9093 + 2 * id),
            rack: String::new(),
            fenced: id == 2,
        };
        pb::ClusterMetadata {
            version,
            brokers: (0..3).map(broker).collect(),
            topics: vec![pb::TopicMetadata {
                name: "orders".into(),
                replication_factor: 2,
                config: Default::default(),
                partitions: vec![
                    pb::PartitionMetadata {
                        partition: 0,
                        leader,
                        leader_epoch: 3,
                        partition_epoch: 5,
                        replicas: vec![0, 1],
                        isr: vec![0, 1],
                        elr: vec![],
                        last_leader: leader,
                    },
                    pb::PartitionMetadata {
                        partition: 1,
                        leader: 0,
                        replicas: vec![0, 2],
                        isr: vec![0, 2],
                        ..Default::default()
                    },
                ],
            }],
            session_timeout_ms: 3000,
        }
    }

    #[tokio::test]
    async fn leads_only_with_a_recent_heartbeat_and_current_metadata() {
        let s = store();
        assert!(s.apply(&snapshot(4, 1), false).expect("apply"));
        assert_eq!(s.hosted_partitions("orders"), Some(vec![0]), "only partitions with a replica here");
        assert_eq!(s.leader_epoch("orders", 0), 3);
        assert!(s.replicates());
        let err = s.check_leader("orders", 0).unwrap_err().to_string();
        assert!(err.contains("no heartbeat has been accepted"), "{err}");
        s.heartbeat_accepted(Instant::now(), Duration::from_secs(3), 4);
        s.check_leader("orders", 0).expect("leader with a fresh heartbeat");
        // A heartbeat answered at a newer version: not until the watch catches up.
        s.heartbeat_accepted(Instant::now(), Duration::from_secs(3), 6);
        let err = s.check_leader("orders", 0).unwrap_err().to_string();
        assert!(err.contains("metadata version 4 is behind the controller's 6"), "{err}");
        assert!(s.apply(&snapshot(6, 1), false).expect("apply"));
        s.check_leader("orders", 0).expect("caught up");
        assert!(!s.apply(&snapshot(5, 0), false).expect("apply"), "an older snapshot is ignored");
        // Self-fencing: two thirds of a (short) session without an accepted heartbeat.
        s.heartbeat_accepted(Instant::now(), Duration::from_millis(30), 6);
        std::thread::sleep(Duration::from_millis(25));
        let err = s.check_leader("orders", 0).unwrap_err().to_string();
        assert!(err.contains("no heartbeat accepted by the controller for"), "{err}");
        // Another broker's partition names its leader; a topic the controller does not
        // know (yet) is answered for by this broker.
        match s.check_leader("orders", 1) {
            Err(BrokerError::NotLeader { leader: Some((0, addr)), .. }) => assert_eq!(addr, "127.0.0.1:9092"),
            other => panic!("{other:?}"),
        }
        s.check_leader("__consumer_offsets", 0).expect("not placed yet");
        assert!(s.shares_internal_topics(), "groups are coordinated cluster-wide");
        let ids: Vec<(i32, Option<String>)> = s.brokers().into_iter().map(|b| (b.id, b.kafka_address)).collect();
        assert_eq!(
            ids,
            vec![(0, Some("127.0.0.1:9093".into())), (1, Some("127.0.0.1:9095".into()))],
            "fenced brokers are not listed"
        );
    }
}
