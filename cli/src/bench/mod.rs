//! `sluice bench`: produce, consume and end-to-end benchmarks (owned by the bench work).

use clap::Args;

/// Arguments of `sluice bench` (to be filled by the bench implementation).
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs a benchmark against `broker` (or an embedded broker when `None`).
pub async fn run(_args: BenchArgs, _broker: Option<String>) -> anyhow::Result<()> {
    anyhow::bail!("bench is being implemented")
}
