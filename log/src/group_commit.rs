//! Group commit for `durability=always`, and the periodic flush for `interval`.
//!
//! A flush syncs every segment file written since the previous one
//! ([`LogStore::flush_segments`]), so one flush makes every earlier append durable.
//! Produce requests that need durability register here *after* their append; a single
//! task runs one flush for everyone waiting and then wakes them all. Requests arriving
//! during a flush wait for the next one, which covers their append. Without waiters the
//! task flushes every interval.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc, oneshot},
    task::JoinHandle,
};
use tracing::error;

use crate::{
    error::{LogError, Result},
    storage::LogStore,
};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Told about every group flush, so the broker can count them in its metrics without
/// the log knowing about metrics.
pub trait FlushObserver: Send + Sync + std::fmt::Debug + 'static {
    /// One flush ran (successfully or not) for `waiters` produce requests.
    fn flushed(&self, waiters: usize);
}

/// An observer that ignores flushes.
impl FlushObserver for () {
    fn flushed(&self, _waiters: usize) {}
}

/// Handle to the group-commit task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Waiter>,
    stop: Arc<Notify>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl GroupCommit {
    /// Starts the flushing task on the current runtime; it also flushes every `interval`.
    /// It ends when every handle is dropped, or at [`Self::stop`].
    pub fn start(store: Arc<LogStore>, interval: Duration, observer: Arc<dyn FlushObserver>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut waiters = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let first = tokio::select! {
                    w = rx.recv() => match w {
                        Some(w) => Some(w),
                        None => break,
                    },
                    _ = tick.tick() => None,
                    _ = stopped.notified() => break,
                };
                waiters.extend(first);
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let store = store.clone();
                // A flush blocks on disk I/O: never on an async worker.
                let result = match tokio::task::spawn_blocking(move || store.flush_segments()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("flush task failed: {e}")),
                };
                if let Err(e) = &result {
                    error!(error = %e, waiters = waiters.len(), "flush failed");
                }
                if !waiters.is_empty() {
                    observer.flushed(waiters.len());
                }
                for w in waiters.drain(..) {
                    let _ = w.send(result.clone());
                }
            }
        });
        Self { tx, stop, task: Arc::new(Mutex::new(Some(task))) }
    }

    /// Stops the task and waits until it has dropped its database handle.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Waits until a flush that started after this call has completed.
    pub async fn flushed(&self) -> Result<()> {
        let stopped = || LogError::Storage("group commit task stopped".into());
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?.map_err(|e| {
            // Keep the disk-full kind: the broker answers it as RESOURCE_EXHAUSTED.
            match e.strip_prefix("disk full: ").and_then(|rest| rest.split_once(": ")) {
                Some((path, _)) => LogError::DiskFull { path: path.to_string() },
                None => LogError::Storage(e.strip_prefix("storage error: ").unwrap_or(&e).to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct Counting {
        flushes: AtomicUsize,
        waiters: AtomicUsize,
    }

    impl FlushObserver for Counting {
        fn flushed(&self, waiters: usize) {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            self.waiters.fetch_add(waiters, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn concurrent_waiters_share_flushes_and_the_observer_sees_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::temporary(dir.path(), 1 << 20).expect("store");
        let observer = Arc::new(Counting::default());
        let gc = GroupCommit::start(store, Duration::from_secs(3600), observer.clone());
        let waits: Vec<_> = (0..20)
            .map(|_| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.flushed().await })
            })
            .collect();
        for w in waits {
            w.await.expect("join").expect("flushed");
        }
        assert_eq!(observer.waiters.load(Ordering::SeqCst), 20);
        let flushes = observer.flushes.load(Ordering::SeqCst);
        assert!((1..=20).contains(&flushes), "{flushes} flushes");
        gc.stop().await;
        let err = gc.flushed().await.expect_err("stopped");
        assert_eq!(err.to_string(), "storage error: group commit task stopped");
    }
}
