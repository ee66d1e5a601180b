//! A test controller and a cluster of in-process brokers that replicate over real gRPC
//! on loopback. The controller is a shared in-memory store; each broker sees it through
//! its own [`BrokerView`] (a `MetadataStore` with `replicates() = true`). Its
//! `alter_partition` checks the leader and partition epochs as a controller would, and
//! [`Controller::move_leader`] moves leadership (bumping both epochs). Internal topics
//! (`__consumer_offsets`) stay local to each broker, as with a standalone broker.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use sluice_broker::{
    Broker, BrokerConfig, BrokerHandle,
    error::{BrokerError, Result},
    metadata::{BrokerAddress, IsrChange, MetadataStore, PartitionPlacement, TopicSpec},
};
use sluice_core::BatchBuilder;
use sluice_proto::v1::{self as pb, sluice_client::SluiceClient};
use tonic::transport::Channel;

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, TopicSpec>,
    partitions: HashMap<(String, u32), PartitionPlacement>,
    brokers: BTreeMap<i32, BrokerAddress>,
    internal: BTreeMap<String, TopicSpec>,
    /// ISR changes accepted, and refused for a stale epoch.
    accepted: u64,
    refused: u64,
}

/// The test controller.
#[derive(Debug, Default)]
pub struct Controller {
    state: Mutex<State>,
}

impl Controller {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// A topic whose partition `p` has replicas `assign(p)` (the first leads), all in
    /// the ISR, at epoch 0.
    pub fn create_topic(&self, name: &str, partitions: u32, config: &[(&str, &str)], assign: impl Fn(u32) -> Vec<i32>) {
        let mut s = self.lock();
        let replicas = assign(0);
        let spec = TopicSpec {
            name: name.to_string(),
            partitions,
            replication_factor: replicas.len() as u32,
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            internal: false,
        };
        s.topics.insert(name.to_string(), spec);
        for p in 0..partitions {
            let replicas = assign(p);
            s.partitions.insert(
                (name.to_string(), p),
                PartitionPlacement {
                    partition: p,
                    leader: replicas.first().copied(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: replicas.clone(),
                    replicas,
                },
            );
        }
    }

    pub fn register(&self, id: i32, addr: String) {
        self.lock().brokers.insert(id, BrokerAddress { id, address: addr, rack: String::new(), kafka_address: None });
    }

    pub fn unregister(&self, id: i32) {
        self.lock().brokers.remove(&id);
    }

    pub fn placement(&self, topic: &str, partition: u32) -> PartitionPlacement {
        self.lock().partitions[&(topic.to_string(), partition)].clone()
    }

    /// Moves leadership of a partition to `leader` (bumps the leader and partition
    /// epochs; the ISR keeps its members and gains the new leader).
    pub fn move_leader(&self, topic: &str, partition: u32, leader: i32) -> PartitionPlacement {
        let mut s = self.lock();
        let p = s.partitions.get_mut(&(topic.to_string(), partition)).unwrap();
        assert!(p.replicas.contains(&leader), "{leader} is not a replica of {topic}-{partition}");
        p.leader = Some(leader);
        p.leader_epoch += 1;
        p.partition_epoch += 1;
        if !p.isr.contains(&leader) {
            p.isr.push(leader);
        }
        p.clone()
    }

    /// ISR changes the controller accepted.
    pub fn accepted_isr_changes(&self) -> u64 {
        self.lock().accepted
    }

    fn alter(&self, c: IsrChange) -> Result<PartitionPlacement> {
        let mut s = self.lock();
        let Some(p) = s.partitions.get(&(c.topic.clone(), c.partition)).cloned() else {
            return Err(BrokerError::UnknownTopic(c.topic));
        };
        if p.leader != Some(c.leader_id) || p.leader_epoch != c.leader_epoch || p.partition_epoch != c.partition_epoch {
            s.refused += 1;
            return Err(BrokerError::InvalidRequest(format!(
                "stale ISR change for {}-{}: leader {} at epochs {}/{}, the controller has leader {:?} at {}/{}",
                c.topic,
                c.partition,
                c.leader_id,
                c.leader_epoch,
                c.partition_epoch,
                p.leader,
                p.leader_epoch,
                p.partition_epoch
            )));
        }
        if !c.new_isr.contains(&c.leader_id) || c.new_isr.iter().any(|r| !p.replicas.contains(r)) {
            s.refused += 1;
            return Err(BrokerError::InvalidRequest(format!("invalid ISR {:?}", c.new_isr)));
        }
        let p = s.partitions.get_mut(&(c.topic.clone(), c.partition)).unwrap();
        p.isr = c.new_isr;
        p.partition_epoch += 1;
        let p = p.clone();
        s.accepted += 1;
        Ok(p)
    }
}

/// One broker's view of the controller.
#[derive(Debug)]
pub struct BrokerView {
    pub id: i32,
    pub ctl: Arc<Controller>,
}

impl MetadataStore for BrokerView {
    fn topics(&self) -> Result<Vec<TopicSpec>> {
        let s = self.ctl.lock();
        Ok(s.topics.values().chain(s.internal.values()).cloned().collect())
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        if !spec.internal {
            return Err(BrokerError::Unsupported("the test controller creates topics".into()));
        }
        self.ctl.lock().internal.entry(spec.name.clone()).or_insert_with(|| spec.clone());
        Ok(())
    }

