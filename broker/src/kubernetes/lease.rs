//! The broker's Lease `<cluster>-broker-<id>`: created when missing, renewed every
//! `renew_every`. The broker acts as a leader only while its last successful renewal
//! is younger than the lease duration (measured from when the renewal was sent), so a
//! broker cut off from the API server stops leading before the operator can elect
//! another leader.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use tokio::sync::watch;
use tracing::{info, warn};

use sluice_crd::contract::{ADDRESS_ANNOTATION, CLUSTER_LABEL, RACK_LABEL, REQUESTED_TOPICS_ANNOTATION};

use super::{KubeMetadata, metadata::lease_is_current};
use crate::Broker;

fn desired_metadata(meta: &KubeMetadata, lease: &mut ObjectMeta) {
    let s = meta.settings();
    let labels = lease.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CLUSTER_LABEL.into(), s.cluster.clone());
    if let Some(rack) = &s.rack {
        labels.insert(RACK_LABEL.into(), rack.clone());
    }
    let annotations = lease.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ADDRESS_ANNOTATION.into(), s.advertised_address.clone());
    // Topics Kafka clients asked for (auto-creation): the operator creates them when the
    // Cluster opts in.
    let requested = meta.pending_topic_requests();
    if requested.is_empty() {
        annotations.remove(REQUESTED_TOPICS_ANNOTATION);
    } else {
        annotations.insert(REQUESTED_TOPICS_ANNOTATION.into(), requested.join(","));
    }
}

/// One renewal (or creation). Fails when another holder has a current Lease.
async fn renew(meta: &KubeMetadata, api: &Api<Lease>) -> Result<(), String> {
    let s = meta.settings();
    let name = s.lease_name(s.broker_id);
    let now = Timestamp::now();
    let secs = s.lease_duration.as_secs().max(1) as i32;
    match api.get_opt(&name).await.map_err(|e| e.to_string())? {
        None => {
            let mut lease = Lease {
                metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            desired_metadata(meta, &mut lease.metadata);
            api.create(&PostParams::default(), &lease).await.map_err(|e| e.to_string())?;
            info!(lease = %name, "broker Lease created");
        }
        Some(mut lease) => {
            let current = lease_is_current(&lease, now);
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let holder = spec.holder_identity.clone().unwrap_or_default();
            if holder != s.identity {
                if current {
                    return Err(format!("Lease {name} is held by '{holder}'"));
                }
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.holder_identity = Some(s.identity.clone());
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(secs);
            desired_metadata(meta, &mut lease.metadata);
            api.replace(&lease.name_any(), &PostParams::default(), &lease).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Renews the Lease until shutdown; keeps `sluice_broker_lease_held` current and logs
/// every change of state.
pub async fn renew_loop(
    meta: Arc<KubeMetadata>,
    broker: Arc<Broker>,
    client: Client,
    mut shutdown: watch::Receiver<bool>,
) {
    let s = meta.settings().clone();
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let mut was_held = false;
    loop {
        let sent = Instant::now();
        // A renewal that hangs must not outlive the Lease.
        match tokio::time::timeout(s.lease_duration, renew(&meta, &api)).await {
            Ok(Ok(())) => meta.lease_renewed(sent + s.lease_duration),
            Ok(Err(e)) => warn!(lease = %s.lease_name(s.broker_id), error = %e, "cannot renew the broker Lease"),
            Err(_) => warn!(lease = %s.lease_name(s.broker_id), "renewing the broker Lease timed out"),
        }
        let held = meta.lease_held();
        if held != was_held {
            if held {
                info!(lease = %s.lease_name(s.broker_id), "broker Lease held: acting as leader of the partitions it leads");
            } else {
                warn!(lease = %s.lease_name(s.broker_id), "broker Lease lost: refusing to act as leader until it is renewed");
            }
            was_held = held;
        }
        broker.metrics().lease_held.set(i64::from(held));
        // Wake up at the next renewal, or when the Lease runs out, whichever is first.
        // A topic request is written at once rather than at the next renewal.
        tokio::select! {
            _ = tokio::time::sleep(s.renew_every) => {}
            _ = meta.topic_requested.notified() => {}
            _ = shutdown.wait_for(|s| *s) => {
                broker.metrics().lease_held.set(0);
                return;
            }
        }
    }
}

/// Gives the Lease up on a graceful shutdown (no holder = gone at once for the
/// operator). Best effort.
pub async fn release(meta: &KubeMetadata, client: &Client) {
    let s = meta.settings();
    let api: Api<Lease> = Api::namespaced(client.clone(), &s.namespace);
    let name = s.lease_name(s.broker_id);
    let Ok(Some(mut lease)) = api.get_opt(&name).await else { return };
    let Some(spec) = lease.spec.as_mut() else { return };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    match api.replace(&name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %name, "broker Lease released"),
        Err(e) => warn!(lease = %name, error = %e, "cannot release the broker Lease"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed_secs).unwrap())),
                lease_duration_seconds: Some(duration),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_current_while_held_and_renewed_within_its_duration() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert!(lease_is_current(&lease(Some("c-0"), 995, 10), now));
        assert!(!lease_is_current(&lease(Some("c-0"), 990, 10), now), "expired at renew + duration");
        assert!(!lease_is_current(&lease(None, 999, 10), now), "released");
        assert!(!lease_is_current(&lease(Some(""), 999, 10), now), "empty holder");
    }
}
