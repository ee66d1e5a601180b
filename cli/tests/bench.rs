#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The consumer-group workloads of `sluice bench`, run tiny: `bench group` against a
//! `sluice dev` broker (which it must leave as it found it), `bench rebalance` against
//! its embedded broker. Both reports are read back from their JSON.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;

use common::{DevBroker, SLUICE};

fn json_report(out: Output) -> Value {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench failed:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON report ({e}):\n{stdout}\n{stderr}"))
}

fn f64_of(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn bench_group_reads_everything_manually_then_as_a_group_and_cleans_up() {
    let broker = DevBroker::start();
    let args = ["bench", "group", "--count", "3000", "--partitions", "4", "--consumers", "2", "--output", "json"];
    let r = json_report(broker.sluice(&args).output().unwrap());
    assert_eq!(r["workload"], "group");
    assert_eq!(r["target"]["kind"], "external");
    assert_eq!((r["partitions"].as_u64(), r["record_size"].as_u64()), (Some(4), Some(100)));
    assert_eq!(r["fill"]["filled_by_bench"], true);
    assert_eq!(r["fill"]["records"], 3000);
    for phase in ["manual", "group"] {
        let p = &r[phase];
        assert_eq!(p["consumers"], 2, "{phase}");
        assert_eq!(p["records"], 3000, "{phase}: every record, once");
        assert!(p["records_read"].as_u64().unwrap() >= 3000, "{phase}: {p}");
        assert!(p["bytes_read"].as_u64().unwrap() >= 300_000, "{phase}: {p}");
        assert!(f64_of(&p["elapsed_s"], "elapsed_s") > 0.0, "{phase}: {p}");
        assert!(f64_of(&p["records_per_sec"], "records_per_sec") > 0.0, "{phase}: {p}");
    }
    let pct = f64_of(&r["group_vs_manual_pct"], "group_vs_manual_pct");
    assert!(pct.is_finite() && pct > 0.0, "{pct}");
    assert_eq!((r["strategy"].as_str(), r["session_timeout_ms"].as_u64()), (Some("cooperative-sticky"), Some(600)));
    assert!(r["broker"].is_null(), "no embedded-broker figures for a --broker run");
    // The topic and the group's offsets are gone.
    let topics = broker.ok(&["topic", "list"]);
    assert!(topics.starts_with("TOPIC") && !topics.contains("bench-"), "{topics}");
    assert_eq!(broker.ok(&["group", "list"]), "GROUP  STATE  MEMBERS\n");
}

#[test]
fn bench_rebalance_times_each_join_and_leave() {
    let out = Command::new(SLUICE)
        .args(["bench", "rebalance", "--members", "3", "--partitions", "6", "--rounds", "2", "--output", "json"])
        .env_remove("SLUICE_BROKER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = json_report(out);
    assert_eq!(r["workload"], "rebalance");
    assert_eq!(r["target"]["kind"], "embedded");
    assert_eq!((r["members"].as_u64(), r["partitions"].as_u64()), (Some(3), Some(6)));
    // The coordinator asks for a third of the 3 s session timeout.
    assert_eq!(r["heartbeat_interval_ms"], 1000);
    let initial = f64_of(&r["initial_s"], "initial_s");
    assert!(initial > 0.0 && initial < 30.0, "{initial}");
    let rounds = r["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        for t in ["join_s", "leave_s"] {
            let s = f64_of(&round[t], t);
            assert!(s > 0.0 && s < 30.0, "{t} = {s}");
        }
    }
    for what in ["join", "leave"] {
        let (min, max) = (f64_of(&r[what]["min_s"], "min_s"), f64_of(&r[what]["max_s"], "max_s"));
        assert!(min <= f64_of(&r[what]["mean_s"], "mean_s") && min <= max, "{what}: {}", r[what]);
    }
    assert!(r["broker"]["process_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{}", r["broker"]);
}
