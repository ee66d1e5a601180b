//! Starts and stops a broker: storage, the gRPC server (with health and reflection),
//! the metrics endpoint and the retention task, with an explicit shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::get};
use sluice_proto::v1::{
    groups_server::GroupsServer, replication_server::ReplicationServer, sluice_server::SluiceServer,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle, time::Instant};
use tonic::transport::Server;
use tracing::{error, info, warn};

use crate::{
    broker::{Broker, FETCH_MAX_BYTES_CEILING, now_ms},
    config::{BrokerConfig, MAX_MESSAGE_BYTES_CEILING},
    connections::{ConnectionLimits, Connections},
    error::{BrokerError, Result},
    groups::Coordinator,
    grpc::SluiceService,
    grpc_groups::GroupsService,
    grpc_replication::ReplicationService,
    kafka::KafkaServer,
};

/// How often the coordinator looks for members whose session ran out.
const SESSION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A running broker. Dropping it without [`BrokerHandle::shutdown`] leaves the tasks
/// running until the runtime ends.
#[derive(Debug)]
pub struct BrokerHandle {
    /// The bound gRPC address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound metrics address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound Kafka-protocol address, when enabled.
    pub kafka_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    groups: Arc<Coordinator>,
    shutdown: watch::Sender<bool>,
    server: ServerTask,
    tasks: Vec<JoinHandle<()>>,
    connections: Connections,
    shutdown_timeout: Duration,
}

type ServerTask = JoinHandle<std::result::Result<(), tonic::transport::Error>>;

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| BrokerError::Listen { addr: addr.to_string(), reason: e.to_string() })
}

/// Opens storage, binds the listeners and starts serving.
pub async fn start(mut config: BrokerConfig) -> Result<BrokerHandle> {
    let listener = bind(config.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| BrokerError::Listen { addr: config.listen.to_string(), reason: e.to_string() })?;
    config.listen = addr;
    let metrics_listener = match config.metrics_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let retention_every = config.retention_check_interval;
    let groups_config = config.groups.clone();
    let limits = config.connections.clone();
    let shutdown_timeout = config.shutdown_timeout;
    let kafka_config = config.kafka.clone();
    let broker = Arc::new(Broker::open(config)?);
    let groups = Coordinator::open(broker.clone(), groups_config).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let kafka = match kafka_config {
        Some(k) => {
            let advertised = broker.config().advertised_address.clone();
            Some(
                KafkaServer::bind(k, broker.clone(), groups.clone(), advertised.as_deref(), shutdown_rx.clone())
                    .await?,
            )
        }
        None => None,
    };
    let kafka_addr = kafka.as_ref().map(|k| k.addr);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SluiceServer<SluiceService>>().await;
    health.set_serving::<GroupsServer<GroupsService>>().await;
    health.set_serving::<ReplicationServer<ReplicationService>>().await;
    let reflection_failed = |e: tonic_reflection::server::Error| BrokerError::Listen {
        addr: addr.to_string(),
        reason: format!("reflection: {e}"),
    };
    let reflection_v1 = reflection_builder().build_v1().map_err(reflection_failed)?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().map_err(reflection_failed)?;
    let service = SluiceServer::new(SluiceService::new(broker.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES_CEILING as usize + 64 * 1024)
        .max_encoding_message_size(FETCH_MAX_BYTES_CEILING + MAX_MESSAGE_BYTES_CEILING as usize + 64 * 1024);
    let groups_service = GroupsServer::new(GroupsService::new(groups.clone(), broker.clone()));
    let replication_service = ReplicationServer::new(ReplicationService::new(broker.clone()))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(crate::replication::REPLICA_FETCH_RESPONSE_MAX_BYTES + 16 * 1024 * 1024);
    let connections = Connections::new(&limits, broker.metrics());
    let incoming = connections.incoming(listener, &limits);
    let mut rx = shutdown_rx.clone();
    let stopping = broker.clone();
    let server = tokio::spawn(
        with_connection_limits(Server::builder(), &limits)
            // Large windows let a single stream carry big batches at full speed.
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service)
            .add_service(groups_service)
            .add_service(replication_service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx.wait_for(|s| *s).await;
                // Long polls answer now, so that their connections can close.
                stopping.begin_shutdown();
                health.set_not_serving::<SluiceServer<SluiceService>>().await;
                health.set_not_serving::<GroupsServer<GroupsService>>().await;
                health.set_not_serving::<ReplicationServer<ReplicationService>>().await;
            }),
    );

    let mut tasks = Vec::new();
    if let Some(k) = kafka {
        // The Kafka listener drains with the gRPC one: half the timeout for requests.
        tasks.push(tokio::spawn(k.serve(shutdown_rx.clone(), shutdown_timeout / 2)));
    }
    tasks.push(tokio::spawn(retention_loop(broker.clone(), retention_every, shutdown_rx.clone())));
    tasks.push(tokio::spawn(session_loop(groups.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(ownership_loop(groups.clone(), shutdown_rx.clone())));
    if broker.metadata().replicates() {
        let lag = broker.config().replica_lag_time_max;
        tasks.push(tokio::spawn(crate::replication::fetcher::run(broker.clone(), lag, shutdown_rx.clone())));
    }
    if let Some(l) = metrics_listener {
        let state = MetricsState { broker: broker.clone(), groups: groups.clone() };
        tasks.push(tokio::spawn(metrics_server(l, state, shutdown_rx.clone())));
    }
    info!(%addr, metrics = ?metrics_addr, kafka = ?kafka_addr, "broker serving");
    Ok(BrokerHandle {
        addr,
        metrics_addr,
        kafka_addr,
        broker,
        groups,
        shutdown,
        server,
        tasks,
        connections,
        shutdown_timeout,
    })
}

/// The reflection service's view of what this server serves: the Sluice services,
/// health, and reflection itself in both versions (v1, and v1alpha, which many tools
/// still use). Each version lists every service, the other version included.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sluice_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false)
}

