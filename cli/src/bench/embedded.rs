//! The embedded broker a bench starts when no `--broker` is given: a standalone broker
//! in a temporary data directory, removed afterwards; plus the process memory and
//! disk figures reported for it.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::Context;
use sluice_broker::{BrokerConfig, BrokerHandle};

/// A broker running in this process.
#[derive(Debug)]
pub struct EmbeddedBroker {
    dir: tempfile::TempDir,
    handle: BrokerHandle,
}

/// Bytes used by a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Blocks allocated on disk (what `du` reports).
    pub allocated_bytes: u64,
}

impl EmbeddedBroker {
    /// Starts a standalone broker on a free local port.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-bench-")
            .tempdir()
            .context("cannot create a temporary data directory for the embedded broker")?;
        let config = BrokerConfig::standalone(dir.path(), SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let handle = sluice_broker::start(config).await.context("cannot start the embedded broker")?;
        Ok(Self { dir, handle })
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Shuts the broker down (which flushes the log), measures the data directory,
    /// then removes it.
    pub async fn stop(self) -> anyhow::Result<DiskUsage> {
        let Self { dir, handle } = self;
        let shutdown = handle.shutdown().await.context("embedded broker shutdown failed");
        let usage = dir_usage(dir.path());
        let path: PathBuf = dir.path().to_path_buf();
        dir.close().with_context(|| format!("cannot remove {}", path.display()))?;
        shutdown?;
        usage.with_context(|| format!("cannot measure {}", path.display()))
    }
}

/// Walks `path` and adds up file sizes.
pub fn dir_usage(path: &Path) -> std::io::Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                usage.apparent_bytes += meta.len();
                usage.allocated_bytes += meta.blocks() * 512;
            }
        }
    }
    Ok(usage)
}

/// Resident memory of this process, from `/proc/self/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// VmRSS.
    pub rss_bytes: Option<u64>,
    /// VmHWM, the peak RSS.
    pub peak_rss_bytes: Option<u64>,
}

impl ProcessMemory {
    /// Reads the current figures; all `None` where `/proc` is not available.
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/self/status").map(|s| Self::parse(&s)).unwrap_or_default()
    }

    fn parse(status: &str) -> Self {
        let field = |name: &str| {
            status.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
                Some(kb * 1024)
            })
        };
        Self { rss_bytes: field("VmRSS"), peak_rss_bytes: field("VmHWM") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tsluice\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        let m = ProcessMemory::parse(status);
        assert_eq!(m.rss_bytes, Some(10 << 20));
        assert_eq!(m.peak_rss_bytes, Some(20 << 20));
        assert_eq!(ProcessMemory::parse("Name: x\n"), ProcessMemory::default());
    }

    #[test]
    fn dir_usage_adds_nested_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), [0u8; 1000]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b"), [0u8; 24]).expect("write");
        let u = dir_usage(dir.path()).expect("usage");
        assert_eq!(u.apparent_bytes, 1024);
    }
}
