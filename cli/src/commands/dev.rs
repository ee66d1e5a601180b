//! `sluice dev`: a standalone broker in this process, in the foreground, until Ctrl-C
//! or SIGTERM.

use std::{io::Write, net::SocketAddr, path::Path};

use anyhow::{Context, Result};
use sluice_broker::BrokerConfig;
use tracing::info;

use crate::args::{DEFAULT_BROKER, DevArgs, MetricsListen};

/// The first line of the banner; tests and scripts read the bound address from it.
pub const LISTENING: &str = "Sluice dev broker listening on";
/// The banner line naming the Kafka-protocol address (tests read it).
pub const KAFKA_LINE: &str = "  kafka:   ";

pub async fn run(args: DevArgs) -> Result<()> {
    sluice_broker::telemetry::init(&args.log_format);
    let mut config = BrokerConfig::standalone(&args.data_dir, args.listen);
    config.metrics_listen = match args.metrics_listen {
        MetricsListen::Off => None,
        MetricsListen::On(a) => Some(a),
    };
    config.kafka = match args.kafka_listen {
        MetricsListen::Off => None,
        MetricsListen::On(a) => Some(sluice_broker::kafka::KafkaConfig::new(a)),
    };
    // Listen before opening storage: a signal during start-up then stops the broker
    // gracefully right after it is up, instead of killing it while it opens the log.
    let stop = crate::signal::listen();
    let handle = sluice_broker::start(config).await.context("cannot start the broker")?;
    let trigger = handle.shutdown_trigger();
    tokio::spawn(async move {
        stop.await;
        info!("shutdown signal received, stopping");
        let _ = trigger.send(true);
    });
    // Only now, with the handlers in place, tell the user (and scripts) it is up.
    print_banner(&banner(handle.addr, handle.metrics_addr, handle.kafka_addr, &args.data_dir));
    if args.demo {
        match demo(handle.addr).await {
            Ok(text) => print_banner(&text),
            Err(e) => eprintln!("error: demo failed: {e:#}"),
        }
    }
    handle.wait().await.context("the broker stopped with an error")
}

/// Produces a few keyed records to topic `demo` and reads them back: the proof, on a
/// first run, that the broker works end to end.
async fn demo(addr: SocketAddr) -> Result<String> {
    use sluice_client::{
        Admin, Client, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset,
        proto::ErrorCode,
    };
    let client = Client::connect(&addr.to_string()).await?;
    match Admin::new(client.clone()).create_topic("demo", 3, Default::default()).await {
        Err(e) if e.kind() != Some(ErrorCode::TopicAlreadyExists) => return Err(e.into()),
        _ => {}
    }
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut out = String::from("\nDemo: produced to topic 'demo' (3 partitions), then read back:\n");
    let mut sent = Vec::new();
    for (key, value) in
        [("alice", "signed up"), ("bob", "signed up"), ("alice", "bought a book"), ("carol", "signed up")]
    {
        sent.push(producer.send(ProducerRecord::new("demo").key(key).value(value)).await?);
    }
    producer.flush().await;
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    for d in sent {
        let meta = d.await?;
        let offset = meta.offset.context("acknowledged without an offset")?;
        consumer.assign("demo", meta.partition, StartOffset::Offset(offset)).await?;
        let records = consumer.poll(std::time::Duration::from_secs(5)).await?;
        let r = records.first().context("record not readable after acknowledgement")?;
        let text =
            |b: &Option<bytes::Bytes>| b.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        out.push_str(&format!(
            "  partition {} offset {:>3}  {:<6} {}\n",
            r.partition,
            r.offset,
            text(&r.key),
            text(&r.value)
        ));
        consumer.unassign("demo", meta.partition);
    }
    out.push_str("Sluice works. Keep this running and try the commands above.\n");
    Ok(out)
}

/// Writes the banner to stdout, ignoring a closed stdout (the broker keeps running).
fn print_banner(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn banner(addr: SocketAddr, metrics: Option<SocketAddr>, kafka: Option<SocketAddr>, data_dir: &Path) -> String {
    let mut s = format!("{LISTENING} {addr}\n");
    s.push_str(&format!("  data dir: {}\n", data_dir.display()));
    match metrics {
        Some(m) => s.push_str(&format!("  metrics:  http://{m}/metrics\n")),
        None => s.push_str("  metrics:  off\n"),
    }
    match kafka {
        Some(k) => s.push_str(&format!("{KAFKA_LINE} {k}   (Kafka clients: bootstrap.servers={k})\n")),
        None => s.push_str(&format!("{KAFKA_LINE} off\n")),
    }
    s.push_str("\nTry it, in another terminal:\n");
    if addr.to_string() != DEFAULT_BROKER {
        s.push_str(&format!("  export SLUICE_BROKER={addr}\n"));
    }
    s.push_str("  sluice topic create orders --partitions 3\n");
    s.push_str("  seq 1 1000 | sluice produce orders\n");
    s.push_str("  sluice consume orders --from-beginning --count 1000\n");
    s.push_str("  sluice topic describe orders\n");
    s.push_str("\nPress Ctrl-C to stop.\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_names_address_metrics_and_export_when_not_default() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().expect("address");
        let b = banner(addr, None, None, Path::new("/tmp/d"));
        assert!(b.starts_with("Sluice dev broker listening on 127.0.0.1:4000\n"), "{b}");
        assert!(b.contains("export SLUICE_BROKER=127.0.0.1:4000"), "{b}");
        assert!(b.contains("metrics:  off"), "{b}");
        assert!(b.contains("  kafka:    off\n"), "{b}");

        let default: SocketAddr = DEFAULT_BROKER.parse().expect("address");
        let b = banner(default, Some(addr), Some(addr), Path::new("d"));
        assert!(b.contains("  kafka:    127.0.0.1:4000 "), "{b}");
        assert!(!b.contains("export"), "{b}");
        assert!(b.contains("http://127.0.0.1:4000/metrics"), "{b}");
    }
}
