//! `sluice bench rebalance`: `members` simulated members of one group on a topic of many
//! partitions; then, `rounds` times, one more member joins and the oldest leaves. Each
//! time the bench measures how long until the group is stable again: every member owns
//! exactly its target and every partition is owned.
//!
//! A simulated member heartbeats as `GroupConsumer` does — at once after releasing
//! partitions, every 100 ms while reconciling, else at the interval the coordinator
//! asks for — and releases revoked partitions at once, so the figures are those of the
//! coordinator and the protocol, not of record processing. A member the coordinator
//! expired or fenced joins again, as `GroupConsumer` does; the report counts those.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use sluice_client::{Client, ClientError, GroupAdmin, proto as pb};
use sluice_core::Strategy;
use tokio::task::JoinHandle;

use super::{
    args::RebalanceArgs,
    group_report::{RebalanceReport, Round, Spread},
    session::{Session, random_name},
};

/// How often the bench asks the coordinator whether the group is stable.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Heartbeat pace of a member whose assignment is still moving (as `GroupConsumer`).
const RECONCILING_HEARTBEAT: Duration = Duration::from_millis(100);

/// What the members share with the bench.
#[derive(Debug)]
struct Shared {
    client: Client,
    group: String,
    topic: String,
    strategy: Strategy,
    session_timeout_ms: u32,
    /// The heartbeat interval the coordinator asks for (last answer).
    interval_ms: AtomicU32,
    /// Joins after an expiry or a fence.
    rejoins: AtomicU64,
    /// The first member failure, which ends the run.
    failure: Mutex<Option<String>>,
}

/// A running simulated member.
#[derive(Debug)]
struct Member {
    stop: Arc<AtomicBool>,
    id: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the rebalance workload. Returns the report (no payload is written).
pub async fn run(args: &RebalanceArgs, session: &Session) -> anyhow::Result<(RebalanceReport, u64)> {
    let shared = Arc::new(Shared {
        client: Client::connect(&session.addr).await?,
        group: random_name("bench-rebalance"),
        topic: session.topic.clone(),
        strategy: args.strategy,
        session_timeout_ms: args.session_timeout_ms,
        interval_ms: AtomicU32::new(0),
        rejoins: AtomicU64::new(0),
        failure: Mutex::new(None),
    });
    let mut members = Vec::new();
    let outcome = measure(args, session, &shared, &mut members).await;
    for m in &members {
        m.stop.store(true, Ordering::Relaxed);
    }
    for m in members {
        // A member that ends with an error has recorded it in `failure`.
        let _ = m.task.await;
    }
    let (initial, rounds) = outcome?;
    let rejoins = shared.rejoins.load(Ordering::Relaxed);
    let mut notes = vec![
        "a join is timed from the new member's first heartbeat, a leave from the LeaveGroup request; both until the \
         coordinator reports the group Stable with every partition owned"
            .to_string(),
    ];
    if rejoins > 0 {
        notes.push(format!(
            "{rejoins} time(s) the coordinator expired or fenced a member, which joined again: its heartbeats were \
             answered later than the session timeout"
        ));
    }
    let report = RebalanceReport {
        workload: "rebalance",
        target: session.target.clone(),
        topic: session.topic.clone(),
        partitions: session.partitions,
        members: args.members,
        strategy: args.strategy.to_string(),
        session_timeout_ms: args.session_timeout_ms,
        heartbeat_interval_ms: shared.interval_ms.load(Ordering::Relaxed),
        initial_s: initial.as_secs_f64(),
        join: Spread::of(rounds.iter().map(|r| r.join_s)),
        leave: Spread::of(rounds.iter().map(|r| r.leave_s)),
        rounds,
        rejoins,
        broker: None,
        notes,
    };
    Ok((report, 0))
}

/// Forms the group, then runs the rounds; returns the initial time and each round's.
async fn measure(
    args: &RebalanceArgs,
    session: &Session,
    shared: &Arc<Shared>,
    members: &mut Vec<Member>,
) -> anyhow::Result<(Duration, Vec<Round>)> {
    let admin = GroupAdmin::new(shared.client.clone());
    let started = Instant::now();
    for _ in 0..args.members {
        members.push(spawn_member(shared.clone()));
    }
    let n = args.members as usize;
    stable(&admin, shared, n, session.partitions, args.timeout).await?;
    let initial = started.elapsed();
    eprintln!("bench: {n} members stable after {initial:?}");
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let joined = Instant::now();
        members.push(spawn_member(shared.clone()));
        stable(&admin, shared, n + 1, session.partitions, args.timeout).await?;
        let join = joined.elapsed();
        // The oldest member leaves. The bench ends its task (so it cannot leave by
        // itself first) and sends its LeaveGroup, to time the leave exactly.
        let oldest = members.remove(0);
        oldest.task.abort();
        let _ = oldest.task.await;
        let member_id = lock(&oldest.id).clone();
        let left = Instant::now();
        let req = pb::LeaveGroupRequest { group: shared.group.clone(), member_id };
        shared.client.groups().leave_group(req).await.map_err(ClientError::from).context("leave failed")?;
        stable(&admin, shared, n, session.partitions, args.timeout).await?;
        let leave = left.elapsed();
        eprintln!("bench: round {}: stable {join:?} after a join, {leave:?} after a leave", round + 1);
        rounds.push(Round { join_s: join.as_secs_f64(), leave_s: leave.as_secs_f64() });
    }
    Ok((initial, rounds))
}

