//! Running `sluice verify` as a process against a broker address: in one go, or
//! `--produce-only` in the background and `--check-only` later, with its count lines
//! parsed into [`Counts`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::SLUICE;

/// The counts `sluice verify` prints (its two lines, or --json).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub acked: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub offsets_reused: u64,
    pub sent: u64,
    pub failed: u64,
    pub unacked_seen: u64,
    pub read: u64,
    pub other: u64,
}

impl Counts {
    /// Parses `key=value` words from `sluice verify`'s output; panics without the
    /// first line (`acked=... lost=...`).
    pub fn parse(stdout: &str) -> Self {
        let words: HashMap<&str, u64> = stdout
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        let get =
            |k: &str| *words.get(k).unwrap_or_else(|| panic!("no {k}= in the output of sluice verify: {stdout:?}"));
        Counts {
            acked: get("acked"),
            lost: get("lost"),
            duplicates: get("duplicates"),
            reordered: get("reordered"),
            offsets_reused: get("offsets_reused"),
            sent: get("sent"),
            failed: get("failed"),
            unacked_seen: get("unacked_seen"),
            read: get("read"),
            other: get("other"),
        }
    }

    /// True when nothing acknowledged was lost, duplicated, reordered or overwritten.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.reordered == 0 && self.offsets_reused == 0
    }
}

/// A finished `sluice verify`.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The counts of a check (panics, with the output, if there are none).
    pub fn counts(&self) -> Counts {
        if !self.stdout.contains("lost=") {
            panic!("sluice verify printed no counts (exit {:?}); stderr:\n{}", self.code, self.stderr);
        }
        Counts::parse(&self.stdout)
    }

    /// Asserts exit 0 and clean counts with at least `min_acked` acknowledged; returns them.
    pub fn assert_clean(&self, min_acked: u64) -> Counts {
        let c = self.counts();
        assert!(
            c.clean() && self.code == Some(0),
            "sluice verify: {c:?} (exit {:?})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        assert!(c.acked >= min_acked, "only {} acknowledged (wanted {min_acked}); stderr:\n{}", c.acked, self.stderr);
        c
    }
}

/// `sluice --broker ADDR verify TOPIC ARGS...` as a command.
pub fn command(addr: &str, topic: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(SLUICE);
    cmd.arg("--broker").arg(addr).arg("verify").arg(topic).args(args).env_remove("SLUICE_BROKER").stdin(Stdio::null());
    cmd
}

/// Runs `sluice verify` to the end (produce and check, or one of them per `args`).
pub fn run(addr: &str, topic: &str, args: &[&str]) -> Outcome {
    Outcome::from(command(addr, topic, args).output().unwrap())
}

/// `--check-only --state STATE`.
pub fn check(addr: &str, topic: &str, state: &Path) -> Outcome {
    run(addr, topic, &["--check-only", "--state", state.to_str().unwrap()])
}

/// A `--produce-only` run in the background; killed when dropped unless waited for.
pub struct Background {
    child: Option<Child>,
    pub state: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
}

impl Background {
    /// Starts `sluice verify TOPIC --produce-only --state STATE ARGS...`; its output goes to
    /// files next to `state`.
    pub fn start(addr: &str, topic: &str, state: &Path, args: &[&str]) -> Self {
        let stderr_path = state.with_extension("stderr");
        let stdout_path = state.with_extension("stdout");
        let child = command(addr, topic, &["--produce-only", "--state", state.to_str().unwrap()])
            .args(args)
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start sluice verify");
        Self { child: Some(child), state: state.to_path_buf(), stderr_path, stdout_path }
    }

    /// SIGTERM: the run stops sending, waits for what is in flight and writes its state.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The acknowledged count of the newest progress line (0 before the first).
    pub fn acked_so_far(&self) -> u64 {
        let stderr = self.stderr();
        let line = stderr.lines().rev().find(|l| l.starts_with("verify: ") && l.contains(" acked="));
        line.and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("acked=")?.parse().ok())).unwrap_or(0)
    }

    /// Waits (polling) until at least `n` records were acknowledged.
    pub fn wait_for_acked(&mut self, n: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.acked_so_far() < n {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sluice verify exited ({status}) before {n} acknowledgements:\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "fewer than {n} acknowledgements in {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of a drill: waits for `more` acknowledgements beyond those so far (within
    /// `limit`: the load is flowing again), stops the run (SIGTERM, 180 s to drain), checks
    /// it exited 0, then runs the checker against `addr` and asserts clean counts with at
    /// least `min_acked` acknowledged; prints and returns them.
    pub fn finish_and_check(mut self, addr: &str, topic: &str, more: u64, limit: Duration, min_acked: u64) -> Counts {
        let acked = self.acked_so_far();
        self.wait_for_acked(acked + more, limit);
        self.terminate();
        let state = self.state.clone();
        let produced = self.wait(Duration::from_secs(180));
        assert_eq!(produced.code, Some(0), "sluice verify --produce-only: {}", produced.stderr);
        let checked = check(addr, topic, &state);
        println!("{}", checked.stdout.trim());
        checked.assert_clean(min_acked)
    }

    /// Waits for the run to end (within `limit`, else kills it and panics) and returns it.
    pub fn wait(mut self, limit: Duration) -> Outcome {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sluice verify --produce-only did not end within {limit:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Outcome {
            code: status.code(),
            stdout: std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
