//! Shared test fixtures: an in-process broker on a loopback port, and a broker process
//! that can be killed with SIGKILL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod proxy;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sluice_broker::{BrokerConfig, BrokerHandle};
use sluice_client::{Admin, Client};

/// A broker running inside the test process, with its data in a temp dir.
pub struct TestBroker {
    pub handle: Option<BrokerHandle>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BrokerConfig::standalone(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        tweak(&mut config);
        let handle = sluice_broker::start(config).await.expect("broker starts");
        let addr = handle.addr;
        Self { handle: Some(handle), dir, addr }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.addr.to_string()).await.expect("connect")
    }

    pub async fn admin(&self) -> Admin {
        Admin::new(self.client().await)
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
    }
}

/// A client of the broker at `addr`, retrying for 5 s while it starts.
pub async fn connect(addr: &str) -> Client {
    for _ in 0..100 {
        if let Ok(c) = Client::connect(addr).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {addr}");
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A `sluice-broker` process; killed with SIGKILL when dropped.
pub struct BrokerProcess {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub stderr_path: PathBuf,
}

impl BrokerProcess {
    pub fn spawn(data_dir: &Path, port: u16, extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{port}");
        let stderr_path = data_dir.with_extension(format!("{port}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-broker"))
            .args(["--data-dir", data_dir.to_str().expect("utf8 path"), "--listen", &addr, "--metrics-listen", "off"])
            // Tests run in parallel: a free Kafka port unless the test names one.
            .args(if extra.contains(&"--kafka-listen") { &[][..] } else { &["--kafka-listen", "127.0.0.1:0"][..] })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sluice-broker");
        Self { child, addr, data_dir: data_dir.to_path_buf(), stderr_path }
    }

    /// The bound Kafka-protocol address, from the broker's "broker serving" log line
    /// (`kafka=Some(ADDR)`; after [`Self::wait_ready`]).
    pub fn kafka_addr(&self) -> String {
        let log = self.stderr();
        let line = log.lines().find(|l| l.contains("broker serving")).expect("no 'broker serving' line in the log");
        let at = line.find("kafka=Some(").expect("a kafka address in the serving line") + "kafka=Some(".len();
        line[at..].split(')').next().expect("an address").to_string()
    }

    /// Waits until the gRPC port accepts connections, or panics with the broker's log.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("broker exited early with {status}: {}", self.stderr());
            }
            // Our own broker must say it serves: with ports picked by `free_port`, another
            // test's broker may hold the same port for a moment, and a bare connect would
            // succeed against it.
            if self.stderr().contains("broker serving") && TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("broker did not start: {}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
