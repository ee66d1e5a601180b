//! A network partition on real processes: the leader of a replicated partition (RF 3,
//! min ISR 2) of `sluice dev --brokers 3` is cut off from the controller and from every
//! connection to it (clients, followers), by proxies on those links (`LinkProxy`: open
//! connections go silent, new ones hang). It stops acknowledging (it fences itself when
//! its controller session runs out; `acks=all` cannot complete without its followers
//! anyway), the controller elects a follower, and the load moves there. What the
//! isolated leader accepted with `acks=1` after the cut was never replicated; after the
//! heal it truncates it, follows the new leader and rejoins the ISR. `sluice verify`
//! finds every `acks=all` acknowledged record.
//!
//! How the links are cut: `--broker-bin` is a wrapper script that starts the real
//! `sluice-broker` with `--controller` pointing at a per-broker proxy to the controller
//! and `--advertised-address` at a per-broker proxy in front of its gRPC port, so every
//! other process reaches it only through that proxy. (Its own outgoing connections to
//! other brokers are not cut; it leads the only partition and fetches from nobody.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

mod common;

use common::{dev_cluster::*, link_proxy::LinkProxy};
use serde_json::Value;
use sluice_client::{Client, ClientError, proto};

/// A port `p` with `p`, `p + 2` and `p + 4` free on 127.0.0.1 (the dev cluster's brokers
/// listen on its --listen port + 2i).
fn free_base_port() -> u16 {
    for _ in 0..100 {
        let p = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if p < 60000 && (1..=2).all(|i| TcpListener::bind(("127.0.0.1", p + 2 * i)).is_ok()) {
            return p;
        }
    }
    panic!("no three free ports two apart");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `--broker-bin` that replaces `--controller X` with `$SLUICE_TEST_CONTROLLER_<id>` and
/// adds `--advertised-address $SLUICE_TEST_ADVERTISED_<id>`.
fn wrapper(dir: &std::path::Path, real: &std::path::Path) -> std::path::PathBuf {
    let script = format!(
        r#"#!/usr/bin/env bash
id=""; prev=""
for a in "$@"; do [ "$prev" = "--broker-id" ] && id="$a"; prev="$a"; done
out=(); skip=0
for a in "$@"; do
  if [ $skip = 1 ]; then skip=0; continue; fi
  if [ "$a" = "--controller" ]; then skip=1; continue; fi
  out+=("$a")
done
c="SLUICE_TEST_CONTROLLER_$id"; g="SLUICE_TEST_ADVERTISED_$id"
exec "{}" "${{out[@]}}" --controller "${{!c}}" --advertised-address "${{!g}}"
"#,
        real.display()
    );
    let path = dir.join("broker-wrapper.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn batch(value: &str) -> bytes::Bytes {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut b = sluice_core::BatchBuilder::default();
    b.push(now, None, Some(value.as_bytes()), &[]);
    b.finish().unwrap()
}

/// One raw Produce of `value` to partition 0 of `topic` straight at `addr` (no routing).
async fn produce_at(addr: &str, topic: &str, value: &str, acks: proto::Acks) -> Result<Option<u64>, ClientError> {
    let client = Client::connect(addr).await?;
    let req = proto::ProduceRequest {
        topic: topic.into(),
        partition: 0,
        acks: acks as i32,
        batch: batch(value),
        ..Default::default()
    };
    let mut raw = client.raw();
    match tokio::time::timeout(Duration::from_secs(5), raw.produce(req)).await {
        Ok(r) => Ok(r.map_err(ClientError::from)?.into_inner().base_offset),
        Err(_) => Err(ClientError::Timeout(Duration::from_secs(5))),
    }
}

#[test]
fn an_isolated_leader_stops_acknowledging_a_new_leader_takes_over_and_it_rejoins_after_the_heal() {
    let Some(bin) = broker_bin() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let controller: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Per broker: a proxy on its link to the controller, one in front of its gRPC port.
    let to_controller: Vec<LinkProxy> = (0..3).map(|_| LinkProxy::start(controller)).collect();
    let inbound: Vec<LinkProxy> =
        (0..3u16).map(|i| LinkProxy::start(format!("127.0.0.1:{}", base + 2 * i).parse().unwrap())).collect();
    let mut env = Vec::new();
    for i in 0..3 {
        env.push((format!("SLUICE_TEST_CONTROLLER_{i}"), to_controller[i].addr.to_string()));
        env.push((format!("SLUICE_TEST_ADVERTISED_{i}"), inbound[i].addr.to_string()));
    }
    let at = Listen { grpc: format!("127.0.0.1:{base}"), controller: controller.to_string() };
    let c = DevCluster::start_with(3, &wrapper(scratch.path(), &bin), &[], &at, &env);
    c.ok(0, &["topic", "create", "cut", "-r", "3", "--config", "min.insync.replicas=2"]);
    let p = full_isr(&c, "cut");
    let leader = p["leader"].as_i64().unwrap() as i32;
    let epoch = p["leader_epoch"].as_i64().unwrap();
    let follower = (0..3).find(|b| *b != leader).unwrap();
    let l = leader as usize;
    let direct = c.brokers[&leader].grpc.clone();
    println!("cut-0: leader {leader} at epoch {epoch}; its gRPC {direct} is reached through {}", inbound[l].addr);

    // The acks=all load, bootstrapped at a follower (through its proxy).
    let state = c.dir.path().join("cut.state");
    let bootstrap = inbound[follower as usize].addr.to_string();
    let mut verify = common::verify::Background::start(
        &bootstrap,
        "cut",
        &state,
        &["--rate", "100", "--duration", "900s", "--delivery-timeout-ms", "120000"],
    );
    verify.wait_for_acked(100, Duration::from_secs(60));

    // Cut the leader off. Straight at its own port it still takes an acks=1 write for a
    // moment (it has not fenced itself yet); no follower can fetch it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t0 = Instant::now();
    inbound[l].cut();
    to_controller[l].cut();
    let stray = rt.block_on(produce_at(&direct, "cut", "stray-acks-1", proto::Acks::Leader));
    println!("acks=1 straight at the isolated leader right after the cut: {stray:?}");

    // A follower is elected, at a higher epoch; the load goes on there.
    let others: Vec<i32> = (0..3).filter(|b| *b != leader).collect();
    let after = wait_for("a new leader among the others", &c, || {
        let all: Vec<Value> = others.iter().filter_map(|b| c.partition0(*b, "cut")).collect();
        let l0 = all.first()?["leader"].as_i64()?;
        (all.len() == 2 && l0 >= 0 && l0 != i64::from(leader) && all.iter().all(|p| p["leader"] == all[0]["leader"]))
            .then(|| all[0].clone())
    });
    println!(
        "new leader {} at epoch {} after {} ms: {after}",
        after["leader"],
        after["leader_epoch"],
        t0.elapsed().as_millis()
    );
    assert!(after["leader_epoch"].as_i64().unwrap() > epoch, "{after}");
    assert!(!ids(&after["isr"]).contains(&i64::from(leader)), "the isolated broker left the ISR: {after}");
    let acked = verify.acked_so_far();
    verify.wait_for_acked(acked + 100, Duration::from_secs(60));

    // The isolated broker no longer acknowledges anything as leader.
    std::thread::sleep(Duration::from_millis(SESSION_MS));
    let refused = rt.block_on(produce_at(&direct, "cut", "refused-acks-all", proto::Acks::All));
    println!("acks=all straight at the isolated broker {} ms after the cut: {refused:?}", t0.elapsed().as_millis());
    let err = refused.expect_err("an isolated broker acknowledged an acks=all write");
    assert_eq!(err.kind(), Some(proto::ErrorCode::NotLeader), "{err}");

    // Heal: it learns the new leader, truncates what was never committed, catches up
    // and rejoins the ISR.
    let t1 = Instant::now();
    inbound[l].heal();
    to_controller[l].heal();
    let healed = wait_for("the healed broker back in the ISR", &c, || {
        let p = c.partition0(others[0], "cut")?;
        (ids(&p["isr"]).len() == 3).then_some(p)
    });
    println!("healed: back in the ISR after {} ms: {healed}", t1.elapsed().as_millis());
    verify.finish_and_check(&bootstrap, "cut", 100, Duration::from_secs(60), 300);

    // Every replica holds the same log: the stray acks=1 record is nowhere.
    let ends = wait_for("every replica at the same log end", &c, || {
        let ends: Vec<i64> =
            (0..3).filter_map(|b| c.partition0(b, "cut").and_then(|p| p["log_end_offset"].as_i64())).collect();
        (ends.len() == 3 && ends.iter().all(|e| *e == ends[0])).then_some(ends)
    });
    let n = ends[0].to_string();
    let all = c.ok(leader, &["consume", "cut", "--partition", "0", "--from-beginning", "--count", &n]);
    let stray_kept = all.lines().any(|l| l == "stray-acks-1");
    println!("log ends {ends:?}; the stray acks=1 record kept: {stray_kept}");
    if stray.is_ok() {
        assert!(!stray_kept, "the isolated leader's uncommitted acks=1 record survived the heal");
    }
    assert!(!all.lines().any(|l| l == "refused-acks-all"), "a refused write appeared");
}
