//! `sluice bench`: produce, consume and end-to-end benchmarks, against an embedded
//! broker, a `--broker`, or a transport-only server with storage switched off (the
//! ceiling the gRPC path allows).
//!
//! - [`args`]: the command line.
//! - [`session`]: what the bench runs against and the topic it uses.
//! - [`embedded`]: the embedded broker, its memory and disk figures.
//! - [`null_server`]: the transport-only server.
//! - [`load`]: the producers (fixed rate or max throughput); [`acks`]: ack latency.
//! - [`produce`], [`consume`], [`e2e`]: the workloads.
//! - [`report`]: histogram, results, text and JSON output; [`progress`]: the bar.

mod acks;
mod args;
mod consume;
mod e2e;
mod embedded;
mod load;
mod null_server;
mod produce;
mod progress;
mod report;
mod session;

pub use args::BenchArgs;
use args::{Output, Workload};
use session::Session;

/// Runs a benchmark against `broker` (or an embedded broker when `None`) and prints
/// its report on stdout; progress and notices go to stderr.
pub async fn run(args: BenchArgs, broker: Option<String>) -> anyhow::Result<()> {
    let (common, transport_only) = match &args.workload {
        Workload::Produce(a) => (&a.common, a.transport_only),
        Workload::Consume(a) => (&a.common, a.transport_only),
        Workload::E2e(a) => (&a.common, false),
    };
    let session = Session::open(broker, transport_only, common).await?;
    let outcome = tokio::select! {
        r = async {
            match &args.workload {
                Workload::Produce(a) => produce::run(a, &session).await,
                Workload::Consume(a) => consume::run(a, &session).await,
                Workload::E2e(a) => e2e::run(a, &session).await,
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
    if payload_bytes > 0
        && session.created
        && let Ok(stored) = session::stored_bytes(&session.addr, &session.topic).await
    {
        // Batch headers and record framing included: what compression saves on disk
        // and on the wire.
        report.notes.push(format!(
            "compression={}: the topic's log holds {stored} bytes for {payload_bytes} bytes of record values \
             ({:.2}x)",
            common.compression,
            payload_bytes as f64 / stored.max(1) as f64
        ));
    }
    report.broker = session.close(payload_bytes).await?;
    match common.output {
        Output::Text => println!("{}", report.text()),
        Output::Json => println!("{}", report.json()),
    }
    Ok(())
}
