//! Routing to partition leaders. A [`Client`](crate::Client) starts with one
//! connection (the broker it was given) and sends everything there: that is all a
//! standalone broker needs. When a broker answers NOT_LEADER (Kubernetes mode, several
//! brokers), the client learns the topic's leaders and the brokers' addresses from the
//! Metadata RPC, keeps them, and sends each partition's requests to its leader over
//! a connection per broker, refreshing on the next NOT_LEADER.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use sluice_proto::v1::{self as pb, sluice_client::SluiceClient};
use tonic::transport::Channel;
use tracing::debug;

use crate::error::ClientError;

/// Leaders and broker connections learned so far. Cheap to share.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// (topic, partition) → leader address.
    leaders: HashMap<(String, u32), String>,
    /// Address → connection.
    connections: HashMap<String, SluiceClient<Channel>>,
}

impl Routing {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection to the leader of a partition, when one was learned.
    pub(crate) fn leader(&self, topic: &str, partition: u32) -> Option<(String, Option<SluiceClient<Channel>>)> {
        let st = self.lock();
        let addr = st.leaders.get(&(topic.to_string(), partition))?.clone();
        let conn = st.connections.get(&addr).cloned();
        Some((addr, conn))
    }

    pub(crate) fn add_connection(&self, addr: &str, conn: SluiceClient<Channel>) {
        self.lock().connections.insert(addr.to_string(), conn);
    }

    /// Forgets a connection that failed (its broker may be gone).
    pub(crate) fn forget_connection(&self, addr: &str) {
        self.lock().connections.remove(addr);
    }

    /// Records what a NOT_LEADER error says about the leader.
    pub(crate) fn learn_from_error(&self, topic: &str, partition: u32, err: &ClientError) {
        if let ClientError::Broker { detail, .. } = err
            && !detail.leader_address.is_empty()
        {
            self.lock().leaders.insert((topic.to_string(), partition), detail.leader_address.clone());
        }
    }

    /// Replaces the leaders of the topics in a Metadata answer. A single broker
    /// (standalone) is reached over the connection the client was given, whatever
    /// address it advertises: its answer changes nothing.
    pub(crate) fn learn_from_metadata(&self, m: &pb::MetadataResponse) {
        if m.brokers.len() <= 1 {
            return;
        }
        let addresses: HashMap<i32, &str> = m.brokers.iter().map(|b| (b.id, b.address.as_str())).collect();
        let mut st = self.lock();
        for t in &m.topics {
            for p in &t.partitions {
                let key = (t.name.clone(), p.partition);
                match addresses.get(&p.leader) {
                    Some(a) => {
                        st.leaders.insert(key, a.to_string());
                    }
                    None => {
                        st.leaders.remove(&key);
                    }
                }
            }
        }
        debug!(brokers = m.brokers.len(), "partition leaders refreshed");
    }

    /// Every connection known (to ask for metadata when the first broker is gone).
    pub(crate) fn connections(&self) -> Vec<SluiceClient<Channel>> {
        self.lock().connections.values().cloned().collect()
    }
}

/// Whether an error means "ask someone else": the broker is not the leader, or it
/// could not be reached.
pub(crate) fn needs_refresh(err: &ClientError) -> bool {
    matches!(err.kind(), Some(pb::ErrorCode::NotLeader)) || matches!(err, ClientError::Transport(_))
}

pub(crate) type Shared = Arc<Routing>;
