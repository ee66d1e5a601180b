//! `sluice-broker`: runs one Sluice broker (`sluice-broker --help`).

use anyhow::Context;
use clap::Parser;
use sluice_broker::args::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sluice_broker::telemetry::init(&args.log_format);
    let (config, mode, cluster) = args.into_run_settings().context("invalid broker settings")?;
    match cluster {
        Some(settings) => sluice_broker::cluster::run(config, settings).await.context("broker failed"),
        None => sluice_broker::run(config, mode).await.context("broker failed"),
    }
}
