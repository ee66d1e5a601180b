//! `sluice verify`: Kafka's verifiable producer and consumer in one command. It
//! produces numbered records at a steady rate with acks=all and the idempotent
//! producer, remembers what was acknowledged where, then reads every partition back
//! and counts what was lost, duplicated, reordered or overwritten (docs/verify.md).
//!
//! - [`args`]: the command line.
//! - `produce`: the steady-rate producer and its bookkeeping.
//! - `check`: reading everything back, and the comparison.
//! - `report`: the counts and how they are printed.
//! - `state`: the record values and the state file between `--produce-only` and
//!   `--check-only`.

pub mod args;
mod check;
mod produce;
mod report;
mod state;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use sluice_client::Client;

pub use self::args::VerifyArgs;
use self::{report::JsonReport, state::State};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A producer name unique enough to tell runs apart in one topic.
fn new_producer_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("verify-{:x}-{}", nanos & 0xffff_ffff_ffff, std::process::id())
}

pub async fn run(client: Client, args: VerifyArgs) -> Result<()> {
    let state = if args.check_only {
        let Some(path) = &args.state else { bail!("--check-only needs --state FILE") };
        let state = State::load(path)?;
        if state.topic != args.topic {
            bail!("{} holds a run on topic '{}', not '{}'", path.display(), state.topic, args.topic);
        }
        state
    } else {
        let name = args.producer.clone().unwrap_or_else(new_producer_name);
        let state = produce::run(client.clone(), &args, &name).await?;
        if let Some(path) = &args.state {
            state.save(path)?;
            eprintln!("verify: state written to {}", path.display());
        }
        if args.produce_only {
            println!("sent={} acked={} failed={}", state.sent, state.acked.len(), state.failed.len());
            return Ok(());
        }
        state
    };
    let log = check::read(client, &state.topic, &state.producer, args.check_timeout).await?;
    let counts = check::compare(&state, &log);
    if args.json {
        let report = JsonReport {
            topic: &state.topic,
            producer: &state.producer,
            clean: counts.clean(),
            counts: &counts,
            partitions: &log.ranges,
            topic_missing: log.topic_missing,
            errors: &state.errors,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", counts.line());
        println!("{}", counts.details());
        for a in &counts.lost_examples {
            eprintln!("verify: lost: sequence {} acknowledged at partition {} offset {}", a.seq, a.partition, a.offset);
        }
        for (message, n) in &state.errors {
            eprintln!("verify: {n} records failed: {message}");
        }
    }
    if counts.acked == 0 {
        eprintln!("verify: warning: no record was acknowledged, so the check proves nothing");
    }
    if !counts.clean() {
        bail!("verification failed: {}", counts.line());
    }
    Ok(())
}
