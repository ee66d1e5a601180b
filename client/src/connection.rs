//! A connection to a broker: one HTTP/2 channel shared by producers, consumers and
//! admin calls (cheap to clone).

use std::time::Duration;

use sluice_proto::v1::{groups_client::GroupsClient, sluice_client::SluiceClient};
use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, Result};

/// Largest message the client accepts from or sends to a broker.
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    raw: SluiceClient<Channel>,
    groups: GroupsClient<Channel>,
    routing: crate::cluster::Shared,
}

impl Client {
    /// Connects to `addr` (`host:port`, or a full `http://` URL).
    pub async fn connect(addr: &str) -> Result<Self> {
        let channel = Self::channel(addr).await?;
        let groups = GroupsClient::new(channel.clone());
        Ok(Self { addr: addr.to_string(), raw: Self::raw_client(channel), groups, routing: Default::default() })
    }

    async fn channel(addr: &str) -> Result<Channel> {
        let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let err = |reason: String| ClientError::Connect { addr: addr.to_string(), reason };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|e| err(format!("not a valid address: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024));
        let channel = endpoint.connect().await.map_err(|e| {
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            // tonic's messages often repeat their source's text; keep each part once.
            while let Some(s) = src {
                let part = s.to_string();
                if !reason.contains(&part) {
                    reason = format!("{reason}: {part}");
                }
                src = s.source();
            }
            err(reason)
        })?;
        Ok(channel)
    }

    /// The connection for a partition's requests: its leader's when a NOT_LEADER
    /// answer taught us one, else the broker this client was connected to.
    pub(crate) async fn partition_client(&self, topic: &str, partition: u32) -> SluiceClient<Channel> {
        match self.routing.leader(topic, partition) {
            None => self.raw.clone(),
            Some((_, Some(conn))) => conn,
            Some((addr, None)) if addr == self.addr => self.raw.clone(),
            Some((addr, None)) => match Self::channel(&addr).await {
                Ok(channel) => {
                    let conn = Self::raw_client(channel);
                    self.routing.add_connection(&addr, conn.clone());
                    conn
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot connect to the partition leader");
                    self.raw.clone()
                }
            },
        }
    }

    /// After a failed partition request: when it says NOT_LEADER or the broker was
    /// unreachable, learn the leaders of the topic again (Metadata from any broker).
    pub(crate) async fn refresh_route(&self, topic: &str, partition: u32, err: &crate::ClientError) {
        if !crate::cluster::needs_refresh(err) {
            return;
        }
        self.routing.learn_from_error(topic, partition, err);
        if let (crate::ClientError::Transport(_), Some((addr, _))) = (err, self.routing.leader(topic, partition)) {
            self.routing.forget_connection(&addr);
        }
        let req = sluice_proto::v1::MetadataRequest { topics: vec![topic.to_string()] };
        let candidates = std::iter::once(self.raw.clone()).chain(self.routing.connections());
        for mut c in candidates {
            if let Ok(m) = c.metadata(req.clone()).await {
                self.routing.learn_from_metadata(&m.into_inner());
                return;
            }
        }
    }

    fn raw_client(channel: Channel) -> SluiceClient<Channel> {
        SluiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE)
    }

    /// The address this client was connected with.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The generated client of the consumer-group service (`sluice.v1.Groups`).
    pub fn groups(&self) -> GroupsClient<Channel> {
        self.groups.clone()
    }

    /// The generated gRPC client, for calls this library does not wrap.
    pub fn raw(&self) -> SluiceClient<Channel> {
        self.raw.clone()
    }
}
