//! Where the broker learns which topics exist and how they are configured.
//!
//! The broker talks to one [`MetadataStore`]; in standalone mode it is [`LocalMetadata`]
//! (kept in the broker's own sled database), on Kubernetes it is built from Topic
//! resources and broker Leases (`crate::kubernetes`). Nothing else in the broker knows
//! which one it has: the gRPC layer maps what the store answers.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// The desired state of a topic, as the metadata store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Configuration keys the topic overrides (Kafka-style keys).
    pub config: BTreeMap<String, String>,
    pub internal: bool,
}

/// Source of topic metadata. Writes are refused by stores that are read-only for the
/// broker (Kubernetes: topics are changed through Topic resources).
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Every topic, sorted by name.
    fn topics(&self) -> Result<Vec<TopicSpec>>;
    fn create_topic(&self, spec: &TopicSpec) -> Result<()>;
    fn delete_topic(&self, name: &str) -> Result<()>;
    fn update_topic(&self, spec: &TopicSpec) -> Result<()>;

    /// Why topics cannot be changed through the broker's admin API, when they cannot
    /// (Kubernetes: Topic resources are the only way).
    fn admin_refusal(&self) -> Option<String> {
        None
    }

    /// Asks whoever creates topics to create `name`, for Kafka's auto-creation where the
    /// broker cannot create topics itself (Kubernetes: the broker lists the name on its
    /// Lease and the operator creates the Topic resource when the Cluster opts in).
    /// False when this store takes no such requests (or has too many pending).
    fn request_topic(&self, _name: &str) -> bool {
        false
    }

    /// The partitions of `topic` this broker hosts; `None`: all of them (standalone).
    fn hosted_partitions(&self, _topic: &str) -> Option<Vec<u32>> {
        None
    }

    /// Fails with [`BrokerError::NotLeader`] when this broker must not serve produce and
    /// fetch for the partition (another broker leads it, or this broker lost its Lease).
    fn check_leader(&self, _topic: &str, _partition: u32) -> Result<()> {
        Ok(())
    }

    /// Placement and leadership of every partition of `topic` (which has `partitions`
    /// partitions): what Metadata and DescribeTopic report. Standalone: this broker
    /// hosts and leads every partition, at leader epoch 0.
    fn placement(&self, topic: &str, partitions: u32) -> Vec<PartitionPlacement>;

    /// The current leader epoch of a partition, stored in the header of every batch
    /// this broker appends as its leader. Standalone: always 0 (leadership never moves).
    fn leader_epoch(&self, _topic: &str, _partition: u32) -> i32 {
        0
    }

    /// Every live broker of the cluster, as clients reach them (standalone: this one).
    fn brokers(&self) -> Vec<BrokerAddress>;

    /// Whether partitions with more than one replica are replicated here: followers
    /// fetch from their leader, the high watermark waits for the ISR, and ISR changes go
    /// to the controller through [`Self::alter_partition`]. False for a standalone
    /// broker (one replica of everything) and, until the operator serves AlterPartition,
    /// in Kubernetes mode (where `acks=all` on replication factor > 1 stays refused).
    fn replicates(&self) -> bool {
        false
    }

    /// Asks the controller to change a partition's ISR (Kafka's AlterPartition): the
    /// controller checks that `change` comes from the current leader at the current
    /// leader and partition epochs, writes the new ISR with the partition epoch bumped,
    /// and answers the partition as it now stands (every broker also learns it through
    /// its metadata). Refused by stores without a controller.
    fn alter_partition(&self, change: IsrChange) -> BoxFuture<'static, Result<PartitionPlacement>> {
        let _ = change;
        Box::pin(std::future::ready(Err(BrokerError::Unsupported(
            "ISR changes need a controller; this broker has none".into(),
        ))))
    }

    /// Whether the internal topics (`__consumer_offsets`) are topics of the cluster,
    /// placed and replicated by the controller like any other, so that one broker
    /// coordinates each group for the whole cluster (cluster mode). False where every
    /// broker keeps its own (standalone; Kubernetes mode until its brokers replicate).
    fn shares_internal_topics(&self) -> bool {
        false
    }

    /// The broker answering (its id is `responding_broker` in Metadata).
    fn broker_id(&self) -> i32;
}

