//! Assignment strategies: which member of a group reads which partition. Pure functions
//! of the members (their subscriptions and what they own now) and of the partition
//! counts of the subscribed topics; the coordinator calls them whenever membership,
//! subscriptions or topics change.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Strategy, TopicPartition};

/// What the assignor needs to know about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// Subscribed topic names.
    pub topics: BTreeSet<String>,
    /// Partitions the member owns now (only the sticky strategy looks at them).
    pub owned: BTreeSet<TopicPartition>,
}

/// Member id → partitions it should own. Every member of `members` is in the result
/// (possibly with nothing); every partition of a topic somebody subscribes to is
/// assigned to exactly one member subscribed to that topic.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// Computes the target assignment. `partitions` maps topic name → partition count;
/// subscribed topics missing from it (not created yet) are ignored.
pub fn assign(
    strategy: Strategy,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let mut out: Assignment = members.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    if members.is_empty() {
        return out;
    }
    match strategy {
        Strategy::Range => range(members, partitions, &mut out),
        Strategy::RoundRobin => round_robin(members, partitions, &mut out),
        Strategy::CooperativeSticky => sticky(members, partitions, &mut out),
    }
    out
}

fn subscribers<'a>(members: &'a BTreeMap<String, MemberSpec>, topic: &str) -> Vec<&'a String> {
    members.iter().filter(|(_, m)| m.topics.contains(topic)).map(|(id, _)| id).collect()
}

/// Every partition of every topic at least one member subscribes to, sorted.
fn subscribed_partitions(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<String, u32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members.values().flat_map(|m| &m.topics).collect();
    topics
        .into_iter()
        .filter_map(|t| partitions.get(t).map(|n| (t, *n)))
        .flat_map(|(t, n)| (0..n).map(move |p| TopicPartition::new(t, p)))
        .collect()
}

fn range(members: &BTreeMap<String, MemberSpec>, partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    for (topic, &count) in partitions {
        let subs = subscribers(members, topic);
        if subs.is_empty() {
            continue;
        }
        let (per, extra) = (count / subs.len() as u32, count % subs.len() as u32);
        let mut next = 0;
        for (i, m) in subs.into_iter().enumerate() {
            let n = per + u32::from((i as u32) < extra);
            let set = out.entry(m.clone()).or_default();
            set.extend((next..next + n).map(|p| TopicPartition::new(topic, p)));
            next += n;
        }
    }
}

fn round_robin(members: &BTreeMap<String, MemberSpec>, partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    let ids: Vec<&String> = members.keys().collect();
    let mut turn = 0;
    for tp in subscribed_partitions(members, partitions) {
        // The next member in turn that subscribes to the topic.
        for step in 0..ids.len() {
            let id = ids[(turn + step) % ids.len()];
            if members[id].topics.contains(&tp.topic) {
                out.entry(id.clone()).or_default().insert(tp);
                turn = (turn + step + 1) % ids.len();
                break;
            }
        }
    }
}

