//! `sluice dev --brokers N` as a test fixture: the dev process and its broker processes
//! (ids, gRPC and Kafka addresses, pids from its stdout lines), `kill -9` of one, the
//! CLI against any broker, and polling helpers. Dropping it stops everything it started.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

use super::SLUICE;

pub const SESSION_MS: u64 = 3000;

pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

/// The `sluice-broker` next to `sluice`, or why there is none (a failure under CI).
pub fn broker_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(SLUICE).with_file_name("sluice-broker");
    if bin.exists() {
        return Some(bin);
    }
    let why = format!("no sluice-broker at {} (cargo build -p sluice-broker)", bin.display());
    assert!(!under_ci(), "{why}");
    println!("SKIPPED: {why}");
    None
}

#[derive(Debug, Clone)]
pub struct BrokerLine {
    pub grpc: String,
    /// The broker's Kafka listener (bootstrap.servers).
    pub kafka: String,
    pub pid: u32,
}

/// Where `sluice dev` listens: broker i's gRPC on `grpc`'s port + 2i (any free port per
/// broker with port 0), the controller on `controller`.
#[derive(Debug, Clone)]
pub struct Listen {
    pub grpc: String,
    pub controller: String,
}

impl Default for Listen {
    fn default() -> Self {
        Self { grpc: "127.0.0.1:0".into(), controller: "127.0.0.1:0".into() }
    }
}

/// A `sluice dev --brokers 3` process; killed (with its brokers) when dropped.
pub struct DevCluster {
    pub child: Child,
    pub dir: TempDir,
    pub controller: String,
    pub brokers: BTreeMap<i32, BrokerLine>,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        // SIGTERM first: the dev process stops its brokers; then make sure.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for b in self.brokers.values() {
            let _ = Command::new("kill").arg("-KILL").arg(b.pid.to_string()).stderr(Stdio::null()).status();
        }
    }
}

pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or_default()
}

impl DevCluster {
    /// `sluice dev --brokers 3` with `extra` arguments.
    pub fn start(bin: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_n(3, bin, extra)
    }

    /// `sluice dev --brokers n` with `extra` arguments; returns once it printed its ready line.
    pub fn start_n(n: usize, bin: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_with(n, bin, extra, &Listen::default(), &[])
    }

    /// [`Self::start_n`] on the given addresses, with `env` for `sluice dev` (and so for
    /// the broker processes it starts).
    pub fn start_with(n: usize, bin: &std::path::Path, extra: &[&str], at: &Listen, env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("cluster.log")).unwrap();
        let mut child = Command::new(SLUICE)
            .args(["dev", "--brokers", &n.to_string(), "--listen", &at.grpc, "--kafka-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "off", "--controller-listen", &at.controller])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--session-timeout-ms", &SESSION_MS.to_string()])
            .arg("--broker-bin")
            .arg(bin)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("SLUICE_BROKER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sluice dev --brokers N");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(|l| l.ok()) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut c = DevCluster { child, dir, controller: String::new(), brokers: BTreeMap::new(), lines };
        c.wait_line("the ready line", |l| l.starts_with("Sluice dev cluster ready:"));
        for line in c.lines.lock().unwrap().iter() {
            if line.starts_with("controller ") {
                c.controller = field(line, "grpc=").to_string();
            }
            if let Some(rest) = line.strip_prefix("broker ")
                && line.contains(" grpc=")
            {
                let id: i32 = rest.split_whitespace().next().unwrap().parse().unwrap();
                let pid = field(line, "pid=").parse().unwrap();
                c.brokers.insert(
                    id,
                    BrokerLine {
                        grpc: field(line, "grpc=").to_string(),
                        kafka: field(line, "kafka=").to_string(),
                        pid,
                    },
                );
            }
        }
        assert_eq!(c.brokers.len(), n, "{:?}", c.lines.lock().unwrap());
        assert!(!c.controller.is_empty());
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cluster.log")).unwrap_or_default()
    }

    /// Waits (60 s) for a line of stdout matching `pred`; returns it.
    pub fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stdout: {:?}\nlog (tail):\n{}",
                self.lines.lock().unwrap(),
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sluice(&self, broker: i32, args: &[&str]) -> Output {
        Command::new(SLUICE).arg("--broker").arg(&self.brokers[&broker].grpc).args(args).output().unwrap()
    }

    pub fn ok(&self, broker: i32, args: &[&str]) -> String {
        let out = self.sluice(broker, args);
        assert!(out.status.success(), "sluice {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Partition 0 of `topic` as broker `broker` describes it, when it answers.
    pub fn partition0(&self, broker: i32, topic: &str) -> Option<Value> {
        let out = self.sluice(broker, &["topic", "describe", topic, "--output", "json"]);
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["partitions"].as_array()?.iter().find(|p| p["partition"] == 0).cloned()
    }

    /// Produces `lines` to `topic` with acks=1 through broker `broker`.
    pub fn produce(&self, broker: i32, topic: &str, lines: &str) {
        self.produce_with_acks(broker, topic, lines, "1");
    }

    /// Produces `lines` to `topic` with `acks` (0, 1 or all) through broker `broker`.
    pub fn produce_with_acks(&self, broker: i32, topic: &str, lines: &str, acks: &str) {
        use std::io::Write;
        let mut child = Command::new(SLUICE)
            .args(["--broker", &self.brokers[&broker].grpc, "produce", topic, "--acks", acks])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "produce to {topic}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The process id of broker `id` now: from its latest start or restart line.
    pub fn pid(&self, id: i32) -> u32 {
        let lines = self.lines.lock().unwrap();
        let prefix = format!("broker {id} ");
        let line = lines.iter().rev().find(|l| l.starts_with(&prefix) && l.contains(" pid=")).unwrap();
        field(line, "pid=").parse().unwrap()
    }

    /// How many times `sluice dev --restart` restarted broker `id`.
    pub fn restarts(&self, id: i32) -> usize {
        let prefix = format!("broker {id} restarted");
        self.lines.lock().unwrap().iter().filter(|l| l.starts_with(&prefix)).count()
    }

    pub fn kill9(&self, broker: i32) {
        let pid = self.brokers[&broker].pid;
        let s = Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap();
        assert!(s.success(), "kill -9 {pid}");
    }
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

pub fn ids(v: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    out.sort();
    out
}

/// Waits (60 s, polling every 100 ms) until `f` answers.
pub fn wait_for<T>(what: &str, c: &DevCluster, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log (tail):\n{}", tail(&c.log()));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every broker describes `topic` partition 0 with the same live leader and
/// all 3 replicas in the ISR; returns that description.
pub fn full_isr(c: &DevCluster, topic: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views: Vec<Option<Value>> = (0..3).map(|b| c.partition0(b, topic)).collect();
        let all: Vec<&Value> = views.iter().flatten().collect();
        let agreed = all.len() == 3 && all.iter().all(|p| p["leader"] == all[0]["leader"] && p["leader"].is_i64());
        if agreed && all.iter().all(|p| ids(&p["isr"]).len() == 3) {
            return all[0].clone();
        }
        // What each broker said last comes first: test output may be cut after a while.
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {topic} to have a leader and a full ISR on every broker; partition 0 as \
             brokers 0, 1, 2 last described it: {views:?}; log (tail):\n{}",
            tail(&c.log())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
