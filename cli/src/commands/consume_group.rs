//! `sluice consume TOPIC --group G`: prints records as a member of a consumer group.
//! The broker assigns the partitions; offsets are committed every second, when
//! partitions move away, and on exit (Ctrl-C, `--count`, `--timeout-ms`), after which
//! the member leaves the group at once.

use std::{
    collections::BTreeMap,
    io::{self, BufWriter, Write},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use sluice_client::{AutoOffsetReset, Client, GroupConfig, GroupConsumer, TopicPartition};

use super::consume::{write_records, written};
use crate::args::ConsumeArgs;

/// How long one poll waits when no `--timeout-ms` bounds it.
const POLL: Duration = Duration::from_secs(1);
/// Auto-commit interval of the CLI consumer.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

pub async fn run(client: Client, group: &str, args: ConsumeArgs) -> Result<()> {
    let stop = crate::signal::listen();
    // Unknown topics fail here, in the broker's words, rather than waiting forever.
    sluice_client::Admin::new(client.clone()).partition_count(&args.topic).await?;
    let config = GroupConfig {
        client_id: format!("sluice-cli-{}", std::process::id()),
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        strategy: args.strategy,
        auto_commit_interval: Some(COMMIT_EVERY),
        auto_offset_reset: if args.from_beginning { AutoOffsetReset::Earliest } else { AutoOffsetReset::Latest },
        ..GroupConfig::default()
    };
    let mut consumer = GroupConsumer::subscribe(client, &[args.topic.as_str()], group, config)
        .await
        .with_context(|| format!("cannot join group '{group}'"))?;
    let result = consume(&mut consumer, &args, stop).await;
    // Commit what was printed and leave, also after a failure to write.
    let closed = consumer.close().await.with_context(|| format!("cannot leave group '{group}' cleanly"));
    let consumed = result?;
    closed?;
    if let Some(consumed) = consumed {
        eprintln!("consumed {consumed} records from {} as group '{group}'", args.topic);
    }
    Ok(())
}

/// Prints records until a limit or the stop signal; `None` when stdout was closed.
async fn consume(
    consumer: &mut GroupConsumer,
    args: &ConsumeArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<u64>> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut consumed = 0u64;
    tokio::pin!(stop);
    loop {
        let wanted = args.count.map_or(usize::MAX, |c| usize::try_from(c - consumed).unwrap_or(usize::MAX));
        if wanted == 0 {
            break;
        }
        let wait = match idle_limit {
            Some(limit) => match limit.checked_sub(last_record.elapsed()) {
                Some(left) if !left.is_zero() => left.min(POLL),
                _ => break,
            },
            None => POLL,
        };
        let records = tokio::select! {
            _ = &mut stop => break,
            records = consumer.poll(wait) => records?,
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        // Records past --count are not printed: move back to the first of them in its
        // partition, so that the final commit leaves them to the next reader.
        let batch = &records[..records.len().min(wanted)];
        let mut rewind: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for r in &records[batch.len()..] {
            rewind.entry(TopicPartition::new(&r.topic, r.partition)).or_insert(r.offset);
        }
        for (tp, offset) in rewind {
            consumer.seek(&tp, offset).await?;
        }
        if !written(write_records(&mut out, batch, args.format))? {
            return Ok(None);
        }
        consumed += batch.len() as u64;
    }
    if !written(out.flush())? {
        return Ok(None);
    }
    Ok(Some(consumed))
}
