//! `sluice`: the command line (being implemented).
mod bench;
fn main() {}