    fn delete_topic(&self, _name: &str) -> Result<()> {
        Err(BrokerError::Unsupported("the test controller deletes topics".into()))
    }

    fn update_topic(&self, _spec: &TopicSpec) -> Result<()> {
        Err(BrokerError::Unsupported("the test controller changes topics".into()))
    }

    fn admin_refusal(&self) -> Option<String> {
        Some("topics are managed by the test controller".into())
    }

    fn hosted_partitions(&self, topic: &str) -> Option<Vec<u32>> {
        let s = self.ctl.lock();
        let spec = s.topics.get(topic)?;
        Some(
            (0..spec.partitions)
                .filter(|p| s.partitions.get(&(topic.to_string(), *p)).is_some_and(|pl| pl.replicas.contains(&self.id)))
                .collect(),
        )
    }

    fn check_leader(&self, topic: &str, partition: u32) -> Result<()> {
        let s = self.ctl.lock();
        let Some(p) = s.partitions.get(&(topic.to_string(), partition)) else { return Ok(()) };
        if p.leader == Some(self.id) {
            return Ok(());
        }
        let leader = p.leader.and_then(|l| s.brokers.get(&l).map(|b| (l, b.address.clone())));
        Err(BrokerError::NotLeader { reason: format!("broker {} does not lead {topic}-{partition}", self.id), leader })
    }

    fn placement(&self, topic: &str, partitions: u32) -> Vec<PartitionPlacement> {
        let s = self.ctl.lock();
        if !s.topics.contains_key(topic) {
            return PartitionPlacement::led_by(self.id, partitions);
        }
        (0..partitions).filter_map(|p| s.partitions.get(&(topic.to_string(), p)).cloned()).collect()
    }

    fn leader_epoch(&self, topic: &str, partition: u32) -> i32 {
        self.ctl.lock().partitions.get(&(topic.to_string(), partition)).map_or(0, |p| p.leader_epoch)
    }

    fn brokers(&self) -> Vec<BrokerAddress> {
        self.ctl.lock().brokers.values().cloned().collect()
    }

    fn replicates(&self) -> bool {
        true
    }

    fn alter_partition(&self, change: IsrChange) -> BoxFuture<'static, Result<PartitionPlacement>> {
        Box::pin(std::future::ready(self.ctl.alter(change)))
    }

    fn broker_id(&self) -> i32 {
        self.id
    }
}

/// One broker of a [`TestCluster`]: its data directory outlives its restarts.
pub struct Member {
    pub id: i32,
    pub dir: tempfile::TempDir,
    pub handle: Option<BrokerHandle>,
}

/// N in-process brokers over one test controller.
pub struct TestCluster {
    pub ctl: Arc<Controller>,
    pub members: Vec<Member>,
    pub lag: Duration,
    /// Brokers also serve the Kafka protocol (on a port of their own).
    pub kafka: bool,
}

impl TestCluster {
    /// Brokers 1..=n, with `replica.lag.time.max.ms` = `lag`.
    pub async fn start(n: i32, lag: Duration) -> Self {
        Self::start_with(n, lag, false).await
    }

    /// [`Self::start`], with a Kafka listener on every broker when `kafka`.
    pub async fn start_with(n: i32, lag: Duration, kafka: bool) -> Self {
        let mut c = Self { ctl: Arc::new(Controller::default()), members: Vec::new(), lag, kafka };
        for id in 1..=n {
            c.members.push(Member { id, dir: tempfile::tempdir().unwrap(), handle: None });
            c.start_broker(id).await;
        }
        c
    }

    fn member(&mut self, id: i32) -> &mut Member {
        self.members.iter_mut().find(|m| m.id == id).unwrap()
    }

