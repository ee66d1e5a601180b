//! `sluice bench`: produce, consume, end-to-end and consumer-group benchmarks, against
//! an embedded broker, a `--broker`, or a transport-only server with storage switched
//! off (the ceiling the gRPC path allows).
//!
//! - [`args`]: the command line.
//! - [`session`]: what the bench runs against and the topic it uses.
//! - [`embedded`]: the embedded broker, its memory and disk figures.
//! - [`null_server`]: the transport-only server.
//! - [`load`]: the producers (fixed rate or max throughput); [`acks`]: ack latency.
//! - [`produce`], [`consume`], [`e2e`]: the record workloads.
//! - [`group`], [`rebalance`]: the consumer-group workloads.
//! - [`report`]: histogram, results, text and JSON output; [`group_report`]: those of
//!   the group workloads; [`progress`]: the bar.

mod acks;
mod args;
mod consume;
mod e2e;
mod embedded;
mod group;
mod group_report;
mod load;
mod null_server;
mod produce;
mod progress;
mod rebalance;
mod report;
mod session;

pub use args::BenchArgs;
use args::{Output, Workload};
use group_report::{GroupReport, RebalanceReport};
use report::{BrokerStats, Report};
use session::{Session, TransportOnly};

/// A finished run's report, whichever workload it was.
#[derive(Debug)]
enum Finished {
    Records(Report),
    Group(GroupReport),
    Rebalance(RebalanceReport),
}

impl Finished {
    fn set_broker(&mut self, stats: Option<BrokerStats>) {
        match self {
            Finished::Records(r) => r.broker = stats,
            Finished::Group(r) => r.broker = stats,
            Finished::Rebalance(r) => r.broker = stats,
        }
    }

    fn print(&self, output: Output) {
        let text = match (self, output) {
            (Finished::Records(r), Output::Text) => r.text(),
            (Finished::Records(r), Output::Json) => r.json(),
            (Finished::Group(r), Output::Text) => r.text(),
            (Finished::Group(r), Output::Json) => r.json(),
            (Finished::Rebalance(r), Output::Text) => r.text(),
            (Finished::Rebalance(r), Output::Json) => r.json(),
        };
        println!("{text}");
    }
}

/// Runs a benchmark against `broker` (or an embedded broker when `None`) and prints
/// its report on stdout; progress and notices go to stderr.
pub async fn run(args: BenchArgs, broker: Option<String>) -> anyhow::Result<()> {
    let transport_only = |on: bool, c: &args::Common| {
        on.then_some(TransportOnly { record_size: c.record_size, batch_size: c.batch_size })
    };
    let (topic, server, output) = match &args.workload {
        Workload::Produce(a) => (a.common.topic_spec(1), transport_only(a.transport_only, &a.common), a.common.output),
        Workload::Consume(a) => (a.common.topic_spec(1), transport_only(a.transport_only, &a.common), a.common.output),
        Workload::E2e(a) => (a.common.topic_spec(1), None, a.common.output),
        Workload::Group(a) => (a.common.topic_spec(group::DEFAULT_PARTITIONS), None, a.common.output),
        Workload::Rebalance(a) => (a.topic_spec(), None, a.output),
    };
    let compression = match &args.workload {
        Workload::Produce(a) => Some(a.common.compression),
        Workload::Consume(a) => Some(a.common.compression),
        Workload::E2e(a) => Some(a.common.compression),
        Workload::Group(a) => Some(a.common.compression),
        Workload::Rebalance(_) => None,
    };
    let session = Session::open(broker, server, &topic).await?;
    let outcome = tokio::select! {
        r = async {
            match &args.workload {
                Workload::Produce(a) => produce::run(a, &session).await.map(|(r, n)| (Finished::Records(r), n)),
                Workload::Consume(a) => consume::run(a, &session).await.map(|(r, n)| (Finished::Records(r), n)),
                Workload::E2e(a) => e2e::run(a, &session).await.map(|(r, n)| (Finished::Records(r), n)),
                Workload::Group(a) => group::run(a, &session).await.map(|(r, n)| (Finished::Group(r), n)),
                Workload::Rebalance(a) => rebalance::run(a, &session).await.map(|(r, n)| (Finished::Rebalance(r), n)),
            }
        } => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The embedded broker and its directory go away whatever happened.
    let (mut report, payload_bytes) = match outcome {
        Ok(r) => r,
        Err(e) => {
            if let Err(close) = session.close(0).await {
                eprintln!("bench: cleanup failed: {close:#}");
            }
            return Err(e);
        }
    };
    if let (Finished::Records(r), Some(compression)) = (&mut report, compression)
        && payload_bytes > 0
        && session.created
        && let Ok(stored) = session::stored_bytes(&session.addr, &session.topic).await
    {
        // Batch headers and record framing included: what compression saves on disk
        // and on the wire.
        r.notes.push(format!(
            "compression={compression}: the topic's log holds {stored} bytes for {payload_bytes} bytes of record \
             values ({:.2}x)",
            payload_bytes as f64 / stored.max(1) as f64
        ));
    }
    report.set_broker(session.close(payload_bytes).await?);
    report.print(output);
    Ok(())
}
