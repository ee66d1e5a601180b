#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sluice verify` against a real `sluice dev` process: a clean run, records removed
//! behind its back, duplicates, and a `kill -9` of the broker in the middle of a run.

use std::time::Duration;

mod common;

use common::{
    DevBroker,
    verify::{self, Background},
};

/// Generous: the whole suite runs in parallel on 2 cores.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_clean_run_counts_nothing_lost_and_exits_0() {
    let broker = DevBroker::start();
    let out = verify::run(&broker.addr, "clean", &["--rate", "2000", "--count", "3000", "--partitions", "3"]);
    let c = out.assert_clean(3000);
    assert_eq!((c.sent, c.failed, c.unacked_seen, c.read, c.other), (3000, 0, 0, 3000, 0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "acked=3000 lost=0 duplicates=0 reordered=0 offsets_reused=0",
            "sent=3000 failed=0 unacked_seen=0 read=3000 other=0"
        ]
    );

    // Keys, padded values and JSON; the records of the first run are someone else's.
    let out = verify::run(
        &broker.addr,
        "clean",
        &["--rate", "1000", "--count", "500", "--keys", "7", "--value-bytes", "200", "--json"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["clean"], true);
    assert_eq!((v["acked"].as_u64(), v["lost"].as_u64(), v["other"].as_u64()), (Some(500), Some(0), Some(3000)));
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(3));
}

#[test]
fn records_removed_behind_its_back_are_lost_and_exit_1() {
    let broker = DevBroker::start();
    let state = broker.dir.path().join("removed.json");
    let produced = verify::run(
        &broker.addr,
        "removed",
        &["--produce-only", "--state", state.to_str().unwrap(), "--rate", "2000", "--count", "1000"],
    );
    assert_eq!(produced.code, Some(0), "{}", produced.stderr);
    assert!(produced.stdout.contains("acked=1000"), "{}", produced.stdout);
    verify::check(&broker.addr, "removed", &state).assert_clean(1000);

    // Delete the topic and create it again, empty, with a few records of someone else.
    broker.ok(&["topic", "delete", "removed"]);
    broker.ok(&["topic", "create", "removed", "--partitions", "3"]);
    let out =
        broker.sluice(&["produce", "removed", "--partition", "0"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut child = out;
        child.stdin.take().unwrap().write_all(b"a\nb\nc\n").unwrap();
        assert!(child.wait().unwrap().success());
    }
    let out = verify::check(&broker.addr, "removed", &state);
    let c = out.counts();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!((c.acked, c.lost, c.duplicates, c.reordered, c.offsets_reused), (1000, 1000, 0, 0, 0), "{}", out.stdout);
    assert_eq!((c.read, c.other), (3, 3));
    assert!(out.stderr.contains("error: verification failed: acked=1000 lost=1000"), "{}", out.stderr);
    assert!(out.stderr.contains("verify: lost: sequence 0 acknowledged at partition 0 offset 0"), "{}", out.stderr);

    // The topic gone altogether: everything acknowledged is lost too.
    broker.ok(&["topic", "delete", "removed"]);
    let out = verify::check(&broker.addr, "removed", &state);
    assert_eq!((out.code, out.counts().lost), (Some(1), 1000), "{}", out.stderr);
}

#[test]
fn a_second_run_of_the_same_producer_is_counted_as_duplicates() {
    let broker = DevBroker::start();
    let dir = broker.dir.path();
    for run in ["first", "second"] {
        let state = dir.join(format!("{run}.json"));
        let out = verify::run(
            &broker.addr,
            "twice",
            &[
                "--produce-only",
                "--state",
                state.to_str().unwrap(),
                "--producer",
                "same",
                "--rate",
                "2000",
                "--count",
                "600",
            ],
        );
        assert_eq!(out.code, Some(0), "{run}: {}", out.stderr);
    }
    let out = verify::check(&broker.addr, "twice", &dir.join("second.json"));
    let c = out.counts();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    // Every sequence twice; the second copies are where the second run's acks say.
    assert_eq!((c.acked, c.lost, c.duplicates, c.reordered, c.offsets_reused), (600, 0, 600, 0, 0), "{}", out.stdout);
    assert_eq!(c.read, 1200);
}

#[test]
fn kill_9_of_an_always_durable_broker_mid_run_loses_nothing_acknowledged() {
    let mut broker = DevBroker::start();
    broker.ok(&["topic", "create", "crash", "--partitions", "3", "--config", "durability=always"]);
    let state = broker.dir.path().join("crash.json");
    // 6000 records at 500/s: about 12 s, with the kill early on.
    let mut run = Background::start(&broker.addr, "crash", &state, &["--rate", "500", "--count", "6000"]);
    run.wait_for_acked(500, LIMIT);
    broker.kill9();
    let killed_at = run.acked_so_far();
    broker.restart();
    let produced = run.wait(LIMIT);
    assert_eq!(produced.code, Some(0), "{}", produced.stderr);
    println!("killed after about {killed_at} acknowledgements; producer: {}", produced.stdout.trim());
    let out = verify::check(&broker.addr, "crash", &state);
    let c = out.assert_clean(1000);
    println!("after kill -9 and restart: {c:?}");
}