/// Waits until the coordinator reports `members` members, state Stable, and every one
/// of `partitions` partitions owned.
async fn stable(
    admin: &GroupAdmin,
    shared: &Shared,
    members: usize,
    partitions: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Some(why) = lock(&shared.failure).clone() {
            anyhow::bail!("a simulated member failed: {why}");
        }
        let (state, n, owned) = match admin.describe(&shared.group).await {
            Ok(d) => (d.state, d.members.len(), d.members.iter().map(|m| m.assignment.len()).sum::<usize>()),
            // No member has joined yet.
            Err(e) if e.kind() == Some(pb::ErrorCode::GroupNotFound) => (String::new(), 0, 0),
            Err(e) => return Err(e).context("describe failed"),
        };
        if state == "Stable" && n == members {
            if owned != partitions as usize {
                anyhow::bail!("the group is stable with {owned} of {partitions} partitions owned");
            }
            return Ok(());
        }
        if start.elapsed() > timeout {
            anyhow::bail!("the group was not stable within {timeout:?}: {n} of {members} members, state '{state}'");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

fn spawn_member(shared: Arc<Shared>) -> Member {
    let stop = Arc::new(AtomicBool::new(false));
    let id = Arc::new(Mutex::new(String::new()));
    let task = tokio::spawn({
        let (stop, id) = (stop.clone(), id.clone());
        async move {
            if let Err(e) = simulated_member(&shared, &stop, &id).await {
                lock(&shared.failure).get_or_insert(format!("{e:#}"));
            }
        }
    });
    Member { stop, id, task }
}

fn strategy(s: Strategy) -> pb::AssignmentStrategy {
    match s {
        Strategy::Range => pb::AssignmentStrategy::Range,
        Strategy::RoundRobin => pb::AssignmentStrategy::RoundRobin,
        Strategy::CooperativeSticky => pb::AssignmentStrategy::CooperativeSticky,
    }
}

/// Heartbeats until told to stop, then leaves.
async fn simulated_member(shared: &Shared, stop: &AtomicBool, member_id: &Mutex<String>) -> anyhow::Result<()> {
    let mut groups = shared.client.groups();
    let (mut id, mut epoch, mut owned) = (String::new(), 0, Vec::<pb::TopicPartition>::new());
    while !stop.load(Ordering::Relaxed) {
        let req = pb::HeartbeatRequest {
            group: shared.group.clone(),
            member_id: id.clone(),
            member_epoch: epoch,
            topics: vec![shared.topic.clone()],
            owned: owned.clone(),
            session_timeout_ms: shared.session_timeout_ms,
            strategy: strategy(shared.strategy) as i32,
            client_id: "sluice-bench".into(),
        };
        let r = match groups.heartbeat(req).await.map_err(ClientError::from) {
            Ok(r) => r.into_inner(),
            // As `GroupConsumer`: a stale epoch rejoins under its id, an unknown member
            // as a new one; either has lost its partitions.
            Err(e) if matches!(e.kind(), Some(pb::ErrorCode::UnknownMemberId | pb::ErrorCode::FencedMemberEpoch)) => {
                if e.kind() == Some(pb::ErrorCode::UnknownMemberId) {
                    id.clear();
                }
                (epoch, owned) = (0, Vec::new());
                shared.rejoins.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => return Err(e).context("heartbeat failed"),
        };
        *lock(member_id) = r.member_id.clone();
        shared.interval_ms.store(r.heartbeat_interval_ms, Ordering::Relaxed);
        let released = owned.iter().any(|tp| !r.assignment.contains(tp));
        (id, epoch, owned) = (r.member_id, r.member_epoch, r.assignment);
        let wait = if released {
            Duration::ZERO
        } else if r.reconciling {
            RECONCILING_HEARTBEAT
        } else {
            Duration::from_millis(u64::from(r.heartbeat_interval_ms))
        };
        // Sleep, but notice a stop at once.
        let until = Instant::now() + wait;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(50))).await;
        }
    }
    let _ = groups.leave_group(pb::LeaveGroupRequest { group: shared.group.clone(), member_id: id }).await;
    Ok(())
}
