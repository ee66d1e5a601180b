#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the `sluice` binary: each test starts `sluice dev` as a real
//! process on a free port and runs commands against it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use sluice_client::partitioner::partition_for_key;

mod common;

use common::{DevBroker, SLUICE};

/// Asserts a failed command printed exactly one line, `error: ...`, and exit code 1;
/// returns that line.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr is not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    stderr.trim_end().to_string()
}

fn describe_json(broker: &DevBroker, topic: &str) -> serde_json::Value {
    serde_json::from_str(&broker.ok(&["topic", "describe", topic, "--output", "json"])).unwrap()
}

#[test]
fn hundred_thousand_lines_round_trip_in_partition_order() {
    const LINES: usize = 100_000;
    const PARTITIONS: u32 = 3;
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "events", "--partitions", "3"]);

    // Distinct lines; keys repeat so that each key's records must stay in order.
    let input = broker.dir.path().join("input.txt");
    let mut expected: Vec<(String, String)> = Vec::with_capacity(LINES);
    let mut w = BufWriter::new(File::create(&input).unwrap());
    for i in 0..LINES {
        let (key, value) = (format!("user-{}", i % 997), format!("event-{i}"));
        writeln!(w, "{key},{value}").unwrap();
        expected.push((key, value));
    }
    w.flush().unwrap();
    drop(w);

    let produced = broker
        .sluice(&["produce", "events", "--key-separator", ","])
        .stdin(File::open(&input).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&produced.stderr);
    assert!(produced.status.success(), "produce failed: {stderr}");
    assert!(stderr.contains(&format!("produced {LINES} records to events")), "{stderr}");

    let out = broker.ok(&[
        "consume",
        "events",
        "--from-beginning",
        "--count",
        &LINES.to_string(),
        "--format",
        "key-value",
        "--timeout-ms",
        "30000",
    ]);
    let consumed: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or_else(|| panic!("not key<TAB>value: {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(consumed.len(), LINES);

    let mut got_sorted = consumed.clone();
    got_sorted.sort();
    let mut want_sorted = expected.clone();
    want_sorted.sort();
    assert!(got_sorted == want_sorted, "consumed lines differ from the input lines");

    // Each partition's records come out in input order.
    let (want, got) = (by_partition(&expected, PARTITIONS), by_partition(&consumed, PARTITIONS));
    assert_eq!(want.len(), PARTITIONS as usize, "keys should spread over every partition");
    for (p, values) in &want {
        assert!(got.get(p) == Some(values), "partition {p} is out of input order");
    }

    // The broker agrees on where the records went.
    let d = describe_json(&broker, "events");
    for (p, values) in &want {
        assert_eq!(d["partitions"][*p as usize]["high_watermark"].as_u64(), Some(values.len() as u64));
    }
}

#[test]
fn unknown_topic_is_one_error_line_naming_it() {
    let broker = DevBroker::start();
    for args in [
        &["produce", "nope"][..],
        &["consume", "nope", "--from-beginning"],
        &["topic", "describe", "nope"],
        &["topic", "delete", "nope"],
    ] {
        let line = error_line(&broker.sluice(args).output().unwrap());
        assert!(line.contains("unknown topic 'nope'"), "{args:?}: {line}");
    }
}

#[test]
fn create_reports_invalid_names_and_existing_topics() {
    let broker = DevBroker::start();
    let line = error_line(&broker.sluice(&["topic", "create", "a/b"]).output().unwrap());
    assert!(line.contains("invalid topic name 'a/b'"), "{line}");
    assert!(line.contains("not allowed (use letters, digits, '.', '_' and '-')"), "{line}");

    broker.ok(&["topic", "create", "twice", "--partitions", "2"]);
    let line = error_line(&broker.sluice(&["topic", "create", "twice", "--partitions", "2"]).output().unwrap());
    assert!(line.contains("topic 'twice' already exists"), "{line}");

    let line = error_line(&broker.sluice(&["topic", "create", "cfg", "--config", "colour=red"]).output().unwrap());
    assert!(line.contains("colour"), "{line}");

    // Without --partitions the CLI asks for 1; the broker refuses a count of 0.
    assert_eq!(broker.ok(&["topic", "create", "one"]), "created topic 'one' with 1 partition(s)\n");
    // acks=0: the broker reports no offsets, the CLI still counts every record delivered.
    let input = broker.dir.path().join("two.txt");
    std::fs::write(&input, "a\nb\n").unwrap();
    let out = broker.sluice(&["produce", "one", "--acks", "0"]).stdin(File::open(&input).unwrap()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("produced 2 records to one"), "{stderr}");
    assert_eq!(describe_json(&broker, "one")["partitions"][0]["log_end_offset"].as_u64(), Some(2));
    let line = error_line(&broker.sluice(&["topic", "create", "zero", "--partitions", "0"]).output().unwrap());
    assert_eq!(line, "error: invalid request: a topic needs at least 1 partition (partitions is 0 or unset)");
}

#[test]
fn unreachable_broker_is_one_error_line() {
    let out = Command::new(SLUICE)
        .args(["--broker", "127.0.0.1:1", "topic", "list"])
        .env_remove("SLUICE_BROKER")
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(line.starts_with("error: cannot connect to broker at 127.0.0.1:1: "), "{line}");
    // The address also comes from the environment.
    let out = Command::new(SLUICE).args(["topic", "list"]).env("SLUICE_BROKER", "127.0.0.1:1").output().unwrap();
    assert!(error_line(&out).contains("127.0.0.1:1"));
}

#[test]
fn topic_admin_round_trip_with_json_output() {
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "orders", "--partitions", "4", "--config", "retention.ms=60000"]);

    let d = describe_json(&broker, "orders");
    assert_eq!(d["name"], "orders");
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(4));
    assert_eq!(d["config"]["retention.ms"], "60000");
    assert_eq!(d["overridden"], serde_json::json!(["retention.ms"]));

    let text = broker.ok(&["topic", "describe", "orders"]);
    assert!(text.contains("HIGH WATERMARK"), "{text}");
    assert!(text.contains("*  retention.ms"), "{text}");

    let list: serde_json::Value = serde_json::from_str(&broker.ok(&["topic", "list", "--output", "json"])).unwrap();
    assert_eq!(list[0]["name"], "orders");
    assert_eq!(list[0]["partitions"], 4);
    assert!(broker.ok(&["topic", "list"]).lines().any(|l| l.starts_with("orders ")));

    // An empty value resets a key to the broker default.
    broker.ok(&["topic", "alter", "orders", "--config", "retention.ms=", "--config", "durability=always"]);
    let d = describe_json(&broker, "orders");
    assert_eq!(d["overridden"], serde_json::json!(["durability"]));
    assert_eq!(d["config"]["durability"], "always");

    broker.ok(&["topic", "delete", "orders"]);
    let line = error_line(&broker.sluice(&["topic", "describe", "orders"]).output().unwrap());
    assert!(line.contains("unknown topic 'orders'"), "{line}");
}

