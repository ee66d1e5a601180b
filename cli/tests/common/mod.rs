//! Shared fixture of the CLI tests: a `sluice dev` broker process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs::File,
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
}

impl DevBroker {
    pub fn start() -> Self {
        Self::start_logging("warn")
    }

    /// Starts a broker whose log (filtered by `rust_log`) goes to `broker.log`.
    pub fn start_logging(rust_log: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("broker.log")).unwrap();
        let child = Command::new(SLUICE)
            .args(["dev", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--kafka-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", rust_log)
            .env_remove("SLUICE_BROKER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sluice dev");
        let mut broker = DevBroker { child, addr: String::new(), kafka_addr: String::new(), dir, _stdout: None };
        // Port 0 lets the broker pick a free port without a race; the banner names it.
        let mut stdout = BufReader::new(broker.child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix(BANNER) else {
            panic!("no banner from sluice dev (got {line:?}); log:\n{}", broker.log());
        };
        broker.addr = addr.to_string();
        while !line.starts_with(KAFKA_BANNER) {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("no kafka line in the banner of sluice dev; log:\n{}", broker.log());
            }
        }
        let kafka = line[KAFKA_BANNER.len()..].split_whitespace().next().unwrap_or_default();
        broker.kafka_addr = kafka.to_string();
        broker._stdout = Some(stdout.into_inner());
        broker.wait_until_accepting();
        broker
    }

    pub fn wait_until_accepting(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
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
