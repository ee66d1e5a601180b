//! [`Controller`]: the cluster state behind one lock, persisted after every change and
//! published to every watcher; [`serve`]: the gRPC service over it plus the timer that
//! fences brokers whose session expired.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::Stream;
use sluice_controller::{
    ClusterError, ClusterState,
    cluster::{Change, Registration},
    isr::AlterIsr,
};
use tokio::{
    net::TcpListener,
    sync::{Mutex, watch},
    task::JoinHandle,
};
use tonic::{Request, Response, Status, transport::Server};
use tracing::{info, warn};

use crate::{
    convert,
    pb::{self, controller_server::ControllerServer},
    persist::{self, PersistError},
};

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("controller server failed: {0}")]
    Server(String),
}

/// How a controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    /// Where the state is kept; `None`: in memory only.
    pub state_file: Option<PathBuf>,
    /// A broker without a heartbeat for this long is fenced.
    pub session_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<ClusterState>,
    published: watch::Sender<Arc<pb::ClusterMetadata>>,
    state_file: Option<PathBuf>,
    session_timeout: Duration,
    started: Instant,
    /// `true` once the service stops: open watches end.
    stopping: watch::Sender<bool>,
}

/// The controller: cheap to clone, every clone the same state.
#[derive(Debug, Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Loads the state from `state_file` (a missing file: an empty cluster). Every
    /// known broker gets a full session to heartbeat before it is fenced.
    pub fn open(state_file: Option<PathBuf>, session_timeout: Duration) -> Result<Self, ControllerError> {
        let mut state = match &state_file {
            Some(p) => persist::load(p)?,
            None => ClusterState::default(),
        };
        state.reset_sessions(0);
        let session_ms = session_timeout.as_millis() as u64;
        let (published, _) = watch::channel(Arc::new(convert::cluster(&state, session_ms)));
        info!(
            topics = state.topics.len(),
            brokers = state.brokers.len(),
            version = state.version,
            "controller state loaded"
        );
        let inner = Inner {
            state: Mutex::new(state),
            published,
            state_file,
            session_timeout,
            started: Instant::now(),
            stopping: watch::channel(false).0,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    fn session_ms(&self) -> u64 {
        self.inner.session_timeout.as_millis() as u64
    }

    /// The metadata as last published.
    pub fn metadata(&self) -> Arc<pb::ClusterMetadata> {
        self.inner.published.borrow().clone()
    }

    /// A receiver of every published metadata version.
    pub fn subscribe(&self) -> watch::Receiver<Arc<pb::ClusterMetadata>> {
        self.inner.published.subscribe()
    }

    /// A copy of the whole state.
    pub async fn state(&self) -> ClusterState {
        self.inner.state.lock().await.clone()
    }

    /// Runs `op` on a copy of the state; when it changed something, writes the copy to
    /// the state file first, then makes it the state and publishes it. A failed write
    /// changes nothing.
    async fn apply<T>(
        &self,
        op: impl FnOnce(&mut ClusterState, u64) -> Result<(T, Vec<Change>), ClusterError>,
    ) -> Result<T, Status> {
        let now = self.now_ms();
        let mut guard = self.inner.state.lock().await;
        let mut next = guard.clone();
        let (out, changes) = op(&mut next, now).map_err(|e| convert::status(&e))?;
        if !changes.is_empty() {
            for c in &changes {
                info!(change = ?c, version = next.version, "cluster metadata changed");
            }
            if let Some(path) = self.inner.state_file.clone() {
                let json = serde_json::to_vec_pretty(&next).map_err(|e| Status::internal(e.to_string()))?;
                tokio::task::spawn_blocking(move || persist::write_atomic(&path, &json))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| {
                        warn!(error = %e, "controller state not written; change refused");
                        Status::unavailable(e.to_string())
                    })?;
            }
        }
        *guard = next;
        if !changes.is_empty() {
            self.inner.published.send_replace(Arc::new(convert::cluster(&guard, self.session_ms())));
        }
        Ok(out)
    }

    /// Fences the brokers whose session expired; returns what changed.
    pub async fn expire_sessions(&self) -> Result<Vec<Change>, Status> {
        let session = self.session_ms();
        self.apply(|s, now| {
            let c = s.expire(now, session);
            Ok((c.clone(), c))
        })
        .await
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::ClusterMetadata, Status>> + Send>>;

#[tonic::async_trait]
impl pb::controller_server::Controller for Controller {
    async fn broker_heartbeat(
        &self,
        req: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::BrokerHeartbeatResponse>, Status> {
        let r = req.into_inner();
        let reg = Registration {
            id: r.broker_id,
            grpc_address: r.grpc_address,
            kafka_address: r.kafka_address,
            rack: Some(r.rack).filter(|r| !r.is_empty()),
            incarnation: r.incarnation,
        };
        let version = self
            .apply(|s, now| {
                let c = s.heartbeat(reg, now);
                Ok((s.version, c))
            })
            .await?;
        Ok(Response::new(pb::BrokerHeartbeatResponse { fenced: false, session_timeout_ms: self.session_ms(), version }))
    }

    type WatchMetadataStream = WatchStream;

    async fn watch_metadata(
        &self,
        _req: Request<pb::WatchMetadataRequest>,
    ) -> Result<Response<Self::WatchMetadataStream>, Status> {
        let rx = self.subscribe();
        let stop = self.inner.stopping.subscribe();
        // The current metadata first, then every new version (a watcher that falls
        // behind skips to the newest: each message is a full snapshot); ends when the
        // service stops.
        let stream = futures::stream::unfold((rx, stop, true), |(mut rx, mut stop, first)| async move {
            if *stop.borrow() {
                return None;
            }
            if !first {
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
            let m = (**rx.borrow_and_update()).clone();
            Some((Ok(m), (rx, stop, false)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn alter_partition(
        &self,
        req: Request<pb::AlterPartitionRequest>,
    ) -> Result<Response<pb::AlterPartitionResponse>, Status> {
        let r = req.into_inner();
        let change = AlterIsr {
            leader_id: r.leader_id,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            new_isr: r.new_isr,
        };
        let topic = r.topic.clone();
        let asked = self
            .apply(|s, _| match s.alter_partition(&r.topic, r.partition, &change) {
                Ok((p, c)) => Ok((Ok(p), c)),
                Err(e) => {
                    let current = s
                        .topics
                        .get(&r.topic)
                        .and_then(|t| t.partitions.iter().find(|p| p.partition == r.partition))
                        .cloned();
                    Ok((Err((e, current)), Vec::new()))
                }
            })
            .await?;
        let response = match asked {
            Ok(p) => pb::AlterPartitionResponse {
                error: pb::AlterPartitionError::None as i32,
                message: String::new(),
                partition: Some(convert::partition(&p)),
            },
            Err((e, current)) => {
                info!(topic = %topic, partition = r.partition, error = %e, "AlterPartition refused");
                pb::AlterPartitionResponse {
                    error: convert::alter_error(&e) as i32,
                    message: e.to_string(),
                    partition: current.as_ref().map(convert::partition),
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn create_topic(&self, req: Request<pb::CreateTopicRequest>) -> Result<Response<pb::TopicResponse>, Status> {
        let r = req.into_inner();
        let config: BTreeMap<String, String> = r.config.into_iter().collect();
        let name = r.name.clone();
        let (topic, version) = self
            .apply(|s, _| {
                let c = s.create_topic(&r.name, r.partitions, r.replication_factor, config)?;
                let t = s.topics.get(&r.name).map(|t| convert::topic(&r.name, t));
                Ok(((t, s.version), c))
            })
            .await?;
        info!(topic = %name, "topic created");
        Ok(Response::new(pb::TopicResponse { topic, version }))
    }

    async fn update_topic(&self, req: Request<pb::UpdateTopicRequest>) -> Result<Response<pb::TopicResponse>, Status> {
        let r = req.into_inner();
        let config: BTreeMap<String, String> = r.config.into_iter().collect();
        let (topic, version) = self
            .apply(|s, _| {
                let c = s.update_topic(&r.name, r.partitions, config)?;
                let t = s.topics.get(&r.name).map(|t| convert::topic(&r.name, t));
                Ok(((t, s.version), c))
            })
            .await?;
        Ok(Response::new(pb::TopicResponse { topic, version }))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = req.into_inner().name;
        let version = self
            .apply(|s, _| {
                let c = s.delete_topic(&name)?;
                Ok((s.version, c))
            })
            .await?;
        Ok(Response::new(pb::DeleteTopicResponse { version }))
    }

    async fn list_topics(
        &self,
        _req: Request<pb::WatchMetadataRequest>,
    ) -> Result<Response<pb::ClusterMetadata>, Status> {
        Ok(Response::new((*self.metadata()).clone()))
    }
}

/// A running controller service.
#[derive(Debug)]
pub struct ControllerHandle {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    pub controller: Controller,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    expiry: JoinHandle<()>,
}

impl ControllerHandle {
    /// Stops serving (open watches end) and the expiry timer.
    pub async fn shutdown(self) -> Result<(), ControllerError> {
        let _ = self.shutdown.send(true);
        self.controller.inner.stopping.send_replace(true);
        let _ = self.expiry.await;
        match self.server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ControllerError::Server(e.to_string())),
            Err(e) => Err(ControllerError::Server(e.to_string())),
        }
    }
}

/// Opens the controller's state and serves it on `config.listen`, fencing brokers whose
/// session expired (checked every tenth of the session).
pub async fn serve(config: ControllerConfig) -> Result<ControllerHandle, ControllerError> {
    let controller = Controller::open(config.state_file.clone(), config.session_timeout)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ControllerError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ControllerError::Listen { addr: config.listen, source })?;
    let (shutdown, rx) = watch::channel(false);
    let mut stop = rx.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let service = ControllerServer::new(controller.clone());
    let server = tokio::spawn(Server::builder().tcp_nodelay(true).add_service(service).serve_with_incoming_shutdown(
        incoming,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    let expiry = tokio::spawn(expiry_loop(controller.clone(), config.session_timeout, rx));
    info!(%addr, session_timeout_ms = config.session_timeout.as_millis() as u64, "controller serving");
    Ok(ControllerHandle { addr, controller, shutdown, server, expiry })
}

async fn expiry_loop(controller: Controller, session: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval((session / 10).max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match controller.expire_sessions().await {
            Ok(changes) => {
                for c in changes.iter().filter(|c| matches!(c, Change::BrokerFenced { .. })) {
                    warn!(change = ?c, "broker session expired: fenced");
                }
            }
            Err(e) => warn!(error = %e, "session expiry failed"),
        }
    }
}
