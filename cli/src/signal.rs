//! Waiting for Ctrl-C or SIGTERM, for the commands that run until stopped.

use std::future::Future;

/// Installs the handlers now and returns a future that resolves on the first SIGINT
/// (Ctrl-C) or SIGTERM. Installing eagerly matters: a signal that arrives between
/// "the broker is up" and the first poll of the future must not kill the process
/// without a graceful stop. Call it inside the runtime.
#[cfg(unix)]
pub fn listen() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn recv(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            // Not installed: the default action (terminate) still applies.
            None => std::future::pending().await,
        }
    }
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = recv(interrupt) => {}
            _ = recv(terminate) => {}
        }
    }
}

#[cfg(not(unix))]
pub fn listen() -> impl Future<Output = ()> + Send + 'static {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
