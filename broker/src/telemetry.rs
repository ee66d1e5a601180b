//! Logging setup shared by the broker binary and `sluice dev`: `RUST_LOG` filters
//! (default `info`), text or JSON output.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. `format` is "json" or anything else for text.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
