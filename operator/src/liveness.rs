//! Broker liveness from broker Leases: broker `<id>` of Cluster `<c>` holds Lease
//! `<c>-broker-<id>` and renews it. The rule that says whether a Lease is current is the
//! broker–operator contract's ([`contract::lease_expiry`]), which the brokers apply
//! too; this module only reads the fields out of the k8s-openapi types.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use sluice_crd::contract::{self, RACK_LABEL, REQUESTED_TOPICS_ANNOTATION};

/// When `lease` runs out, by the contract's rule; `None` when it has no holder or lacks
/// the renewal time or the duration.
fn expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    contract::lease_expiry(spec.holder_identity.as_deref(), renewed, spec.lease_duration_seconds)
}

/// The rack label of a broker Lease.
fn rack(lease: &Lease) -> Option<String> {
    lease.metadata.labels.as_ref().and_then(|l| l.get(RACK_LABEL)).cloned()
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
    leases
        .iter()
        .filter_map(|lease| {
            let id = contract::broker_id_from_lease_name(cluster, lease.metadata.name.as_deref()?)?;
            let expires = expiry(lease).filter(|e| *e > now)?;
            Some((id, LiveBroker { id, rack: rack(lease), expires }))
        })
        .collect()
}

/// What the operator last saw of a broker Lease, to tell news from routine renewals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    holder: Option<String>,
    expires: Option<Timestamp>,
    rack: Option<String>,
    /// The topics the broker was asked for (auto-creation, see `cluster::autocreate`).
    requested_topics: Option<String>,
}

/// Whether a watch event for `lease` can change a broker's liveness or rack, or asks for
/// topics: a new holder, a release, a rack change, a change of the requested topics, or
/// a renewal after the Lease had run out. Routine
/// renewals are not news (an expiry is found by the requeue at the expiry time), so
/// brokers renewing every few seconds do not make every Topic reconcile.
pub fn is_news(previous: Option<&Seen>, lease: &Lease) -> (bool, Seen) {
    let spec = lease.spec.as_ref();
    let holder = spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
    let renewed = spec.and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref())).map(|t| t.0);
    let requested_topics =
        lease.metadata.annotations.as_ref().and_then(|a| a.get(REQUESTED_TOPICS_ANNOTATION)).cloned();
    let seen = Seen { holder, expires: expiry(lease), rack: rack(lease), requested_topics };
    let news = match previous {
        None => true,
        Some(p) => {
            p.holder != seen.holder
                || p.rack != seen.rack
                || p.requested_topics != seen.requested_topics
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
    use k8s_openapi::jiff::SignedDuration;

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
