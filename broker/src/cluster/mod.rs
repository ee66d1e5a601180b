//! Cluster mode (`sluice-broker --controller HOST:PORT`): one broker of a local
//! multi-broker cluster (`sluice dev --brokers N`) whose controller runs elsewhere
//! (crate `sluice-controller-grpc`). The broker heartbeats to the controller, learns
//! topics, placement, leaders and the other brokers from its metadata watch, forwards
//! topic admin to it, and asks it for ISR changes.
//!
//! - [`store`]: [`ClusterMetadata`], the [`crate::metadata::MetadataStore`] of this mode
//!   (with self-fencing: no leading without a recent accepted heartbeat).
//! - [`tasks`]: the heartbeat loop and the metadata watch.
//!
//! `__consumer_offsets` is a topic of the cluster like any other: created through the
//! controller on the first group request (replication factor 3, or every broker when
//! fewer), so each group has one coordinator for the whole cluster, the leader of its
//! offsets partition (see `crate::groups`).

pub mod store;
pub mod tasks;

use std::sync::Arc;

use tracing::info;

pub use store::ClusterMetadata;

use crate::{
    BrokerConfig,
    error::{BrokerError, Result},
    server,
};

/// Who this broker is, and where its controller is.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The controller's address (`HOST:PORT` or URL).
    pub controller: String,
    pub broker_id: i32,
    /// This broker's gRPC address as clients and other brokers reach it.
    pub grpc_address: String,
    /// This broker's Kafka listener as clients reach it.
    pub kafka_address: Option<String>,
    pub rack: Option<String>,
    /// This run of the process: a restart is a new incarnation to the controller.
    pub incarnation: u64,
}

impl ClusterSettings {
    /// The settings of a broker configured by `config`, with its controller at
    /// `controller`.
    pub fn new(config: &BrokerConfig, controller: String, rack: Option<String>) -> Self {
        let grpc_address = config.advertised_address.clone().unwrap_or_else(|| config.listen.to_string());
        let kafka_address = config.kafka.as_ref().map(|k| k.advertised.clone().unwrap_or_else(|| k.listen.to_string()));
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        Self { controller, broker_id: config.broker_id, grpc_address, kafka_address, rack, incarnation }
    }
}

/// Runs a broker in cluster mode until SIGINT or SIGTERM: waits for the controller's
/// first metadata snapshot, opens storage with it, then serves with the heartbeat and
/// the watch running beside.
pub async fn run(mut config: BrokerConfig, settings: ClusterSettings) -> Result<()> {
    let client = sluice_controller_grpc::connect(&settings.controller)
        .map_err(|e| BrokerError::InvalidConfig(format!("--controller {:?}: {e}", settings.controller)))?;
    info!(controller = %settings.controller, broker_id = settings.broker_id, address = %settings.grpc_address,
          "starting in cluster mode");
    let meta = Arc::new(ClusterMetadata::new(settings, client));
    config.metadata = Some(meta.clone());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(tasks::heartbeat_loop(meta.clone(), stop.clone()));
    let stream = tokio::select! {
        s = tasks::first_snapshot(&meta) => s,
        _ = server::wait_for_signal() => {
            let _ = stop_tx.send(true);
            let _ = heartbeat.await;
            return Ok(());
        }
    };
    let handle = server::start(config).await?;
    let broker = handle.broker().clone();
    let mut shutdown = handle.shutdown_trigger().subscribe();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|s| *s).await;
        let _ = stop_tx.send(true);
    });
    let watch = tokio::spawn(tasks::watch_loop(meta, broker, stream, stop));
    server::serve_until_signal(handle, vec![heartbeat, watch]).await
}