fn sticky(members: &BTreeMap<String, MemberSpec>, partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    let all = subscribed_partitions(members, partitions);
    let all_set: BTreeSet<&TopicPartition> = all.iter().collect();
    // What each member may keep: partitions it owns that still exist, that it still
    // subscribes to, and that no member listed earlier claims too.
    let mut claimed = BTreeSet::new();
    let mut keepable: BTreeMap<&String, Vec<TopicPartition>> = BTreeMap::new();
    for (id, m) in members {
        let keep = m
            .owned
            .iter()
            .filter(|tp| all_set.contains(tp) && m.topics.contains(&tp.topic) && claimed.insert((*tp).clone()))
            .cloned()
            .collect();
        keepable.insert(id, keep);
    }
    // Quotas: every member gets floor(n/m); the members that already own the most get
    // the remainder, so that as little as possible moves.
    let (base, extra) = (all.len() / members.len(), all.len() % members.len());
    let mut ranked: Vec<&String> = members.keys().collect();
    ranked.sort_by(|a, b| keepable[b].len().cmp(&keepable[a].len()).then(a.cmp(b)));
    let quota: BTreeMap<&String, usize> =
        ranked.iter().enumerate().map(|(rank, id)| (*id, base + usize::from(rank < extra))).collect();
    let mut owner = BTreeSet::new();
    for (id, keep) in keepable {
        let set = out.entry(id.clone()).or_default();
        for tp in keep.into_iter().take(quota[id]) {
            owner.insert(tp.clone());
            set.insert(tp);
        }
    }
    for tp in all.into_iter().filter(|tp| !owner.contains(tp)) {
        // Under-quota members first, then the least loaded, then by id.
        let best = members.iter().filter(|(_, m)| m.topics.contains(&tp.topic)).map(|(id, _)| id).min_by_key(|id| {
            let load = out.get(*id).map_or(0, BTreeSet::len);
            (load >= quota[id], load, (*id).clone())
        });
        if let Some(id) = best {
            out.entry(id.clone()).or_default().insert(tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (member id, subscribed topics, owned partitions)
    type Spec<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, u32)]);

    fn members(specs: &[Spec<'_>]) -> BTreeMap<String, MemberSpec> {
        specs
            .iter()
            .map(|(id, topics, owned)| {
                let spec = MemberSpec {
                    topics: topics.iter().map(|t| t.to_string()).collect(),
                    owned: owned.iter().map(|(t, p)| TopicPartition::new(t, *p)).collect(),
                };
                (id.to_string(), spec)
            })
            .collect()
    }

    fn topics(t: &[(&str, u32)]) -> BTreeMap<String, u32> {
        t.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    fn counts(a: &Assignment) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    /// Every subscribed partition is assigned exactly once, to a subscriber.
    fn check_complete(a: &Assignment, m: &BTreeMap<String, MemberSpec>, t: &BTreeMap<String, u32>) {
        let mut seen = BTreeSet::new();
        for (id, set) in a {
            for tp in set {
                assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
                assert!(m[id].topics.contains(&tp.topic), "{id} does not subscribe to {}", tp.topic);
            }
        }
        assert_eq!(seen.len(), subscribed_partitions(m, t).len());
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let m = members(&[("a", &["t"], &[]), ("b", &["t"], &[])]);
        let t = topics(&[("t", 5)]);
        let a = assign(Strategy::Range, &m, &t);
        check_complete(&a, &m, &t);
        let a_parts: Vec<u32> = a["a"].iter().map(|tp| tp.partition).collect();
        assert_eq!(a_parts, vec![0, 1, 2]);
        assert_eq!(counts(&a), vec![3, 2]);
    }

    #[test]
    fn round_robin_deals_across_topics() {
        let m = members(&[("a", &["x", "y"], &[]), ("b", &["x", "y"], &[]), ("c", &["y"], &[])]);
        let t = topics(&[("x", 2), ("y", 4)]);
        let a = assign(Strategy::RoundRobin, &m, &t);
        check_complete(&a, &m, &t);
        assert_eq!(counts(&a), vec![2, 2, 2]);
    }

    #[test]
    fn sticky_is_balanced_and_keeps_what_it_can() {
        let t = topics(&[("t", 4)]);
        let two = members(&[("a", &["t"], &[]), ("b", &["t"], &[])]);
        let first = assign(Strategy::CooperativeSticky, &two, &t);
        check_complete(&first, &two, &t);
        assert_eq!(counts(&first), vec![2, 2]);
        // A third member joins: each old member gives up at most one partition.
        let owned = |id: &str| first[id].iter().map(|tp| (tp.topic.as_str(), tp.partition)).collect::<Vec<_>>();
        let (oa, ob) = (owned("a"), owned("b"));
        let three = members(&[("a", &["t"], &oa), ("b", &["t"], &ob), ("c", &["t"], &[])]);
        let second = assign(Strategy::CooperativeSticky, &three, &t);
        check_complete(&second, &three, &t);
        let mut c = counts(&second);
        c.sort();
        assert_eq!(c, vec![1, 1, 2]);
        let kept = second["a"].intersection(&first["a"]).count() + second["b"].intersection(&first["b"]).count();
        assert_eq!(kept, 3, "only one partition moves");
    }

    #[test]
    fn sticky_drops_unsubscribed_and_vanished_partitions() {
        let m = members(&[("a", &["t"], &[("t", 0), ("t", 7), ("old", 0)]), ("b", &["t"], &[("t", 0)])]);
        let t = topics(&[("t", 2)]);
        let a = assign(Strategy::CooperativeSticky, &m, &t);
        check_complete(&a, &m, &t);
        assert!(a["a"].contains(&TopicPartition::new("t", 0)), "first claim wins: {a:?}");
        assert_eq!(counts(&a), vec![1, 1]);
    }

    #[test]
    fn every_strategy_is_balanced_at_scale_and_unknown_topics_are_ignored() {
        let ids: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
        let m: BTreeMap<String, MemberSpec> = ids
            .iter()
            .map(|id| (id.clone(), MemberSpec { topics: ["t".into(), "later".into()].into(), owned: BTreeSet::new() }))
            .collect();
        let t = topics(&[("t", 1000)]);
        for s in [Strategy::Range, Strategy::RoundRobin, Strategy::CooperativeSticky] {
            let a = assign(s, &m, &t);
            check_complete(&a, &m, &t);
            assert!(counts(&a).iter().all(|&c| c == 10), "{s:?}");
        }
        assert!(assign(Strategy::Range, &BTreeMap::new(), &t).is_empty());
    }
}
