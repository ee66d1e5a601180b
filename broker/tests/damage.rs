//! Damage is detected, never silent: a `sluice-broker` process writes a partition,
//! stops, its files are damaged the ways disks and operators damage them, and the next
//! start must refuse with a message naming the partition or file and what to do;
//! `--recover` then truncates to the last valid batch and says how much was dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::{BrokerProcess, connect, free_port};
use sluice_client::{
    Admin, AutoOffsetReset, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset,
};

const RECORDS: u64 = 400;

/// Starts a broker on `data`, writes RECORDS records to `d-0` in many batches, and stops
/// it with SIGTERM (a clean stop: everything flushed and checkpointed).
async fn written(data: &Path) {
    let mut broker = BrokerProcess::spawn(data, free_port(), &["--durability", "always"]);
    broker.wait_ready();
    let client = connect(&broker.addr).await;
    Admin::new(client.clone()).create_topic("d", 1, BTreeMap::new()).await.unwrap();
    let producer = Producer::new(client, ProducerConfig { linger: Duration::ZERO, ..Default::default() });
    for i in 0..RECORDS {
        let d = producer
            .send(ProducerRecord::new("d").partition(0).value(format!("value-{i:05}-{}", "x".repeat(200))))
            .await
            .unwrap();
        if i % 20 == 19 {
            d.await.unwrap();
        }
    }
    producer.flush().await;
    terminate(&mut broker);
}

fn terminate(broker: &mut BrokerProcess) {
    let sent = std::process::Command::new("kill").args(["-TERM", &broker.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = broker.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", broker.stderr());
}

/// Starts a broker that must refuse; returns its log.
fn refused(data: &Path, extra: &[&str]) -> String {
    let mut broker = BrokerProcess::spawn(data, free_port(), extra);
    let status = broker.child.wait().unwrap();
    assert!(!status.success(), "started on damaged storage: {}", broker.stderr());
    broker.stderr()
}

/// Offsets and values stored in d-0.
async fn stored(addr: &str) -> Vec<(u64, String)> {
    let client = connect(addr).await;
    let (hw, _) =
        Admin::new(client.clone()).list_offset("d", 0, sluice_client::proto::OffsetSpec::Latest, 0).await.unwrap();
    let mut c = Consumer::new(
        client,
        ConsumerConfig { auto_offset_reset: AutoOffsetReset::None, check_crcs: true, ..Default::default() },
    );
    c.assign("d", 0, StartOffset::Earliest).await.unwrap();
    let mut out = Vec::new();
    while c.position("d", 0).unwrap() < hw {
        for r in c.poll(Duration::from_secs(5)).await.unwrap() {
            out.push((r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
        }
    }
    out
}

fn segment(data: &Path) -> std::path::PathBuf {
    data.join("d-0").join("00000000000000000000.log")
}

fn what_to_do(err: &str) {
    assert!(err.contains("start the broker with --recover to"), "{err}");
    assert!(err.contains("or restore the data directory from a backup"), "{err}");
}

/// After `--recover`: a prefix of the records, each unchanged, and the drop reported.
async fn recovered_prefix(data: &Path) -> usize {
    let mut broker = BrokerProcess::spawn(data, free_port(), &["--recover"]);
    broker.wait_ready();
    assert!(broker.stderr().contains("--recover:"), "{}", broker.stderr());
    let records = stored(&broker.addr).await;
    assert!(records.len() < RECORDS as usize, "something was dropped");
    for (i, (o, v)) in records.iter().enumerate() {
        assert_eq!(*o, i as u64);
        assert!(v.starts_with(&format!("value-{i:05}-")), "{v}");
    }
    terminate(&mut broker);
    // Recovered for good: a normal start accepts it.
    let mut again = BrokerProcess::spawn(data, free_port(), &[]);
    again.wait_ready();
    assert_eq!(stored(&again.addr).await.len(), records.len());
    records.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_block_near_the_end_is_refused_and_recover_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    written(&data).await;
    let seg = segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 300;
    for b in &mut bytes[at..at + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let err = refused(&data, &[]);
    assert!(err.contains(&format!("damaged log: d-0: {} at byte ", seg.display())), "{err}");
    assert!(err.contains(&format!("but they were flushed up to offset {RECORDS}")), "{err}");
    what_to_do(&err);
    let kept = recovered_prefix(&data).await;
    assert!(kept > 300, "only the damaged tail goes: kept {kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_zeroed_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    written(&data).await;
    let seg = segment(&data);
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len / 2).unwrap();
    let err = refused(&data, &[]);
    assert!(err.contains("damaged log: d-0: "), "{err}");
    assert!(err.contains(&format!("flushed up to offset {RECORDS}")), "{err}");
    what_to_do(&err);

    // Zeroed: the second half of what is left is zeros (a lost write-back).
    let mut bytes = std::fs::read(&seg).unwrap();
    let half = bytes.len() / 2;
    bytes[half..].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let err = refused(&data, &[]);
    assert!(err.contains(&format!("damaged log: d-0: {} at byte ", seg.display())), "{err}");
    let kept = recovered_prefix(&data).await;
    assert!(kept > 0 && kept < RECORDS as usize / 2, "kept {kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    written(&data).await;
    std::fs::remove_file(segment(&data)).unwrap();
    let err = refused(&data, &[]);
    assert!(
        err.contains(&format!(
            "damaged log: d-0: its directory {} holds no segment files, but offsets 0 to {RECORDS} were flushed there",
            data.join("d-0").display()
        )),
        "{err}"
    );
    what_to_do(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_damaged_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    written(&data).await;
    let db = data.join("db");
    let saved = dir.path().join("db.saved");
    std::fs::rename(&db, &saved).unwrap();
    let expected = format!("data directory {}: ", db.display());
    let fix = "the log database is damaged or missing: restore the data directory from a backup";

    // Deleted.
    let err = refused(&data, &[]);
    assert!(
        err.contains(&format!("{expected}it does not exist, but the directory holds partition directories; {fix}")),
        "{err}"
    );

    // Replaced by an empty one (what sled makes of a truncated or zeroed file).
    std::fs::create_dir(&db).unwrap();
    let err = refused(&data, &[]);
    assert!(err.contains(&expected) && err.contains(fix), "{err}");
    std::fs::remove_dir_all(&db).unwrap();

    // A garbage conf.
    copy_dir(&saved, &db);
    std::fs::write(db.join("conf"), b"\x00garbage\xff not a sled config").unwrap();
    let err = refused(&data, &[]);
    assert!(err.contains(&expected) && err.contains(fix), "{err}");
    std::fs::remove_dir_all(&db).unwrap();

    // The original is accepted again, with every record.
    std::fs::rename(&saved, &db).unwrap();
    let mut broker = BrokerProcess::spawn(&data, free_port(), &[]);
    broker.wait_ready();
    assert_eq!(stored(&broker.addr).await.len(), RECORDS as usize);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