/// Where one partition lives (Kubernetes mode: from the Topic's status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlacement {
    pub partition: u32,
    pub leader: Option<i32>,
    /// Bumped by the controller on every leader change; stored in every batch the
    /// leader appends, and the unit of truncation (KIP-101).
    pub leader_epoch: i32,
    /// Bumped by the controller on every change of the partition's state (leader,
    /// replicas, ISR): the version an ISR change must name (Kafka's partition epoch).
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A leader's request to change the ISR of one of its partitions (Kafka's
/// AlterPartition), made at the leader and partition epochs it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: u32,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

impl PartitionPlacement {
    /// Partitions `0..partitions` hosted and led by broker `id` alone, at epoch 0 (a
    /// standalone broker; the internal topics every broker keeps for itself).
    pub fn led_by(id: i32, partitions: u32) -> Vec<Self> {
        (0..partitions)
            .map(|partition| Self {
                partition,
                leader: Some(id),
                leader_epoch: 0,
                partition_epoch: 0,
                replicas: vec![id],
                isr: vec![id],
            })
            .collect()
    }
}

/// A live broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub id: i32,
    pub address: String,
    pub rack: String,
    /// Its Kafka listener as clients reach it, when the store knows it (a local cluster,
    /// where every broker listens on its own port); `None`: the host of `address` with
    /// the asking broker's Kafka port (Kubernetes: every broker uses the same port).
    pub kafka_address: Option<String>,
}

/// Standalone metadata: topic specs as JSON in a sled tree of the broker's database;
/// this broker is the whole cluster.
#[derive(Debug)]
pub struct LocalMetadata {
    tree: sled::Tree,
    me: BrokerAddress,
}

impl LocalMetadata {
    /// `me`: this broker as clients reach it.
    pub fn open(db: &sled::Db, me: BrokerAddress) -> Result<Self> {
        Ok(Self { tree: db.open_tree("metadata/topics")?, me })
    }

    fn put(&self, spec: &TopicSpec) -> Result<()> {
        let json = serde_json::to_vec(spec).map_err(|e| BrokerError::Storage(e.to_string()))?;
        self.tree.insert(spec.name.as_bytes(), json)?;
        // Metadata changes are rare and must not be lost: flush now.
        self.tree.flush()?;
        Ok(())
    }
}

impl MetadataStore for LocalMetadata {
    fn topics(&self) -> Result<Vec<TopicSpec>> {
        self.tree
            .iter()
            .values()
            .map(|v| serde_json::from_slice(&v?).map_err(|e| BrokerError::Storage(format!("topic metadata: {e}"))))
            .collect()
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        if self.tree.contains_key(spec.name.as_bytes())? {
            return Err(BrokerError::TopicAlreadyExists(spec.name.clone()));
        }
        self.put(spec)
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        self.tree.remove(name.as_bytes())?;
        self.tree.flush()?;
        Ok(())
    }

    fn update_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.put(spec)
    }

    fn placement(&self, _topic: &str, partitions: u32) -> Vec<PartitionPlacement> {
        PartitionPlacement::led_by(self.me.id, partitions)
    }

    fn brokers(&self) -> Vec<BrokerAddress> {
        vec![self.me.clone()]
    }

    fn broker_id(&self) -> i32 {
        self.me.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_broker_leads_everything_at_epoch_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let me = BrokerAddress { id: 7, address: "127.0.0.1:9092".into(), rack: String::new(), kafka_address: None };
        let local = LocalMetadata::open(&db, me.clone()).expect("open");
        let placement = local.placement("orders", 2);
        assert_eq!(placement.len(), 2);
        for (i, p) in placement.iter().enumerate() {
            assert_eq!((p.partition, p.leader, p.leader_epoch), (i as u32, Some(7), 0));
            assert_eq!((p.replicas.as_slice(), p.isr.as_slice()), (&[7][..], &[7][..]));
        }
        assert_eq!(local.brokers(), vec![me]);
        assert_eq!(local.broker_id(), 7);
        assert_eq!(local.admin_refusal(), None);
        assert_eq!(local.hosted_partitions("orders"), None);
    }
}
