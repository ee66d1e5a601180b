//! `sluice-operator`: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_operator::cli::main(sluice_operator::cli::Cli::parse()).await?;
    Ok(())
}
