//! Shared fixture of the CLI tests: a `sluice dev` broker process (killable with
//! SIGKILL and restartable on its data), and `sluice verify` runs ([`verify`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod dev_cluster;
pub mod link_proxy;
pub mod verify;

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
pub const BANNER: &str = "Sluice dev broker listening on ";
/// The banner line naming the Kafka-protocol address.
pub const KAFKA_BANNER: &str = "  kafka:    ";

/// A `sluice dev` process, killed when dropped (also when a test panics).
pub struct DevBroker {
    pub child: Child,
    pub addr: String,
    /// The Kafka-protocol address (bootstrap.servers).
    pub kafka_addr: String,
    pub dir: TempDir,
    /// Kept open so the broker never writes to a closed pipe.
    _stdout: Option<ChildStdout>,
    rust_log: String,
}

/// Spawns `sluice dev` on `dir/data`, its log appended to `dir/broker.log`.
fn spawn_dev(dir: &std::path::Path, listen: &str, kafka_listen: &str, rust_log: &str) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("broker.log")).unwrap();
    Command::new(SLUICE)
        .args(["dev", "--listen", listen, "--metrics-listen", "off", "--kafka-listen", kafka_listen])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", rust_log)
        .env_remove("SLUICE_BROKER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start sluice dev")
}

impl DevBroker {
    pub fn start() -> Self {
        Self::start_logging("warn")
    }

    /// Starts a broker whose log (filtered by `rust_log`) goes to `broker.log`.
    pub fn start_logging(rust_log: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_dev(dir.path(), "127.0.0.1:0", "127.0.0.1:0", rust_log);
        let mut broker = DevBroker {
            child,
            addr: String::new(),
            kafka_addr: String::new(),
            dir,
            _stdout: None,
            rust_log: rust_log.to_string(),
        };
        broker.read_banner().unwrap_or_else(|e| panic!("{e}"));
        broker.wait_until_accepting();
        broker
    }

    /// Reads the banner of a freshly spawned process: its gRPC and Kafka addresses.
    fn read_banner(&mut self) -> Result<(), String> {
        // Port 0 lets the broker pick a free port without a race; the banner names it.
        let mut stdout = BufReader::new(self.child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix(BANNER) else {
            return Err(format!("no banner from sluice dev (got {line:?}); log:\n{}", self.log()));
        };
        self.addr = addr.to_string();
        while !line.starts_with(KAFKA_BANNER) {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                return Err(format!("no kafka line in the banner of sluice dev; log:\n{}", self.log()));
            }
        }
        let kafka = line[KAFKA_BANNER.len()..].split_whitespace().next().unwrap_or_default();
        self.kafka_addr = kafka.to_string();
        self._stdout = Some(stdout.into_inner());
        Ok(())
    }

    /// The data directory (kept across [`Self::restart`]).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts `sluice dev` again on the same data directory and the same gRPC and Kafka
    /// addresses (clients keep their address), after [`Self::kill9`] or an exit. Retries
    /// for a while if the port is taken for a moment.
    pub fn restart(&mut self) {
        self.kill9();
        let deadline = Instant::now() + Duration::from_secs(60);
        let (addr, kafka) = (self.addr.clone(), self.kafka_addr.clone());
        loop {
            self.child = spawn_dev(self.dir.path(), &addr, &kafka, &self.rust_log);
            match self.read_banner() {
                Ok(()) => break,
                Err(e) => {
                    self.kill9();
                    assert!(Instant::now() < deadline, "sluice dev did not restart on {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        assert_eq!(self.addr, addr, "restarted on another address");
        self.wait_until_accepting();
    }

    pub fn wait_until_accepting(&self) {
        // Generous: the whole suite runs in parallel on 2 cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "broker at {} never accepted; log:\n{}", self.addr, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// `sluice --broker ADDR <args>`.
    pub fn sluice(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SLUICE);
        cmd.arg("--broker").arg(&self.addr).args(args).env_remove("SLUICE_BROKER").stdin(Stdio::null());
        cmd
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.sluice(args).output().unwrap();
        assert!(out.status.success(), "sluice {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
