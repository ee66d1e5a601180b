//! The background work of cluster mode: heartbeats to the controller (every sixth of
//! the session), and the metadata watch that keeps the store and the open partitions
//! in line with the controller's state.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_controller_grpc::pb;
use tokio::sync::watch;
use tonic::Streaming;
use tracing::{info, warn};

use super::ClusterMetadata;
use crate::Broker;

/// Heartbeats until `stop`; an answer older than a third of the session counts as lost.
pub(crate) async fn heartbeat_loop(meta: Arc<ClusterMetadata>, mut stop: watch::Receiver<bool>) {
    let s = meta.settings().clone();
    let mut failing = false;
    loop {
        let session = meta.session_timeout();
        let sent = Instant::now();
        let mut client = meta.client();
        let req = pb::BrokerHeartbeatRequest {
            broker_id: s.broker_id,
            grpc_address: s.grpc_address.clone(),
            kafka_address: s.kafka_address.clone().unwrap_or_default(),
            rack: s.rack.clone().unwrap_or_default(),
            incarnation: s.incarnation,
        };
        match tokio::time::timeout(session / 3, client.broker_heartbeat(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if failing || r.fenced {
                    info!(fenced = r.fenced, version = r.version, "heartbeat accepted by the controller");
                }
                failing = false;
                if !r.fenced {
                    let timeout = Duration::from_millis(r.session_timeout_ms.max(1));
                    meta.heartbeat_accepted(sent, timeout, r.version);
                }
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                warn!(controller = %s.controller, error = %e.message(), "heartbeat failed; this broker stops leading \
                      two thirds of a session after its last accepted one");
            }
            Err(_) if !failing => {
                failing = true;
                warn!(controller = %s.controller, "heartbeat timed out");
            }
            _ => {}
        }
        let every = (meta.session_timeout() / 6).max(Duration::from_millis(20));
        let wait = every.saturating_sub(sent.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Opens a metadata watch and applies its first snapshot, retrying until the
/// controller answers.
pub(crate) async fn first_snapshot(meta: &ClusterMetadata) -> Streaming<pb::ClusterMetadata> {
    let mut last_warning: Option<Instant> = None;
    loop {
        let failure = match meta.client().watch_metadata(pb::WatchMetadataRequest {}).await {
            Ok(r) => {
                let mut stream = r.into_inner();
                match stream.message().await {
                    Ok(Some(m)) => match meta.apply(&m, true) {
                        Ok(_) => {
                            info!(
                                version = m.version,
                                topics = m.topics.len(),
                                brokers = m.brokers.len(),
                                "cluster metadata received"
                            );
                            return stream;
                        }
                        Err(e) => e.to_string(),
                    },
                    Ok(None) => "the watch ended at once".to_string(),
                    Err(e) => e.message().to_string(),
                }
            }
            Err(e) => e.message().to_string(),
        };
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            warn!(controller = %meta.settings().controller, error = %failure, "waiting for the controller");
            last_warning = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies every snapshot of the watch (reopening it when it breaks) and brings the
/// broker's open partitions in line, until `stop`.
pub(crate) async fn watch_loop(
    meta: Arc<ClusterMetadata>,
    broker: Arc<Broker>,
    mut stream: Streaming<pb::ClusterMetadata>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            m = stream.message() => m,
            _ = stop.wait_for(|s| *s) => return,
        };
        let applied = match next {
            Ok(Some(m)) => meta.apply(&m, false),
            Ok(None) | Err(_) => {
                warn!("metadata watch broke; reopening it");
                stream = tokio::select! {
                    s = first_snapshot(&meta) => s,
                    _ = stop.wait_for(|s| *s) => return,
                };
                Ok(true)
            }
        };
        match applied {
            Ok(true) => {
                let b = broker.clone();
                match tokio::task::spawn_blocking(move || b.sync_with_metadata()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "could not apply the cluster metadata to the open partitions"),
                    Err(e) => warn!(error = %e, "metadata sync panicked"),
                }
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "cluster metadata not applied"),
        }
    }
}