impl BrokerHandle {
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The consumer-group coordinator.
    pub fn groups(&self) -> &Arc<Coordinator> {
        &self.groups
    }

    /// Bounded graceful shutdown: stop accepting, answer long polls with what they have,
    /// let in-flight requests finish, close the connections still open after a grace
    /// period, stop the background tasks, flush the log — within the configured
    /// shutdown timeout, whatever clients do.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server ends (after a shutdown, or a fatal server error), then
    /// flushes.
    pub async fn wait(self) -> Result<()> {
        let addr = self.addr;
        let (served, deadline) = drain(self.server, &self.shutdown, &self.connections, self.shutdown_timeout).await;
        let _ = self.shutdown.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                warn!("a background task did not stop in time; abandoning it");
                t.abort();
            }
        }
        drop(self.groups);
        self.broker.flush().await?;
        self.broker.close().await;
        // Connections that were open at shutdown hold the service (and so the database)
        // until they are closed; wait for them so that the data directory is free when
        // this returns.
        while Arc::strong_count(&self.broker) > 1 && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&self.broker) > 1 {
            tracing::warn!("connections still open after shutdown; the data directory stays locked until they close");
        }
        drop(self.broker);
        info!("broker stopped; log flushed");
        match served {
            // Abandoned at the deadline: shutdown is done all the same.
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(BrokerError::Listen { addr: addr.to_string(), reason: e.to_string() }),
            Some(Err(e)) => Err(BrokerError::Listen { addr: addr.to_string(), reason: e.to_string() }),
        }
    }

    /// A sender that triggers shutdown when `true` is sent (for signal handlers).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// The HTTP/2 limits of [`ConnectionLimits`] on the gRPC server (the idle timeout and
/// TCP keepalive are on the sockets, [`Connections::incoming`]).
fn with_connection_limits(server: Server, limits: &ConnectionLimits) -> Server {
    server
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(limits.http2_keepalive_interval)
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
}