#[test]
fn consume_one_partition_from_an_offset_and_stop_when_idle() {
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "p", "--partitions", "2"]);
    let input = broker.dir.path().join("ten.txt");
    std::fs::write(&input, (0..10).map(|i| format!("v{i}\n")).collect::<String>()).unwrap();
    let out = broker
        .sluice(&["produce", "p", "--partition", "1", "--acks", "1"])
        .stdin(File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = broker.ok(&["consume", "p", "--partition", "1", "--offset", "7", "--timeout-ms", "500"]);
    assert_eq!(out, "v7\nv8\nv9\n");
    let json = broker.ok(&["consume", "p", "--from-beginning", "--count", "1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!((v["partition"].as_u64(), v["offset"].as_u64(), v["value"].as_str()), (Some(1), Some(0), Some("v0")));
    assert!(v["key"].is_null());
    // From the end (the default) there is nothing new.
    assert_eq!(broker.ok(&["consume", "p", "--timeout-ms", "300"]), "");

    let line = error_line(&broker.sluice(&["consume", "p", "--partition", "5"]).output().unwrap());
    assert!(line.contains("unknown partition 5 of topic 'p'"), "{line}");
    let line = error_line(&broker.sluice(&["produce", "p", "--partition", "2"]).output().unwrap());
    assert!(line.contains("unknown partition 2 of topic 'p'"), "{line}");
}

#[test]
fn produce_refuses_a_line_without_the_key_separator() {
    let broker = DevBroker::start();
    broker.ok(&["topic", "create", "k"]);
    let input = broker.dir.path().join("bad.txt");
    std::fs::write(&input, "a,1\nno separator\n").unwrap();
    let out =
        broker.sluice(&["produce", "k", "--key-separator", ","]).stdin(File::open(&input).unwrap()).output().unwrap();
    let line = error_line(&out);
    assert!(line.contains("input line 2: no key separator ','"), "{line}");
}

#[test]
fn dev_stops_gracefully_on_sigterm() {
    let mut broker = DevBroker::start();
    let pid = broker.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sluice dev did not stop; log:\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status}; log:\n{}", broker.log());
}

#[test]
fn dev_demo_shows_records_produced_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(SLUICE)
        .args(["dev", "--demo", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--kafka-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        text.push_str(&line);
        if line.starts_with("Sluice works.") {
            break;
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("Demo: produced to topic 'demo' (3 partitions), then read back:"), "{text}");
    assert!(text.contains("alice  bought a book"), "{text}");
    assert!(text.contains("Sluice works."), "{text}");
}

/// Values per partition, in the order given, with partitions chosen as the producer does.
fn by_partition(lines: &[(String, String)], partitions: u32) -> BTreeMap<u32, Vec<&str>> {
    let mut m: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (k, v) in lines {
        m.entry(partition_for_key(k.as_bytes(), partitions)).or_default().push(v);
    }
    m
}
