//! Acknowledgement tracking off the sending path: a producer hands each record's due
//! time and [`DeliveryFuture`] to one task per partition, which awaits them in send
//! order and records the latency. In send order is exact: a partition has one request
//! in flight at a time, so its batches are acknowledged in order.
//!
//! At a million records a second, a channel message and a clock read per record cost
//! as much as a fifth of the run on two cores. So records travel in chunks (flushed
//! whenever the producer may wait: before a sleep, a yield, or a send that blocks),
//! and the clock is read once per chunk and once per batch the task had to wait for.
//! The futures that are already resolved when looked at belong to a batch whose
//! completion was just observed, so that reading is theirs too, give or take the
//! few microseconds it takes to go through a chunk.

use std::{mem, time::Instant};

use futures::FutureExt;
use sluice_client::DeliveryFuture;
use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    task::JoinHandle,
};

use super::report::Latency;

/// Records per chunk.
const CHUNK: usize = 64;

type Pending = (Instant, DeliveryFuture);

#[derive(Debug)]
struct Lane {
    tx: UnboundedSender<Vec<Pending>>,
    buf: Vec<Pending>,
}

/// One producer's acknowledgement tasks, one per partition it sends to.
#[derive(Debug)]
pub struct AckTracker {
    lanes: Vec<Option<Lane>>,
    /// Lanes with buffered records.
    dirty: Vec<usize>,
    tasks: Vec<JoinHandle<Drained>>,
}

impl AckTracker {
    pub fn new(partitions: u32) -> Self {
        Self { lanes: (0..partitions).map(|_| None).collect(), dirty: Vec::new(), tasks: Vec::new() }
    }

    /// Tracks a record sent to `partition` that was due at `due`.
    pub fn push(&mut self, partition: u32, due: Instant, delivery: DeliveryFuture) {
        let i = partition as usize;
        let tasks = &mut self.tasks;
        let lane = self.lanes[i].get_or_insert_with(|| {
            let (tx, rx) = unbounded_channel();
            tasks.push(tokio::spawn(drain(rx)));
            Lane { tx, buf: Vec::with_capacity(CHUNK) }
        });
        if lane.buf.is_empty() {
            self.dirty.push(i);
        }
        lane.buf.push((due, delivery));
        if lane.buf.len() >= CHUNK {
            let _ = lane.tx.send(mem::replace(&mut lane.buf, Vec::with_capacity(CHUNK)));
            self.dirty.retain(|d| *d != i);
        }
    }

    /// Hands every buffered record to its task; call before anything that may wait.
    pub fn flush(&mut self) {
        for i in self.dirty.drain(..) {
            if let Some(lane) = &mut self.lanes[i]
                && !lane.buf.is_empty()
            {
                let _ = lane.tx.send(mem::replace(&mut lane.buf, Vec::with_capacity(CHUNK)));
            }
        }
    }

    /// Waits until every tracked record is acknowledged or failed.
    pub async fn finish(mut self) -> Result<Vec<Drained>, tokio::task::JoinError> {
        self.flush();
        self.lanes.clear();
        let mut drained = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            drained.push(t.await?);
        }
        Ok(drained)
    }
}

/// What one acknowledgement task saw.
#[derive(Debug, Default)]
pub struct Drained {
    pub acked: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Latency,
    /// When the last acknowledgement was seen.
    pub last: Option<Instant>,
}

async fn drain(mut rx: UnboundedReceiver<Vec<Pending>>) -> Drained {
    let mut d = Drained::default();
    while let Some(chunk) = rx.recv().await {
        // Time may have passed since the last chunk: read the clock afresh.
        let mut now: Option<Instant> = None;
        for (due, mut delivery) in chunk {
            let result = match (&mut delivery).now_or_never() {
                Some(r) => {
                    if now.is_none_or(|n| n < due) {
                        now = Some(Instant::now());
                    }
                    r
                }
                None => {
                    let r = delivery.await;
                    now = Some(Instant::now());
                    r
                }
            };
            let at = now.unwrap_or_else(Instant::now);
            match result {
                Ok(_) => {
                    d.acked += 1;
                    d.latency.record(at.saturating_duration_since(due));
                }
                Err(e) => {
                    d.errors += 1;
                    d.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        d.last = now.or(d.last);
    }
    d
}
