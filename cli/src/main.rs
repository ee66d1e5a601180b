//! `sluice`: the command line. Parses arguments, runs one command, and reports a
//! failure as a single `error: ...` line on stderr with exit code 1.

mod args;
mod bench;
mod commands;
mod error_line;
mod output;
mod signal;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Dev(_)) {
        init_client_logging();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let result = runtime.block_on(commands::run(cli));
    // Do not wait for background tasks (producer senders, a stdin reader blocked on a
    // terminal): the command is over.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", error_line::render(e));
    ExitCode::FAILURE
}

/// Client commands log nothing unless RUST_LOG asks: their errors are reported as one
/// line, and retries would otherwise interleave with the output.
fn init_client_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
