//! Reads the other brokers' Leases of the cluster, by name, every renewal period: who
//! is live (the contract's liveness rule), at which address and in which rack. By name,
//! not by a watch: the brokers' Role grants `get` on the cluster's broker Leases only
//! (ids `0..spec.brokers` of the Cluster), not `list`/`watch` on Leases.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use sluice_crd::Cluster;
use tokio::sync::watch;
use tracing::warn;

use super::KubeMetadata;

/// Reads the broker Leases of the cluster every renewal period. By name, not by a
/// watch: the brokers' Role grants `get` on the cluster's broker Leases only (ids
/// `0..spec.brokers` of the Cluster), not `list`/`watch` on Leases.
pub(super) async fn read_leases(meta: Arc<KubeMetadata>, client: Client, mut shutdown: watch::Receiver<bool>) {
    let s = meta.settings().clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &s.namespace);
    let clusters: Api<Cluster> = Api::namespaced(client, &s.namespace);
    let mut warned = false;
    loop {
        // Brokers the Cluster wants, and any id a placement names (scale-down).
        let mut ids: BTreeSet<i32> = match clusters.get_opt(&s.cluster).await {
            Ok(Some(c)) => (0..c.spec.brokers).collect(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                warn!(error = %e, cluster = %s.cluster, "cannot read the Cluster");
                BTreeSet::new()
            }
        };
        ids.insert(s.broker_id);
        if let Ok(st) = meta.state.read() {
            ids.extend(st.topics.values().flat_map(|(_, ps)| ps.iter().flat_map(|p| p.replicas.iter().copied())));
        }
        let previous = meta.leases.lock().map(|l| l.clone()).unwrap_or_default();
        let mut seen = BTreeMap::new();
        let mut failed = false;
        let wanted = ids.len();
        for id in ids {
            match leases.get_opt(&s.lease_name(id)).await {
                Ok(Some(l)) => {
                    seen.insert(id, l);
                }
                Ok(None) => {}
                Err(e) => {
                    // Keep what was known; a transient error must not forget a broker.
                    if let Some(l) = previous.get(&id) {
                        seen.insert(id, l.clone());
                    }
                    failed = true;
                    if !warned {
                        warn!(lease = %s.lease_name(id), error = %e, "cannot read a broker Lease");
                        warned = true;
                    }
                }
            }
        }
        if !failed {
            warned = false;
        }
        // A broker without a Lease yet (starting at the same time) is looked for again soon.
        let every = if seen.len() < wanted { s.renew_every.min(Duration::from_millis(300)) } else { s.renew_every };
        if let Ok(mut l) = meta.leases.lock() {
            *l = seen;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
