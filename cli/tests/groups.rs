#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Consumer groups end to end with real processes: `sluice dev` as the broker,
//! `sluice consume --group` members that are started, stopped and `kill -9`ed, and the
//! `sluice group` commands as a user runs them.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    path::PathBuf,
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;

use common::DevBroker;

/// Members' session timeout; the broker asks for heartbeats every third of it.
const SESSION_MS: u64 = 1500;

impl DevBroker {
    fn produce(&self, topic: &str, partition: u32, lines: impl IntoIterator<Item = String>) {
        let input = self.dir.path().join(format!("in-{topic}-{partition}.txt"));
        std::fs::write(&input, lines.into_iter().map(|l| l + "\n").collect::<String>()).unwrap();
        let out = self
            .sluice(&["produce", topic, "--partition", &partition.to_string()])
            .stdin(File::open(&input).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn describe(&self, group: &str) -> Value {
        serde_json::from_str(&self.ok(&["group", "describe", group, "--output", "json"])).unwrap()
    }

    /// Like `describe`, but `null` while the group does not exist yet (no member has
    /// joined).
    fn describe_if_exists(&self, group: &str) -> Value {
        let out = self.sluice(&["group", "describe", group, "--output", "json"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains(&format!("group '{group}' does not exist")) {
            return Value::Null;
        }
        assert!(out.status.success(), "{stderr}");
        serde_json::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap()
    }

    /// A `sluice consume --group` member printing to a file.
    fn member(&self, topic: &str, group: &str, n: usize) -> Member {
        let out = self.dir.path().join(format!("member-{group}-{n}.out"));
        let err = self.dir.path().join(format!("member-{group}-{n}.err"));
        let child = self
            .sluice(&[
                "consume",
                topic,
                "--group",
                group,
                "--from-beginning",
                "--session-timeout-ms",
                &SESSION_MS.to_string(),
            ])
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Member { child, out }
    }
}

struct Member {
    child: Child,
    out: PathBuf,
}

impl Member {
    fn client_id(&self) -> String {
        format!("sluice-cli-{}", self.child.id())
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the member commits and leaves.
    fn stop(&mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "member exited with {status}");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// client id → partitions it owns, from `group describe --output json`.
fn ownership(d: &Value) -> BTreeMap<String, BTreeSet<u64>> {
    d["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let parts = m["assignment"].as_array().unwrap().iter().map(|tp| tp["partition"].as_u64().unwrap());
                    (m["client_id"].as_str().unwrap().to_string(), parts.collect())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Samples ownership until `done` holds, asserting at every sample that no partition
/// has two owners. Returns the time taken and the number of samples.
fn wait_for(
    broker: &DevBroker,
    group: &str,
    limit: Duration,
    done: impl Fn(&BTreeMap<String, BTreeSet<u64>>) -> bool,
) -> (Duration, u32) {
    let start = Instant::now();
    let mut samples = 0;
    loop {
        let o = ownership(&broker.describe_if_exists(group));
        samples += 1;
        let mut seen = BTreeSet::new();
        for parts in o.values() {
            for p in parts {
                assert!(seen.insert(*p), "partition {p} owned twice: {o:?}");
            }
        }
        if done(&o) {
            return (start.elapsed(), samples);
        }
        assert!(start.elapsed() < limit, "not reached within {limit:?}: {o:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sizes(o: &BTreeMap<String, BTreeSet<u64>>) -> Vec<usize> {
    let mut v: Vec<usize> = o.values().map(BTreeSet::len).collect();
    v.sort();
    v
}

#[test]
fn member_processes_split_rebalance_and_take_over_after_kill_9() {
    let broker = DevBroker::start_logging("info");
    broker.ok(&["topic", "create", "jobs", "--partitions", "4"]);
    for p in 0..4 {
        broker.produce("jobs", p, (0..250).map(|i| format!("p{p}-{i}")));
    }
    let limit = Duration::from_secs(20);

    let mut members = vec![broker.member("jobs", "workers", 0), broker.member("jobs", "workers", 1)];
    let (t, n) = wait_for(&broker, "workers", limit, |o| o.len() == 2 && sizes(o) == [2, 2]);
    println!("two members own 2 + 2 after {t:?} ({n} samples, never a partition owned twice)");

    members.push(broker.member("jobs", "workers", 2));
    let (t, n) = wait_for(&broker, "workers", limit, |o| o.len() == 3 && sizes(o) == [1, 1, 2]);
    println!("a third member: 1 + 1 + 2 after {t:?} ({n} samples, never a partition owned twice)");

    // kill -9 the member with two partitions: no leave, its session must run out.
    let o = ownership(&broker.describe("workers"));
    let victim = members.iter().position(|m| o.get(&m.client_id()).is_some_and(|p| p.len() == 2)).unwrap();
    let victim_id = members[victim].client_id();
    members[victim].kill9();
    let (t, n) = wait_for(&broker, "workers", limit, |o| {
        !o.contains_key(&victim_id) && o.values().map(BTreeSet::len).sum::<usize>() == 4
    });
    println!("after kill -9: the other two own all 4 partitions after {t:?} ({n} samples; session {SESSION_MS} ms)");
    let bound = Duration::from_millis(SESSION_MS + SESSION_MS / 3);
    // Generous: sampling is a process spawn per sample and the machine is shared.
    assert!(t < bound + Duration::from_secs(5), "took {t:?}, bound {bound:?}");
    assert_eq!(sizes(&ownership(&broker.describe("workers"))), vec![2, 2]);

    // Every record was printed by some member (at least once); the survivors then stop
    // cleanly, committing and leaving.
    let deadline = Instant::now() + limit;
    loop {
        let printed: BTreeSet<String> = members.iter().flat_map(Member::lines).collect();
        if printed.len() == 1000 {
            let total: usize = members.iter().map(|m| m.lines().len()).sum();
            println!("1000 records printed {total} times in all across the three members");
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 1000 records printed", printed.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, m) in members.iter_mut().enumerate() {
        if i != victim {
            m.stop();
        }
    }
    let d = broker.describe("workers");
    assert_eq!(d["state"], "Empty");
    assert_eq!(d["total_lag"], 0, "{d}");
}

/// Asserts one `error: ...` line and exit code 1; returns it.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr is not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr.trim_end().to_string()
}

fn committed(broker: &DevBroker, group: &str) -> Vec<Value> {
    broker.describe(group)["partitions"].as_array().unwrap().iter().map(|p| p["committed"].clone()).collect()
}

#[test]
fn group_commands_describe_reset_each_strategy_and_refuse_clearly() {
    let broker = DevBroker::start_logging("info");
    broker.ok(&["topic", "create", "r", "--partitions", "2"]);
    for p in 0..2 {
        broker.produce("r", p, (0..10).map(|i| format!("r{p}-{i}")));
    }
    let line = error_line(&broker.sluice(&["group", "describe", "nope"]).output().unwrap());
    assert_eq!(line, "error: group 'nope' does not exist");

    // Read everything as group g; exit after 20 records, committing them.
    let out =
        broker.ok(&["consume", "r", "--group", "g", "--from-beginning", "--count", "20", "--timeout-ms", "10000"]);
    assert_eq!(out.lines().count(), 20);
    let text = broker.ok(&["group", "describe", "g"]);
    assert!(text.starts_with("Group: g  state: Empty  members: 0"), "{text}");
    assert!(
        text.contains(
            "TOPIC  PARTITION  COMMITTED  LOG END  LAG  OWNER\nr              0         10       10    0  -\n"
        ),
        "{text}"
    );
    assert!(broker.ok(&["group", "list"]).contains("g      Empty        0"));
    // A second run of the group has nothing left to read.
    assert_eq!(broker.ok(&["consume", "r", "--group", "g", "--timeout-ms", "1000"]), "");

    // Each strategy: a dry run shows the plan and changes nothing; --execute applies it.
    let minute_ago = "1970-01-01T00:00:00Z";
    let cases: [(&[&str], [u64; 2]); 6] = [
        (&["--to-earliest"], [0, 0]),
        (&["--to-latest"], [10, 10]),
        (&["--to-offset", "4"], [4, 4]),
        (&["--shift-by", "-3"], [1, 1]),
        (&["--to-datetime", minute_ago], [0, 0]),
        (&["--to-datetime", "2999-01-01T00:00:00+02:00"], [10, 10]),
    ];
    for (how, expected) in cases {
        let before = committed(&broker, "g");
        let mut args = vec!["group", "reset-offsets", "g", "--topic", "r"];
        args.extend_from_slice(how);
        let plan = broker.ok(&args);
        assert!(plan.contains("dry run: nothing changed; add --execute to apply this plan"), "{how:?}: {plan}");
        let row: Vec<&str> = plan.lines().find(|l| l.starts_with("r ")).unwrap().split_whitespace().collect();
        let current = before[0].as_u64().map_or("-".to_string(), |c| c.to_string());
        assert_eq!(row[1..4], ["0", current.as_str(), expected[0].to_string().as_str()], "{how:?}: {plan}");
        assert_eq!(committed(&broker, "g"), before, "{how:?}: the dry run wrote nothing");
        args.push("--execute");
        let done = broker.ok(&args);
        assert!(done.contains("reset the offsets of group 'g' on topic 'r'"), "{done}");
        assert_eq!(committed(&broker, "g"), expected.map(Value::from).to_vec(), "{how:?}");
    }
    let plan = broker.ok(&["group", "reset-offsets", "g", "-t", "r", "--to-offset", "99", "--output", "json"]);
    let v: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!((v["plan"][0]["new"].as_u64(), v["plan"][0]["clamped"].as_bool()), (Some(10), Some(true)));
    // No strategy: clap's usage error lists the choices.
    let out = broker.sluice(&["group", "reset-offsets", "g", "-t", "r"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("required arguments") && stderr.contains("--to-datetime <RFC3339>"), "{stderr}");

    // With a live member: refused, naming it.
    let mut m = broker.member("r", "g", 0);
    wait_for(&broker, "g", Duration::from_secs(20), |o| o.contains_key(&m.client_id()));
    let member_id = broker.describe("g")["members"][0]["member_id"].as_str().unwrap().to_string();
    for args in
        [&["group", "reset-offsets", "g", "-t", "r", "--to-earliest", "--execute"][..], &["group", "delete", "g"]]
    {
        let line = error_line(&broker.sluice(args).output().unwrap());
        assert_eq!(line, format!("error: group 'g' has 1 live member(s): {member_id}; stop them first"));
    }
    m.stop();
    assert_eq!(broker.ok(&["group", "delete", "g"]), "deleted group 'g' (2 committed offsets)\n");
    assert_eq!(broker.ok(&["group", "list"]), "GROUP  STATE  MEMBERS\n");
    let line = error_line(&broker.sluice(&["group", "delete", "g"]).output().unwrap());
    assert_eq!(line, "error: group 'g' does not exist");
}