/// Waits for the gRPC server to end. Once shutdown began (tonic then sends every
/// connection a GOAWAY), the wait is bounded by `timeout`: connections get half of it to
/// finish their requests, then every connection still open is closed, and the server
/// gets until a quarter of the timeout is left, kept for the flush. Returns the
/// server's result (`None`: abandoned) and the shutdown deadline.
async fn drain(
    mut server: ServerTask,
    shutdown: &watch::Sender<bool>,
    connections: &Connections,
    timeout: Duration,
) -> (Option<std::result::Result<std::result::Result<(), tonic::transport::Error>, tokio::task::JoinError>>, Instant) {
    let mut stop = shutdown.subscribe();
    tokio::select! {
        served = &mut server => return (Some(served), Instant::now() + timeout),
        _ = stop.wait_for(|s| *s) => {}
    }
    let deadline = Instant::now() + timeout;
    if let Ok(served) = tokio::time::timeout(timeout / 2, &mut server).await {
        return (Some(served), deadline);
    }
    warn!(open = connections.open(), "closing the connections still open after the shutdown grace period");
    connections.close_all();
    match tokio::time::timeout_at(deadline - timeout / 4, &mut server).await {
        Ok(served) => (Some(served), deadline),
        Err(_) => {
            warn!("the gRPC server did not stop in time; abandoning it");
            server.abort();
            (None, deadline)
        }
    }
}

async fn retention_loop(broker: Arc<Broker>, every: std::time::Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let b = broker.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || b.apply_retention(now_ms())).await {
            error!(error = %e, "retention task panicked");
        }
    }
}

/// Removes group members whose session ran out.
async fn session_loop(groups: Arc<Coordinator>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SESSION_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => groups.expire_members(),
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Loads and forgets offsets partitions as their leaders move (cluster mode; returns at
/// once elsewhere).
async fn ownership_loop(groups: Arc<Coordinator>, mut shutdown: watch::Receiver<bool>) {
    if !groups.shares_offsets_topic() {
        return;
    }
    loop {
        groups.sync_ownership().await;
        tokio::select! {
            _ = tokio::time::sleep(crate::groups::OWNERSHIP_INTERVAL) => {}
            _ = groups.ownership_notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// What the metrics endpoint reads.
#[derive(Debug, Clone)]
struct MetricsState {
    broker: Arc<Broker>,
    groups: Arc<Coordinator>,
}

async fn metrics_server(listener: TcpListener, state: MetricsState, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        error!(error = %e, "metrics server failed");
    }
}

/// Liveness stays "ok" (a restart does not free disk space), with the disk state said.
async fn healthz(State(state): State<MetricsState>) -> String {
    if state.broker.metrics().disk_full.get() > 0 {
        "ok (disk full: produce is refused until space is freed in the data directory)\n".into()
    } else {
        "ok\n".into()
    }
}

async fn metrics(State(MetricsState { broker, groups }): State<MetricsState>) -> impl axum::response::IntoResponse {
    broker.refresh_gauges();
    groups.refresh_gauges();
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        broker.metrics().encode(),
    )
}

/// How the broker learns its topics and its peers.
#[derive(Debug)]
pub enum Mode {
    /// Topics in its own data directory; this broker is the whole cluster.
    Standalone,
    /// Topics from the Topic resources of its Cluster, liveness by its Lease.
    #[cfg(feature = "kubernetes")]
    Kubernetes(crate::kubernetes::KubeSettings),
}

/// Runs a broker in `mode` until SIGINT or SIGTERM, then shuts it down gracefully. This
/// is what `sluice-broker` calls.
pub async fn run(config: BrokerConfig, mode: Mode) -> Result<()> {
    match mode {
        Mode::Standalone => serve_until_signal(start(config).await?, Vec::new()).await,
        #[cfg(feature = "kubernetes")]
        Mode::Kubernetes(settings) => crate::kubernetes::run(config, settings).await,
    }
}

/// The one serving loop of every mode: serves until SIGINT or SIGTERM, shuts down, then
/// waits for the mode's own background tasks (which end on the same shutdown signal).
pub(crate) async fn serve_until_signal(handle: BrokerHandle, tasks: Vec<JoinHandle<()>>) -> Result<()> {
    let trigger = handle.shutdown_trigger();
    let on_signal = trigger.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown signal received");
        let _ = on_signal.send(true);
    });
    let result = handle.wait().await;
    let _ = trigger.send(true);
    for t in tasks {
        let _ = t.await;
    }
    result
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
