//! Kafka's wire protocol on a second listener (`--kafka-listen`): existing Kafka clients
//! and tools produce, fetch, join groups and administer topics unmodified, on the same
//! data as the gRPC API. Requests decode with the `kafka-protocol` crate and call the same
//! domain methods as `grpc` (record batches pass through as bytes, never re-encoded).
//!
//! - [`codec`]: framing, the request-size limit, header versions.
//! - [`connection`]: one task per connection: requests answered in order, bad input closes.
//! - [`versions`]: what ApiVersions advertises (exactly what is implemented).
//! - `metadata`, `produce`, `fetch`, `groups`, `admin`: one file per API family.
//! - [`errors`]: broker errors → Kafka error codes.

mod admin;
pub mod codec;
mod connection;
pub mod errors;
mod fetch;
mod groups;
mod groups_admin;
mod metadata;
mod produce;
pub mod versions;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tracing::{info, warn};

use crate::{broker::Broker, error::BrokerError, groups::Coordinator, metadata::BrokerAddress};

/// Settings of the Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `host:port` put in Metadata for this broker; `None`: derived (see
    /// [`KafkaConfig::advertised`]).
    pub advertised: Option<String>,
    /// Largest request accepted (Kafka's `socket.request.max.bytes`); larger closes the
    /// connection.
    pub max_request_bytes: usize,
    /// Kafka's `auto.create.topics.enable`: Metadata for an unknown topic creates it
    /// (with the broker's default partition count) where the broker may create topics.
    pub auto_create_topics: bool,
}

impl KafkaConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self { listen, advertised: None, max_request_bytes: codec::DEFAULT_MAX_REQUEST_BYTES, auto_create_topics: true }
    }

    /// The address clients are told for this broker: `--kafka-advertised-listener`, else
    /// the host of the gRPC advertised address (on Kubernetes the pod's DNS name through
    /// the headless Service) with the bound Kafka port, else the bound Kafka address. An
    /// unspecified host (0.0.0.0) becomes `$HOSTNAME`, else `localhost`.
    pub fn advertised(&self, bound: SocketAddr, grpc_advertised: Option<&str>) -> String {
        if let Some(a) = &self.advertised {
            return a.clone();
        }
        let host = match grpc_advertised.and_then(|a| a.rsplit_once(':')).map(|(h, _)| h) {
            Some(h) if !is_unspecified(h) => h.to_string(),
            _ if !bound.ip().is_unspecified() => bound.ip().to_string(),
            _ => std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into()),
        };
        format!("{host}:{}", bound.port())
    }
}

fn is_unspecified(host: &str) -> bool {
    host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// What every connection's handlers share.
#[derive(Debug)]
pub(crate) struct Context {
    pub broker: Arc<Broker>,
    pub groups: Arc<Coordinator>,
    pub config: KafkaConfig,
    /// This broker's advertised Kafka address.
    pub advertised: String,
    /// `true` once the broker is stopping: long polls answer with what they have.
    pub shutdown: watch::Receiver<bool>,
}

impl Context {
    /// The Kafka address of a broker: this one's advertised address; another's is the
    /// Kafka address the metadata store knows for it, else the host of its gRPC address
    /// with this broker's Kafka port (on Kubernetes every broker of a cluster listens for
    /// Kafka on the same port, as the operator configures them).
    pub fn kafka_address(&self, b: &BrokerAddress) -> (String, i32) {
        let (own_host, own_port) = split(&self.advertised);
        if b.id == self.broker.metadata().broker_id() {
            return (own_host, own_port);
        }
        if let Some(kafka) = &b.kafka_address {
            return split(kafka);
        }
        let (host, _) = split(&b.address);
        (host, own_port)
    }
}

/// `host:port` → (host, port); a missing or bad port is 9092.
pub(crate) fn split(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse().unwrap_or(9092)),
        None => (addr.to_string(), 9092),
    }
}

/// The running listener.
#[derive(Debug)]
pub struct KafkaServer {
    pub addr: SocketAddr,
    pub advertised: String,
    listener: TcpListener,
    ctx: Arc<Context>,
}

impl KafkaServer {
    /// Binds the listener (serving starts with [`KafkaServer::serve`]).
    pub async fn bind(
        config: KafkaConfig,
        broker: Arc<Broker>,
        groups: Arc<Coordinator>,
        grpc_advertised: Option<&str>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, BrokerError> {
        let listen = config.listen;
        let failed = |e: std::io::Error| BrokerError::Listen { addr: listen.to_string(), reason: e.to_string() };
        let listener = TcpListener::bind(listen).await.map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        let advertised = config.advertised(addr, grpc_advertised);
        let ctx = Arc::new(Context { broker, groups, config, advertised: advertised.clone(), shutdown });
        Ok(Self { addr, advertised, listener, ctx })
    }

    /// Accepts connections until `shutdown`; then stops accepting, lets each connection
    /// finish the request it is on (long polls answer at once: the broker is stopping)
    /// for up to `grace`, and closes the rest.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let metrics = self.ctx.broker.metrics().clone();
        let mut connections = JoinSet::new();
        info!(addr = %self.addr, advertised = %self.advertised, "kafka listener serving");
        let stop = shutdown.clone();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        metrics.kafka_connections_open.inc();
                        metrics.kafka_connections_accepted.inc();
                        let ctx = self.ctx.clone();
                        let stop = stop.clone();
                        let m = metrics.clone();
                        connections.spawn(async move {
                            connection::serve(ctx, socket, peer, stop).await;
                            m.kafka_connections_open.dec();
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "kafka accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            }
        }
        drop(self.listener);
        let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(open = connections.len(), "closing the Kafka connections still open after the grace period");
            connections.abort_all();
            while connections.join_next().await.is_some() {}
            metrics.kafka_connections_open.set(0);
        }
        info!("kafka listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_follows_the_grpc_one_with_the_kafka_port() {
        let bound: SocketAddr = "0.0.0.0:9093".parse().expect("addr");
        let c = KafkaConfig::new(bound);
        assert_eq!(c.advertised(bound, Some("dev-1.dev-brokers.ns.svc:9092")), "dev-1.dev-brokers.ns.svc:9093");
        let local: SocketAddr = "127.0.0.1:4567".parse().expect("addr");
        assert_eq!(c.advertised(local, Some("0.0.0.0:9092")), "127.0.0.1:4567");
        assert_eq!(c.advertised(local, None), "127.0.0.1:4567");
        let set = KafkaConfig { advertised: Some("kafka.example:19092".into()), ..c };
        assert_eq!(set.advertised(bound, Some("x:1")), "kafka.example:19092");
        assert_eq!(split("[::1]:9093"), ("::1".to_string(), 9093));
    }
}
