//! Group commit for `durability=always`.
//!
//! sled's flush covers the whole database, so one flush makes every earlier insert
//! durable. Produce requests that need durability register here *after* their insert;
//! a single task runs one flush for everyone waiting and then wakes them all. Requests
//! arriving during a flush wait for the next one, which covers their insert.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::metrics::Metrics;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the group-commit task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Waiter>,
    stop: std::sync::Arc<tokio::sync::Notify>,
    task: std::sync::Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl GroupCommit {
    /// Starts the flushing task on the current runtime. It ends when every handle is
    /// dropped.
    pub fn start(db: sled::Db, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut waiters = Vec::new();
            loop {
                let first = tokio::select! {
                    w = rx.recv() => w,
                    _ = stopped.notified() => None,
                };
                let Some(first) = first else { break };
                waiters.push(first);
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let db = db.clone();
                let result = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("flush failed: {e}")),
                    Err(e) => Err(format!("flush task failed: {e}")),
                };
                if let Err(e) = &result {
                    error!(error = %e, waiters = waiters.len(), "group commit flush failed");
                }
                metrics.group_commit_batch(waiters.len());
                for w in waiters.drain(..) {
                    let _ = w.send(result.clone());
                }
            }
        });
        Self { tx, stop, task: Arc::new(std::sync::Mutex::new(Some(task))) }
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
    pub async fn flushed(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| "group commit task stopped".to_string())?;
        rx.await.map_err(|_| "group commit task stopped".to_string())?
    }
}
