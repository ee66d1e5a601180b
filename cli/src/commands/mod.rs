//! One module per subcommand; [`run`] dispatches.

mod consume;
mod consume_group;
mod dev;
mod dev_cluster;
mod group;
mod produce;
mod topic;
pub mod verify;

use anyhow::Result;
use sluice_client::Client;

use crate::args::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let broker = cli.broker_addr().to_string();
    match cli.command {
        Command::Dev(args) if args.brokers > 1 => dev_cluster::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Topic(t) => topic::run(&connect(&broker).await?, t.command, t.output).await,
        Command::Produce(args) => produce::run(connect(&broker).await?, args).await,
        Command::Consume(args) => consume::run(connect(&broker).await?, args).await,
        Command::Group(g) => group::run(&connect(&broker).await?, g.command, g.output).await,
        // The benchmark starts its own broker unless one was named explicitly.
        Command::Bench(args) => crate::bench::run(args, cli.broker).await,
        Command::Verify(args) => verify::run(connect(&broker).await?, args).await,
    }
}

async fn connect(addr: &str) -> Result<Client> {
    // The client's error already reads "cannot connect to broker at ADDR: why".
    Ok(Client::connect(addr).await?)
}

/// Refuses a partition the topic does not have, in the broker's words.
fn check_partition(topic: &str, partition: u32, count: u32) -> Result<()> {
    if partition >= count {
        anyhow::bail!("unknown partition {partition} of topic '{topic}': it has partitions 0..{count}");
    }
    Ok(())
}