    /// Starts (or restarts, on its old data) broker `id`.
    pub async fn start_broker(&mut self, id: i32) {
        let (ctl, lag, kafka) = (self.ctl.clone(), self.lag, self.kafka);
        let m = self.member(id);
        assert!(m.handle.is_none(), "broker {id} is running");
        let mut config = BrokerConfig::standalone(m.dir.path(), "127.0.0.1:0".parse().unwrap());
        config.broker_id = id;
        config.replica_lag_time_max = lag;
        config.flush_interval = Duration::from_millis(100);
        config.metadata = Some(Arc::new(BrokerView { id, ctl: ctl.clone() }));
        if kafka {
            config.kafka = Some(sluice_broker::kafka::KafkaConfig::new("127.0.0.1:0".parse().unwrap()));
        }
        let handle = sluice_broker::start(config).await.expect("broker starts");
        ctl.register(id, handle.addr.to_string());
        m.handle = Some(handle);
    }

    /// Stops broker `id` cleanly (its log flushed); it leaves the broker list.
    pub async fn stop_broker(&mut self, id: i32) {
        self.ctl.unregister(id);
        if let Some(h) = self.member(id).handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn broker(&self, id: i32) -> Arc<Broker> {
        self.members.iter().find(|m| m.id == id).and_then(|m| m.handle.as_ref()).unwrap().broker().clone()
    }

    pub fn addr(&self, id: i32) -> String {
        self.members.iter().find(|m| m.id == id).and_then(|m| m.handle.as_ref()).unwrap().addr.to_string()
    }

    /// The Kafka listener of broker `id` (started with `kafka`).
    pub fn kafka_addr(&self, id: i32) -> std::net::SocketAddr {
        self.members.iter().find(|m| m.id == id).and_then(|m| m.handle.as_ref()).unwrap().kafka_addr.unwrap()
    }

    /// Every running broker opens the topics the controller has now.
    pub fn sync(&self) {
        for m in &self.members {
            if let Some(h) = &m.handle {
                h.broker().sync_with_metadata().expect("sync");
            }
        }
    }

    pub async fn client(&self, id: i32) -> SluiceClient<Channel> {
        SluiceClient::connect(format!("http://{}", self.addr(id))).await.expect("connect")
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<i32> = self.members.iter().map(|m| m.id).collect();
        for id in ids {
            self.stop_broker(id).await;
        }
    }
}

/// Waits until `f` holds, polling every 50 ms, for at most `secs` seconds.
pub async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A batch of `n` records `prefix-i`; with `producer`, stamped (id, epoch, base sequence).
pub fn batch(prefix: &str, n: u32, producer: Option<(i64, i16, i32)>) -> bytes::Bytes {
    // Now: retention would delete batches stamped long ago.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(now, None, Some(format!("{prefix}-{i}").as_bytes()), &[]);
    }
    if let Some((id, epoch, seq)) = producer {
        b.set_producer(id, epoch, seq);
    }
    b.finish().expect("batch")
}

pub fn produce_request(topic: &str, partition: u32, acks: pb::Acks, batch: bytes::Bytes) -> pb::ProduceRequest {
    pb::ProduceRequest { topic: topic.into(), partition, acks: acks as i32, batch, ..Default::default() }
}

/// Every stored batch of a partition on a broker, up to its log end (bytes as stored).
pub fn log_bytes(broker: &Broker, topic: &str, partition: u32) -> Vec<u8> {
    use sluice_broker::storage::PartitionStore;
    let (_, log) = broker.replica_log(topic, partition).expect("hosted");
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read_to_log_end(at as i64, 1 << 20).expect("read");
        let mut next = at;
        for b in sluice_core::Batches::new(r.batches.clone()) {
            next = next.max(b.expect("batch").header.next_offset());
        }
        out.extend_from_slice(&r.batches);
        assert!(next > at, "no progress reading {topic}-{partition}");
        at = next;
    }
    out
}

/// (log end, high watermark) of a partition on a broker.
pub fn offsets(broker: &Broker, topic: &str, partition: u32) -> (u64, u64) {
    use sluice_broker::storage::PartitionStore;
    let (_, log) = broker.replica_log(topic, partition).expect("hosted");
    let o = log.offsets();
    (o.log_end, o.high_watermark)
}

/// Records a consumer sees from offset 0 on broker `leader`'s gRPC fetch.
pub async fn consume_all(client: &mut SluiceClient<Channel>, topic: &str, partition: u32) -> (Vec<String>, u64) {
    let mut values = Vec::new();
    let mut offset = 0i64;
    loop {
        let r = client
            .fetch(pb::FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_wait_ms: 0,
                max_bytes: 1 << 20,
                ..Default::default()
            })
            .await
            .expect("fetch")
            .into_inner();
        if r.batches.is_empty() {
            return (values, r.high_watermark);
        }
        for rec in sluice_core::batch::Records::new(r.batches.clone()).expect("records") {
            let rec = rec.expect("record");
            if rec.offset as i64 >= offset {
                values.push(String::from_utf8(rec.value.expect("value").to_vec()).expect("utf8"));
                offset = rec.offset as i64 + 1;
            }
        }
    }
}
