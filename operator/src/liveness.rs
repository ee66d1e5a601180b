//! Broker liveness from broker Leases: broker `<id>` of Cluster `<c>` holds Lease
//! `<c>-broker-<id>` and renews it; a Lease past `renewTime + leaseDurationSeconds`
//! (or without a holder) means the broker is gone, as an expired ephemeral znode did
//! for Kafka.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Label a broker puts on its Lease to say which rack/zone it runs in (the value of the
/// Cluster's `topologyKey` on its node).
pub const RACK_LABEL: &str = "sluice.dev/rack";

/// Name of the Lease broker `id` of `cluster` holds.
pub fn broker_lease_name(cluster: &str, id: i32) -> String {
    format!("{cluster}-broker-{id}")
}

/// A broker whose Lease is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub id: i32,
    pub rack: Option<String>,
    /// When the Lease runs out unless renewed.
    pub expires: Timestamp,
}

/// The live brokers of `cluster` among `leases`, by id.
pub fn live_brokers(cluster: &str, leases: &[Lease], now: Timestamp) -> BTreeMap<i32, LiveBroker> {
    let prefix = format!("{cluster}-broker-");
    leases
        .iter()
        .filter_map(|lease| {
            let name = lease.metadata.name.as_deref()?;
            let id: i32 = name.strip_prefix(&prefix)?.parse().ok()?;
            let spec = lease.spec.as_ref()?;
            spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
            let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
            let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds?));
            let expires = renewed.checked_add(duration).ok()?;
            if expires <= now {
                return None;
            }
            let rack = lease.metadata.labels.as_ref().and_then(|l| l.get(RACK_LABEL)).cloned();
            Some((id, LiveBroker { id, rack, expires }))
        })
        .collect()
}

/// What the operator last saw of a broker Lease, to tell news from routine renewals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    holder: Option<String>,
    expires: Option<Timestamp>,
    rack: Option<String>,
}

/// Whether a watch event for `lease` can change a broker's liveness or rack: a new
/// holder, a release, a rack change, or a renewal after the Lease had run out. Routine
/// renewals are not news (an expiry is found by the requeue at the expiry time), so
/// brokers renewing every few seconds do not make every Topic reconcile.
pub fn is_news(previous: Option<&Seen>, lease: &Lease) -> (bool, Seen) {
    let spec = lease.spec.as_ref();
    let holder = spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
    let renewed = spec.and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref())).map(|t| t.0);
    let duration = spec.and_then(|s| s.lease_duration_seconds).map(|d| SignedDuration::from_secs(i64::from(d)));
    let expires = renewed.zip(duration).and_then(|(r, d)| r.checked_add(d).ok());
    let rack = lease.metadata.labels.as_ref().and_then(|l| l.get(RACK_LABEL)).cloned();
    let seen = Seen { holder, expires, rack };
    let news = match previous {
        None => true,
        Some(p) => {
            p.holder != seen.holder
                || p.rack != seen.rack
                || match (p.expires, renewed) {
                    // Renewed after the previous term had run out: the broker came back.
                    (Some(old_expiry), Some(renewed)) => renewed > old_expiry,
                    _ => p.expires != seen.expires,
                }
        }
    };
    (news, seen)
}

/// When the first of `live` expires (the operator looks again then).
pub fn next_expiry(live: &BTreeMap<i32, LiveBroker>) -> Option<Timestamp> {
    live.values().map(|b| b.expires).min()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    pub fn lease(name: &str, holder: Option<&str>, renewed: Timestamp, secs: i32, rack: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: rack.map(|r| [(RACK_LABEL.to_string(), r.to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(secs),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_holder_rack_and_revival_are_news() {
        let t = Timestamp::from_second(1_000_000).unwrap();
        let at = |s| t.checked_add(SignedDuration::from_secs(s)).unwrap();
        let (news, seen) = is_news(None, &lease("c-broker-0", Some("b0"), at(0), 10, None));
        assert!(news);
        let (news, seen) = is_news(Some(&seen), &lease("c-broker-0", Some("b0"), at(3), 10, None));
        assert!(!news, "routine renewal");
        let (news, seen) = is_news(Some(&seen), &lease("c-broker-0", Some("b0"), at(12), 10, None));
        assert!(!news, "renewed before the expiry at 13 s");
        let (news, seen) = is_news(Some(&seen), &lease("c-broker-0", Some("b0"), at(23), 10, None));
        assert!(news, "renewed after the expiry at 22 s: the broker came back");
        let (news, seen) = is_news(Some(&seen), &lease("c-broker-0", Some("b0-new"), at(24), 10, None));
        assert!(news, "new holder");
        let (news, seen) = is_news(Some(&seen), &lease("c-broker-0", None, at(24), 10, None));
        assert!(news, "released");
        let (news, _) = is_news(Some(&seen), &lease("c-broker-0", None, at(24), 10, Some("a")));
        assert!(news, "rack changed");
    }

    #[test]
    fn current_held_leases_of_the_cluster_are_live() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let ago = |s| now.checked_sub(SignedDuration::from_secs(s)).unwrap();
        let leases = vec![
            lease("c-broker-0", Some("b0"), ago(1), 10, Some("a")),
            lease("c-broker-1", Some("b1"), ago(11), 10, None), // expired
            lease("c-broker-2", None, ago(1), 10, None),        // released
            lease("c-broker-3", Some("b3"), ago(9), 10, None),
            lease("other-broker-4", Some("x"), ago(1), 10, None),
            lease("c-broker-x", Some("x"), ago(1), 10, None),
            lease("sluice-operator", Some("x"), ago(1), 10, None),
        ];
        let live = live_brokers("c", &leases, now);
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(live[&0].rack.as_deref(), Some("a"));
        assert_eq!(next_expiry(&live), Some(now.checked_add(SignedDuration::from_secs(1)).unwrap()));
    }
}
