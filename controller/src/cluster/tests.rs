use super::*;
use crate::isr::AlterIsr;

fn reg(id: i32, incarnation: u64) -> Registration {
    Registration {
        id,
        grpc_address: format!("127.0.0.1:{}", 9000 + id),
        kafka_address: format!("127.0.0.1:{}", 9100 + id),
        rack: None,
        incarnation,
    }
}

fn three_brokers() -> ClusterState {
    let mut s = ClusterState::default();
    for id in 0..3 {
        let changes = s.heartbeat(reg(id, 1), 0);
        assert!(changes.contains(&Change::BrokerRegistered { id }), "{changes:?}");
        assert!(changes.contains(&Change::BrokerUnfenced { id }), "{changes:?}");
    }
    s
}

fn min_isr(n: u32) -> BTreeMap<String, String> {
    [(MIN_INSYNC_REPLICAS.to_string(), n.to_string())].into()
}

fn p0(s: &ClusterState, topic: &str) -> PartitionAssignment {
    s.topics[topic].partitions[0].clone()
}

#[test]
fn topics_are_placed_on_live_brokers_with_the_default_replication_factor() {
    let mut s = three_brokers();
    assert_eq!(
        s.create_topic("orders", 3, 0, BTreeMap::new()),
        Ok(vec![Change::TopicCreated { topic: "orders".into() }])
    );
    let t = &s.topics["orders"];
    assert_eq!(t.replication_factor, 3);
    assert!(t.partitions.iter().all(|p| p.replicas.len() == 3 && p.isr == p.replicas && p.leader.is_some()));
    assert_eq!(s.create_topic("orders", 1, 1, BTreeMap::new()), Err(ClusterError::TopicExists("orders".into())));
    assert!(matches!(s.create_topic("big", 1, 4, BTreeMap::new()), Err(ClusterError::Placement(_))));
    assert!(matches!(s.create_topic("bad", 1, 2, min_isr(3)), Err(ClusterError::InvalidRequest(_))));
    s.fence(2);
    s.create_topic("two", 1, 0, BTreeMap::new()).unwrap();
    assert_eq!(s.topics["two"].replication_factor, 2, "min(3, live brokers)");
    assert!(!s.topics["two"].partitions[0].replicas.contains(&2));
    let v = s.version;
    assert_eq!(s.delete_topic("two"), Ok(vec![Change::TopicDeleted { topic: "two".into() }]));
    assert_eq!(s.version, v + 1);
    assert_eq!(s.delete_topic("two"), Err(ClusterError::UnknownTopic("two".into())));
}

#[test]
fn an_expired_leader_is_replaced_from_the_isr_with_bumped_epochs() {
    let mut s = three_brokers();
    s.create_topic("orders", 1, 3, BTreeMap::new()).unwrap();
    let before = p0(&s, "orders");
    let leader = before.leader.unwrap();
    for id in 0..3 {
        s.heartbeat(reg(id, 1), if id == leader { 0 } else { 2_500 });
    }
    assert!(s.expire(2_900, 3_000).is_empty(), "nobody is past the session yet");
    let changes = s.expire(3_100, 3_000);
    assert!(changes.contains(&Change::BrokerFenced { id: leader }), "{changes:?}");
    let after = p0(&s, "orders");
    assert!(after.leader.is_some_and(|l| l != leader && before.isr.contains(&l)), "{after:?}");
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(after.partition_epoch > before.partition_epoch);
    assert!(!after.isr.contains(&leader), "a fenced broker leaves the ISR");
    assert!(after.elr.is_empty(), "the ISR is still at min ISR 1");
    assert!(changes.iter().any(|c| matches!(c, Change::PartitionChanged { leader: l, .. } if *l == after.leader)));
    // It comes back: unfenced, but it rejoins the ISR only when the leader asks.
    s.heartbeat(reg(leader, 1), 4_000);
    assert_eq!(p0(&s, "orders"), after);
    let new_leader = after.leader.unwrap();
    let mut isr = after.isr.clone();
    isr.push(leader);
    let ask = AlterIsr {
        leader_id: new_leader,
        leader_epoch: after.leader_epoch,
        partition_epoch: after.partition_epoch,
        new_isr: isr,
    };
    let (p, changes) = s.alter_partition("orders", 0, &ask).unwrap();
    assert_eq!(p.isr.len(), 3);
    assert_eq!(p.partition_epoch, after.partition_epoch + 1);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        s.alter_partition("orders", 0, &ask).unwrap_err(),
        ClusterError::Isr(crate::isr::IsrError::InvalidUpdateVersion {
            asked: ask.partition_epoch,
            current: p.partition_epoch
        })
    );
    assert!(matches!(s.alter_partition("orders", 7, &ask), Err(ClusterError::UnknownPartition { .. })));
}

