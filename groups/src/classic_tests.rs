//! Tests of the classic group state machine.

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const DELAY: Duration = Duration::from_millis(100);

fn join_req(id: &str) -> Join {
    Join {
        member_id: id.to_string(),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: Duration::from_secs(5),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), b"meta".to_vec()), ("roundrobin".into(), b"rr".to_vec())],
        topics: ["t".to_string()].into(),
        require_known_id: true,
    }
}

/// Joins with the MEMBER_ID_REQUIRED round trip; returns the member id.
fn join(g: &mut ClassicGroup, now: Instant) -> String {
    let Err(ClassicError::MemberIdRequired(id)) = g.join(join_req(""), now, DELAY) else { panic!("id required") };
    assert_eq!(g.join(join_req(&id), now, DELAY).expect("join"), id);
    id
}

#[test]
fn members_starting_together_join_one_generation_and_the_leader_assigns() {
    let t0 = Instant::now();
    let mut g = ClassicGroup::new("g");
    let a = join(&mut g, t0);
    let b = join(&mut g, t0);
    assert_eq!(g.poll_join(&a, t0).expect("a"), None, "the initial delay holds the round open");
    let later = t0 + DELAY;
    let ra = g.poll_join(&a, later).expect("a").expect("round complete");
    let rb = g.poll_join(&b, later).expect("b").expect("round complete");
    assert_eq!((ra.generation, rb.generation), (1, 1));
    assert_eq!(ra.protocol, "range");
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty());
    assert_eq!(g.poll_sync(&b, 1).expect("b waits"), None);
    g.sync(
        &a,
        1,
        vec![(a.clone(), b"A".to_vec(), BTreeSet::new()), (b.clone(), b"B".to_vec(), BTreeSet::new())],
        later,
    )
    .expect("leader sync");
    assert_eq!(g.poll_sync(&b, 1).expect("b"), Some(b"B".to_vec()));
    assert_eq!(g.state, ClassicState::Stable);
    g.heartbeat(&b, 1, later).expect("stable heartbeat");
    g.check_commit(&b, 1).expect("b may commit");
    assert_eq!(g.check_commit(&b, 0), Err(ClassicError::IllegalGeneration { got: 0, current: 1 }));
    assert_eq!(g.check_commit("", -1), Err(ClassicError::UnknownMember(String::new())));
}

#[test]
fn a_leave_starts_a_round_that_the_remaining_members_complete() {
    let t0 = Instant::now();
    let mut g = ClassicGroup::new("g");
    let a = join(&mut g, t0);
    let b = join(&mut g, t0);
    let t1 = t0 + DELAY;
    g.poll_join(&a, t1).expect("a").expect("done");
    g.sync(&a, 1, vec![], t1).expect("sync");
    g.leave(&a, t1).expect("leave");
    assert_eq!(g.heartbeat(&b, 1, t1), Err(ClassicError::RebalanceInProgress));
    assert_eq!(g.join(join_req(&b), t1, DELAY).expect("rejoin"), b);
    let r = g.poll_join(&b, t1).expect("b").expect("b alone completes the round at once");
    assert_eq!((r.generation, r.leader.as_str()), (2, b.as_str()));
    assert_eq!(g.leave(&a, t1), Err(ClassicError::UnknownMember(a)));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let t0 = Instant::now();
    let mut g = ClassicGroup::new("g");
    let a = join(&mut g, t0);
    let b = join(&mut g, t0);
    let t1 = t0 + DELAY;
    g.poll_join(&a, t1).expect("a").expect("done");
    g.sync(&a, 1, vec![], t1).expect("sync");
    // A new member arrives; b never rejoins.
    let c = join(&mut g, t1);
    assert_eq!(g.join(join_req(&a), t1, DELAY).expect("a rejoins"), a);
    assert_eq!(g.poll_join(&a, t1 + Duration::from_secs(1)).expect("a"), None);
    let r = g.poll_join(&c, t1 + Duration::from_secs(5)).expect("c").expect("deadline");
    assert_eq!(r.generation, 2);
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.members.len(), 2);
}

#[test]
fn expired_sessions_and_protocol_mismatches() {
    let t0 = Instant::now();
    let mut g = ClassicGroup::new("g");
    let a = join(&mut g, t0);
    let t1 = t0 + DELAY;
    g.poll_join(&a, t1).expect("a").expect("done");
    g.sync(&a, 1, vec![], t1).expect("sync");
    let mut other = join_req("");
    other.protocols = vec![("sticky".into(), vec![])];
    other.require_known_id = false;
    assert!(matches!(g.join(other, t1, DELAY), Err(ClassicError::InconsistentProtocol(_))));
    assert!(g.expire(t1 + SESSION).is_empty());
    assert_eq!(g.expire(t1 + SESSION + Duration::from_millis(1)), vec![a]);
    assert_eq!(g.state, ClassicState::Empty);
    g.check_commit("", -1).expect("simple commits once empty");
    assert_eq!(g.join(join_req("ghost"), t1, DELAY), Err(ClassicError::UnknownMember("ghost".into())));
}

#[test]
fn an_unchanged_rejoin_while_the_leader_assigns_gets_the_current_generation_back() {
    let t0 = Instant::now();
    let mut g = ClassicGroup::new("g");
    let a = join(&mut g, t0);
    let b = join(&mut g, t0);
    let later = t0 + DELAY;
    g.poll_join(&a, later).expect("a").expect("round complete");
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    // b missed its JoinGroup answer and sends the same JoinGroup again: same generation,
    // no new round (Kafka's CompletingRebalance rule).
    assert_eq!(g.join(join_req(&b), later, DELAY).expect("rejoin"), b);
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    let rb = g.poll_join(&b, later).expect("b").expect("answered at once");
    assert_eq!(rb.generation, 1);
    // Changed metadata is a new round.
    let mut changed = join_req(&b);
    changed.protocols = vec![("range".into(), b"other".to_vec())];
    g.join(changed, later, DELAY).expect("rejoin with new metadata");
    assert_eq!(g.state, ClassicState::PreparingRebalance);
}
