//! The producing half of `sluice verify`: numbered records at a steady rate through the
//! client library's producer (acks=all, idempotent), every outcome recorded.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use futures::{StreamExt, stream::FuturesUnordered};
use sluice_client::{Acks, Admin, Client, ClientError, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    args::VerifyArgs,
    now_ms,
    state::{self, Acked, State},
};

/// Distinct error messages kept in the state (the rest are counted under one line).
const MAX_ERROR_KINDS: usize = 20;

/// Outcomes so far, shared by the collector and the progress line.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    outcomes: Mutex<Outcomes>,
}

#[derive(Debug, Default)]
struct Outcomes {
    acked: Vec<Acked>,
    failed: Vec<u64>,
    errors: BTreeMap<String, u64>,
    last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Produces `args.records()` records (or until Ctrl-C) and returns what happened.
pub async fn run(client: Client, args: &VerifyArgs, producer_name: &str) -> Result<State> {
    let partitions = ensure_topic(&client, &args.topic, args.partitions).await?;
    let config = ProducerConfig {
        acks: Acks::All,
        enable_idempotence: args.idempotence,
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config);
    let started_ms = now_ms();
    let tally = Arc::new(Tally::default());
    let (deliveries, pending) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(pending, tally.clone()));
    let progress = tokio::spawn(progress(tally.clone()));
    let total = args.records();
    info!(topic = %args.topic, producer = producer_name, total, rate = args.rate, "verify: producing");

    let stop = crate::signal::listen();
    tokio::pin!(stop);
    let start = Instant::now();
    let interval = Duration::from_secs(1).div_f64(f64::from(args.rate));
    let mut interrupted = false;
    for seq in 0..total {
        let due = start + interval.mul_f64(seq as f64);
        tokio::select! {
            _ = &mut stop => { interrupted = true; break; }
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let mut record =
            ProducerRecord::new(args.topic.as_str()).value(state::value(producer_name, seq, args.value_bytes));
        match args.keys {
            Some(keys) => record = record.key(format!("k{}", seq % keys)),
            None => record = record.partition((seq % u64::from(partitions)) as u32),
        }
        let delivery = tokio::select! {
            _ = &mut stop => { interrupted = true; break; }
            d = producer.send(record) => d,
        };
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match delivery {
            Ok(d) => {
                if deliveries.send((seq, d)).is_err() {
                    anyhow::bail!("the delivery collector stopped");
                }
            }
            // Not appended (the producer could not learn the topic, or is closed).
            Err(e) => record_failure(&tally, seq, &e),
        }
    }
    if interrupted {
        eprintln!("verify: interrupted; waiting for the records sent so far");
    }
    producer.close().await;
    drop(deliveries);
    collector.await.context("the delivery collector failed")?;
    progress.abort();
    let outcomes = std::mem::take(&mut *lock(&tally.outcomes));
    let mut state = State::new(&args.topic, producer_name, args.rate, started_ms);
    state.sent = tally.sent.load(Ordering::Relaxed);
    state.acked = outcomes.acked;
    state.acked.sort_by_key(|a| a.seq);
    state.failed = outcomes.failed;
    state.failed.sort_unstable();
    state.errors = outcomes.errors;
    state.finished_ms = now_ms();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "verify: produced for {secs:.1} s: sent={} acked={} failed={}",
        state.sent,
        state.acked.len(),
        state.failed.len()
    );
    Ok(state)
}

/// The topic's partition count, creating it with `partitions` when it does not exist.
async fn ensure_topic(client: &Client, topic: &str, partitions: u32) -> Result<u32> {
    let admin = Admin::new(client.clone());
    match admin.partition_count(topic).await {
        Ok(n) if n > 0 => return Ok(n),
        Ok(_) => {}
        Err(e) if e.kind() == Some(sluice_client::proto::ErrorCode::UnknownTopicOrPartition) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot look up topic '{topic}'")),
    }
    match admin.create_topic(topic, partitions, BTreeMap::new()).await {
        Ok(_) => eprintln!("verify: created topic {topic} with {partitions} partitions"),
        // Someone else created it meanwhile.
        Err(e) if e.kind() == Some(sluice_client::proto::ErrorCode::TopicAlreadyExists) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create topic '{topic}'")),
    }
    let n = admin.partition_count(topic).await.with_context(|| format!("cannot look up topic '{topic}'"))?;
    if n == 0 {
        anyhow::bail!("topic '{topic}' has no partitions");
    }
    Ok(n)
}

fn record_failure(tally: &Tally, seq: u64, e: &ClientError) {
    tally.failed.fetch_add(1, Ordering::Relaxed);
    let message = e.to_string();
    let mut o = lock(&tally.outcomes);
    o.failed.push(seq);
    let known = o.errors.contains_key(&message);
    let key = if known || o.errors.len() < MAX_ERROR_KINDS { message.clone() } else { "(other errors)".to_string() };
    *o.errors.entry(key).or_default() += 1;
    o.last_error = Some(message);
}

/// Awaits every delivery as it completes (not in order: a slow partition does not hold
/// up the others' accounting).
async fn collect(mut pending: mpsc::UnboundedReceiver<(u64, DeliveryFuture)>, tally: Arc<Tally>) {
    let mut waiting = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = pending.recv(), if open => match next {
                Some((seq, d)) => waiting.push(async move { (seq, d.await) }),
                None => open = false,
            },
            Some((seq, outcome)) = waiting.next(), if !waiting.is_empty() => match outcome {
                Ok(meta) => match meta.offset {
                    Some(offset) => {
                        tally.acked.fetch_add(1, Ordering::Relaxed);
                        lock(&tally.outcomes).acked.push(Acked { seq, partition: meta.partition, offset });
                    }
                    None => {
                        warn!(seq, "acknowledged without an offset");
                        record_failure(&tally, seq, &ClientError::InvalidArgument("acknowledged without an offset".into()));
                    }
                },
                Err(e) => record_failure(&tally, seq, &e),
            },
            else => break,
        }
    }
}

/// One line on stderr per second: rate, sent, acked, failed, the newest error.
async fn progress(tally: Arc<Tally>) {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last_acked = 0;
    let mut last_error_shown = None;
    loop {
        ticks.tick().await;
        let acked = tally.acked.load(Ordering::Relaxed);
        let error = lock(&tally.outcomes).last_error.clone();
        let new_error = match &error {
            Some(e) if last_error_shown.as_ref() != Some(e) => format!(" error: {e}"),
            _ => String::new(),
        };
        last_error_shown = error;
        eprintln!(
            "verify: {:>4.0} s sent={} acked={} ({}/s) failed={}{new_error}",
            start.elapsed().as_secs_f64(),
            tally.sent.load(Ordering::Relaxed),
            acked,
            acked - last_acked,
            tally.failed.load(Ordering::Relaxed),
        );
        last_acked = acked;
    }
}
