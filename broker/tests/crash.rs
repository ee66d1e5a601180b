//! Crash safety with real processes: `sluice-broker` is killed with SIGKILL while
//! producers are writing with durability=always, restarted on the same data directory,
//! and every acknowledged record must be there with its original offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{BrokerProcess, connect, free_port};
use sluice_client::{
    Admin, AutoOffsetReset, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset,
};

const PARTITIONS: u32 = 3;

/// Reads every record of every partition: (partition, offset) -> value.
async fn read_everything(addr: &str) -> BTreeMap<(u32, u64), String> {
    let client = connect(addr).await;
    let admin = Admin::new(client.clone());
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (hw, _) = admin.list_offset("crash", p, sluice_client::proto::OffsetSpec::Latest, 0).await.unwrap();
        let mut c = Consumer::new(
            client.clone(),
            ConsumerConfig { auto_offset_reset: AutoOffsetReset::None, check_crcs: true, ..Default::default() },
        );
        c.assign("crash", p, StartOffset::Earliest).await.unwrap();
        while c.position("crash", p).unwrap() < hw {
            for r in c.poll(Duration::from_secs(5)).await.expect("no torn or corrupt batch") {
                let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                assert!(out.insert((p, r.offset), value).is_none(), "offset {p}@{} returned twice", r.offset);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let args = ["--durability", "always"];
    let mut broker = BrokerProcess::spawn(&data, port, &args);
    broker.wait_ready();
    let addr = broker.addr.clone();
    Admin::new(connect(&addr).await).create_topic("crash", PARTITIONS, BTreeMap::new()).await.unwrap();

    // Everything acknowledged so far, across all cycles: (partition, offset) -> value.
    let acked: Arc<Mutex<HashMap<(u32, u64), String>>> = Arc::default();
    let mut next_value = 0u64;
    for cycle in 0..3 {
        let producer = Producer::new(
            connect(&addr).await,
            ProducerConfig {
                linger: Duration::from_millis(1),
                batch_size: 4 * 1024,
                delivery_timeout: Duration::from_millis(500),
                ..Default::default()
            },
        );
        // Produce continuously in the background, remembering acknowledgements.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
            let start = next_value;
            tokio::spawn(async move {
                let mut v = start;
                let mut pending = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let value = format!("c{cycle}-v{v}");
                    let Ok(d) = producer
                        .send(ProducerRecord::new("crash").partition((v % 3) as u32).value(value.clone()))
                        .await
                    else {
                        break;
                    };
                    let acked = acked.clone();
                    pending.push(tokio::spawn(async move {
                        if let Ok(m) = d.await {
                            acked.lock().unwrap().insert((m.partition, m.offset.unwrap()), value);
                        }
                    }));
                    v += 1;
                    if v.is_multiple_of(200) {
                        tokio::task::yield_now().await;
                    }
                }
                for p in pending {
                    p.await.unwrap();
                }
                v
            })
        };
        // Let it write until some records of this cycle are acknowledged (polling: a fixed
        // sleep may see none on a loaded machine), then kill the broker with SIGKILL
        // mid-stream.
        let before = acked.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 50 && !writer.is_finished() {
            assert!(Instant::now() < deadline, "cycle {cycle}: fewer than 50 records acknowledged in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        broker.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        next_value = writer.await.unwrap();
        let acked_now = acked.lock().unwrap().len();
        assert!(acked_now > 0, "cycle {cycle}: some records were acknowledged before the kill");

        // Restart on the same data directory and check every acknowledged record.
        broker = BrokerProcess::spawn(&data, port, &args);
        broker.wait_ready();
        let stored = read_everything(&addr).await;
        for ((p, o), v) in acked.lock().unwrap().iter() {
            assert_eq!(stored.get(&(*p, *o)), Some(v), "cycle {cycle}: acknowledged record {p}@{o} lost or changed");
        }
        // Offsets are dense from 0 in every partition: no gaps, no reuse.
        for p in 0..PARTITIONS {
            let offsets: Vec<u64> = stored.keys().filter(|(pp, _)| *pp == p).map(|(_, o)| *o).collect();
            assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p} has gaps");
        }
        println!("cycle {cycle}: {acked_now} acknowledged records, {} stored, all acknowledged present", stored.len());
    }
    // After the last restart, new records continue the offsets.
    let producer = Producer::new(connect(&addr).await, ProducerConfig::default());
    let before = read_everything(&addr).await.keys().filter(|(p, _)| *p == 0).count() as u64;
    let m = producer.send(ProducerRecord::new("crash").partition(0).value("after")).await.unwrap().await.unwrap();
    assert_eq!(m.offset, Some(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_sled_snapshot_left_by_a_crash_is_removed_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut broker = BrokerProcess::spawn(&data, port, &["--durability", "always"]);
    broker.wait_ready();
    let client = connect(&broker.addr).await;
    Admin::new(client.clone()).create_topic("crash", PARTITIONS, BTreeMap::new()).await.unwrap();
    let producer = Producer::new(client, ProducerConfig::default());
    for i in 0..300u32 {
        producer.send(ProducerRecord::new("crash").partition(i % PARTITIONS).value(i.to_string())).await.unwrap();
    }
    producer.flush().await;
    broker.kill9();
    // What a kill during sled's Db::open can leave behind: an empty snapshot being written.
    let planted = data.join("db").join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&planted, b"").unwrap();

    let mut broker = BrokerProcess::spawn(&data, port, &[]);
    broker.wait_ready();
    let stored = read_everything(&broker.addr).await;
    assert_eq!(stored.len(), 300, "every record is still there");
    assert!(!planted.exists(), "the incomplete snapshot was removed");
    assert!(broker.stderr().contains("removed incomplete sled snapshot"), "{}", broker.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_in_use_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = BrokerProcess::spawn(&data, free_port(), &[]);
    first.wait_ready();
    let mut second = BrokerProcess::spawn(&data, free_port(), &[]);
    let status = second.child.wait().unwrap();
    assert!(!status.success());
    let err = second.stderr();
    assert!(
        err.contains(&format!(
            "data directory {}: is already in use by another broker (its broker.lock is held); stop that broker or choose another --data-dir",
            data.display()
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_that_is_not_writable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ro");
    std::fs::create_dir(&data).unwrap();
    // Root ignores permission bits, so as root use a read-only mount instead.
    let is_root = unsafe_free_is_root();
    let mounted = if is_root {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", data.to_str().unwrap()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            println!("SKIP: running as root and cannot mount a read-only tmpfs here");
            return;
        }
        true
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
        false
    };
    let mut broker = BrokerProcess::spawn(&data, free_port(), &[]);
    let status = broker.child.wait().unwrap();
    let err = broker.stderr();
    if mounted {
        let _ = std::process::Command::new("umount").arg(&data).status();
    }
    assert!(!status.success());
    assert!(err.contains(&format!("data directory {}: is not writable", data.display())), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_old_format_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("old");
    // What a format-1 broker left: a database, no format marker.
    std::fs::create_dir_all(data.join("db")).unwrap();
    std::fs::write(data.join("db").join("conf"), b"written by an old broker").unwrap();
    let mut broker = BrokerProcess::spawn(&data, free_port(), &[]);
    let status = broker.child.wait().unwrap();
    assert!(!status.success());
    let err = broker.stderr();
    assert!(
        err.contains(&format!(
            "data directory {}: holds Sluice format 1 batches; this broker stores Kafka RecordBatch v2 in segment \
             files (format 3): move it away or start with an empty --data-dir",
            data.display()
        )),
        "{err}"
    );
    assert!(!data.join("format-version").exists(), "the old directory is not marked");
    assert_eq!(std::fs::read(data.join("db").join("conf")).unwrap(), b"written by an old broker");

    // Format 2 (batches inside sled) is refused the same way.
    let two = dir.path().join("two");
    std::fs::create_dir_all(two.join("db")).unwrap();
    std::fs::write(two.join("format-version"), "2\n").unwrap();
    let mut broker = BrokerProcess::spawn(&two, free_port(), &[]);
    assert!(!broker.child.wait().unwrap().success());
    let err = broker.stderr();
    assert!(
        err.contains(&format!(
            "data directory {}: holds Sluice data format 2 (record batches inside the sled database); this broker \
             stores them in segment files (format 3): move it away or start with an empty --data-dir",
            two.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(two.join("format-version")).unwrap(), "2\n", "left alone");

    // A new directory is marked, and a restart on it is accepted.
    let fresh = dir.path().join("new");
    let mut broker = BrokerProcess::spawn(&fresh, free_port(), &[]);
    broker.wait_ready();
    assert_eq!(std::fs::read_to_string(fresh.join("format-version")).unwrap(), "3\n");
    broker.kill9();
    let mut again = BrokerProcess::spawn(&fresh, free_port(), &[]);
    again.wait_ready();
}

fn unsafe_free_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