#[test]
fn losing_the_isr_below_min_isr_keeps_eligible_replicas_then_goes_offline() {
    let mut s = three_brokers();
    s.create_topic("orders", 1, 3, min_isr(2)).unwrap();
    let order = p0(&s, "orders").replicas.clone();
    let (a, b, c) = (order[0], order[1], order[2]);
    s.fence(c);
    assert!(p0(&s, "orders").elr.is_empty(), "{c} left while the ISR stayed at min ISR");
    s.fence(b);
    assert_eq!(p0(&s, "orders").elr, vec![b], "{b} left below min ISR: eligible");
    s.fence(a);
    let p = p0(&s, "orders");
    assert_eq!((p.leader, p.isr.clone(), p.last_leader), (None, vec![], Some(a)), "offline");
    // c was out of sync: no election; b is eligible: it leads.
    s.heartbeat(reg(c, 1), 10);
    assert_eq!(p0(&s, "orders").leader, None);
    s.heartbeat(reg(b, 1), 10);
    let p = p0(&s, "orders");
    assert_eq!((p.leader, p.isr.clone()), (Some(b), vec![b]));
    assert!(p.elr.contains(&a) && !p.elr.contains(&b), "{p:?}");
}

#[test]
fn unclean_election_needs_the_topic_to_allow_it() {
    for unclean in [true, false] {
        let mut s = three_brokers();
        let config = [(UNCLEAN_LEADER_ELECTION.to_string(), unclean.to_string())].into();
        s.create_topic("t", 1, 2, config).unwrap();
        let p = p0(&s, "t");
        let (leader, follower) = (p.replicas[0], p.replicas[1]);
        // The follower dropped out of the ISR (the leader asked), then the leader died.
        let ask = AlterIsr {
            leader_id: leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![leader],
        };
        s.alter_partition("t", 0, &ask).unwrap();
        s.fence(leader);
        let p = p0(&s, "t");
        if unclean {
            assert_eq!((p.leader, p.isr.clone()), (Some(follower), vec![follower]));
        } else {
            assert_eq!((p.leader, p.last_leader), (None, Some(leader)), "no clean candidate: offline");
        }
    }
}

#[test]
fn a_restart_with_a_new_incarnation_fences_first() {
    let mut s = three_brokers();
    s.create_topic("orders", 1, 3, BTreeMap::new()).unwrap();
    let before = p0(&s, "orders");
    let leader = before.leader.unwrap();
    let changes = s.heartbeat(reg(leader, 2), 5);
    assert!(changes.contains(&Change::BrokerFenced { id: leader }), "{changes:?}");
    assert!(changes.contains(&Change::BrokerRestarted { id: leader }), "{changes:?}");
    assert!(changes.contains(&Change::BrokerUnfenced { id: leader }), "{changes:?}");
    let after = p0(&s, "orders");
    assert_ne!(after.leader, Some(leader));
    assert!(!after.isr.contains(&leader));
    assert!(s.heartbeat(reg(leader, 2), 6).is_empty(), "a plain heartbeat changes nothing");
}

#[test]
fn topics_grow_and_change_config_but_never_shrink() {
    let mut s = three_brokers();
    s.create_topic("orders", 2, 2, BTreeMap::new()).unwrap();
    let first = s.topics["orders"].partitions.clone();
    assert_eq!(s.update_topic("orders", 4, min_isr(2)).unwrap(), vec![Change::TopicUpdated { topic: "orders".into() }]);
    let t = &s.topics["orders"];
    assert_eq!((&t.partitions[..2], t.partitions.len(), t.min_isr()), (&first[..], 4, 2));
    assert!(s.update_topic("orders", 4, min_isr(2)).unwrap().is_empty());
    assert!(matches!(s.update_topic("orders", 1, BTreeMap::new()), Err(ClusterError::InvalidRequest(_))));
    assert!(matches!(s.update_topic("nope", 1, BTreeMap::new()), Err(ClusterError::UnknownTopic(_))));
}

#[test]
fn the_state_round_trips_through_json_without_session_times() {
    let mut s = three_brokers();
    s.create_topic("orders", 2, 3, min_isr(2)).unwrap();
    s.fence(0);
    let json = serde_json::to_string(&s).unwrap();
    let mut back: ClusterState = serde_json::from_str(&json).unwrap();
    back.reset_sessions(0);
    assert_eq!(back, s);
    back.reset_sessions(77);
    assert!(back.brokers.values().all(|b| b.last_heartbeat_ms == 77));
    assert!(back.expire(77 + 3_000, 3_000).is_empty(), "a full session after loading");
}
