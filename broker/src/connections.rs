//! Accepted gRPC connections, counted and bounded: each socket is wrapped so that the
//! broker can close it when it has been idle too long or when shutdown's grace period
//! is over, whatever the peer does (sends nothing, never reads, holds a long poll).
//!
//! tonic spawns one task per connection and offers no handle to it, so the wrapper is
//! the one place that sees every socket. Closing works from inside the I/O calls: once
//! the socket is idle past its deadline, or the broker forces connections closed, every
//! read reports end of stream and every write fails; hyper then ends the connection and
//! drops the socket. The wrapper polls its deadline and the force-close signal in every
//! I/O call, so a connection parked on a read or on a full send buffer is woken too.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
    time::{Instant, Sleep},
};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::metrics::{CloseReasonLabels, Metrics};

/// Limits on client connections (`sluice-broker --help` documents each flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: requests one connection may have open.
    pub max_concurrent_streams: u32,
    /// Close a connection when nothing was received on it for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Send an HTTP/2 PING this often; `None`: no pings.
    pub http2_keepalive_interval: Option<Duration>,
    /// Close the connection when a PING is not acknowledged within this.
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive idle time on accepted sockets; `None`: off.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 64,
            // Kafka's connections.max.idle.ms.
            idle_timeout: Some(Duration::from_secs(540)),
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Some(Duration::from_secs(60)),
        }
    }
}

/// Why the broker closed a connection (the `reason` label of
/// `sluice_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Idle,
    Shutdown,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What every connection of one listener shares: the force-close switch and metrics.
#[derive(Debug, Clone)]
pub struct Connections {
    force_close: watch::Sender<bool>,
    idle_timeout: Option<Duration>,
    open: Gauge,
    closed: Family<CloseReasonLabels, Counter>,
}

impl Connections {
    pub fn new(limits: &ConnectionLimits, metrics: &Metrics) -> Self {
        Self {
            force_close: watch::channel(false).0,
            idle_timeout: limits.idle_timeout,
            open: metrics.connections_open.clone(),
            closed: metrics.connections_closed.clone(),
        }
    }

    /// The accepted sockets of `listener`, wrapped.
    pub fn incoming(
        &self,
        listener: TcpListener,
        limits: &ConnectionLimits,
    ) -> impl Stream<Item = io::Result<TrackedStream>> + use<> {
        let me = self.clone();
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(limits.tcp_keepalive)
            .map(move |accepted| accepted.map(|s| me.track(s)))
    }

    /// Closes every connection, now and as they are accepted (end of shutdown's grace).
    pub fn close_all(&self) {
        self.force_close.send_replace(true);
    }

    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.open.get()
    }

    fn track(&self, inner: TcpStream) -> TrackedStream {
        self.open.inc();
        let mut rx = self.force_close.subscribe();
        TrackedStream {
            inner,
            idle: self.idle_timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
            force_close: Box::pin(async move {
                let _ = rx.wait_for(|closing| *closing).await;
            }),
            closed: None,
            shared: self.clone(),
        }
    }
}

/// A client socket that ends itself when idle too long or when forced closed.
pub struct TrackedStream {
    inner: TcpStream,
    /// The idle timeout and the deadline it gives, pushed back on every read.
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    force_close: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Set once the broker decided to close this connection.
    closed: Option<CloseReason>,
    shared: Connections,
}

impl std::fmt::Debug for TrackedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedStream")
            .field("peer", &self.inner.peer_addr().ok())
            .field("closed", &self.closed)
            .finish()
    }
}

impl TrackedStream {
    /// Whether the connection must end; polling registers the wakers that say when.
    fn must_close(&mut self, cx: &mut Context<'_>) -> bool {
        if self.closed.is_none() {
            let reason = if self.force_close.as_mut().poll(cx).is_ready() {
                Some(CloseReason::Shutdown)
            } else if let Some((_, deadline)) = &mut self.idle {
                deadline.as_mut().poll(cx).is_ready().then_some(CloseReason::Idle)
            } else {
                None
            };
            if let Some(r) = reason {
                tracing::debug!(peer = ?self.inner.peer_addr().ok(), reason = r.as_str(), "closing connection");
                self.shared.closed.get_or_create(&CloseReasonLabels { reason: r.as_str().to_string() }).inc();
                self.closed = Some(r);
            }
        }
        self.closed.is_some()
    }

    fn received(&mut self) {
        if let Some((timeout, deadline)) = &mut self.idle {
            deadline.as_mut().reset(Instant::now() + *timeout);
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed by the broker")
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.shared.open.dec();
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.must_close(cx) {
            // End of stream: hyper ends the connection as if the peer had closed it.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.received();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.must_close(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.must_close(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.must_close(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed.is_some() {
            // Do not wait on a peer that does not read; dropping the socket closes it.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
