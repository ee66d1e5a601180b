//! Kubernetes mode: the broker learns its topics from `Topic` resources, holds its own
//! Lease `<cluster>-broker-<id>` for liveness, and learns the other brokers from their
//! Leases (read by name: the brokers' Role grants `get` on them, not `list`/`watch`).
//! It writes nothing but its Lease. Every rule shared with the operator (Lease names,
//! labels, the liveness rule, Topic names and configuration) is
//! `sluice_crd::contract`; this module only talks to the API server.
//!
//! - [`metadata`]: [`KubeMetadata`], the [`crate::metadata::MetadataStore`] built from
//!   the Topic watch and the broker Leases.
//! - [`lease`]: creates and renews the broker's Lease; without a current Lease the
//!   broker refuses to act as a leader.
//! - [`peers`]: reads the other brokers' Leases (liveness, addresses, racks).
//! - [`topics`]: Topic resource → topic spec and placement; the Topic watch.

pub mod lease;
pub mod metadata;
pub mod peers;
pub mod topics;

use std::{sync::Arc, time::Duration};

use kube::Client;
use sluice_crd::contract::{self, env};
use tracing::info;

pub use metadata::KubeMetadata;

use crate::{
    BrokerConfig,
    error::{BrokerError, Result},
    server,
};

/// Who this broker is in the cluster.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub cluster: String,
    pub namespace: String,
    pub broker_id: i32,
    /// Lease holder identity (the pod name).
    pub identity: String,
    /// The address clients dial for this broker.
    pub advertised_address: String,
    /// The broker's rack/zone, put on its Lease when known.
    pub rack: Option<String>,
    /// `leaseDurationSeconds` of the broker's Lease.
    pub lease_duration: Duration,
    /// How often the Lease is renewed.
    pub renew_every: Duration,
}

impl KubeSettings {
    /// The name of broker `id`'s Lease.
    pub fn lease_name(&self, id: i32) -> String {
        contract::broker_lease_name(&self.cluster, id)
    }

    /// Where broker `id` is reached when its Lease does not say: its pod's DNS name in
    /// the headless Service, on this broker's port.
    fn default_address(&self, id: i32) -> String {
        let port = self.advertised_address.rsplit_once(':').map_or("9092", |(_, p)| p);
        format!("{c}-{id}.{c}-brokers.{ns}.svc:{port}", c = self.cluster, ns = self.namespace)
    }
}

/// What the command line and the pod's environment say about the broker's identity,
/// before it is resolved into [`KubeSettings`].
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub cluster: Option<String>,
    /// `SLUICE_NAMESPACE`, else `POD_NAMESPACE`.
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub broker_id: Option<i32>,
    pub advertised_address: String,
    pub rack: Option<String>,
    pub lease_duration: Duration,
}

/// The namespace a pod runs in, from its service-account mount.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl Identity {
    /// Works out the broker id (from the pod name `<cluster>-<ordinal>` unless given),
    /// the namespace (else the service account's, else `default`) and the Lease timing
    /// (renewed every third of its duration).
    pub fn resolve(self) -> Result<KubeSettings> {
        let invalid = BrokerError::InvalidConfig;
        let Some(cluster) = self.cluster.filter(|c| !c.is_empty()) else {
            return Err(invalid(format!(
                "Kubernetes mode ({}=false) needs the Cluster name: set {} or --cluster",
                env::STANDALONE,
                env::CLUSTER
            )));
        };
        let namespace = match self.namespace.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "default".to_string()),
        };
        let broker_id = match (self.broker_id, self.pod_name.as_deref()) {
            (Some(id), _) => id,
            (None, Some(pod)) => contract::broker_id_from_pod_name(&cluster, pod).ok_or_else(|| {
                invalid(format!(
                    "{} {pod:?} is not '{cluster}-<ordinal>': cannot tell the broker id (or pass --broker-id)",
                    env::POD_NAME
                ))
            })?,
            (None, None) => {
                return Err(invalid(format!(
                    "Kubernetes mode needs the broker id: set {} (<cluster>-<ordinal>) or --broker-id",
                    env::POD_NAME
                )));
            }
        };
        let identity = self.pod_name.unwrap_or_else(|| format!("{cluster}-{broker_id}"));
        let lease_duration = self.lease_duration.max(Duration::from_secs(1));
        Ok(KubeSettings {
            cluster,
            namespace,
            broker_id,
            identity,
            advertised_address: self.advertised_address,
            rack: self.rack.filter(|r| !r.is_empty()),
            lease_duration,
            renew_every: (lease_duration / 3).max(Duration::from_millis(200)),
        })
    }
}

/// Runs a broker in Kubernetes mode until SIGINT or SIGTERM: the shared serving loop
/// plus the Lease, the peers' Leases and the Topic watch; the Lease is released last.
pub(crate) async fn run(mut config: BrokerConfig, settings: KubeSettings) -> Result<()> {
    let client = Client::try_default()
        .await
        .map_err(|e| BrokerError::InvalidConfig(format!("no Kubernetes client configuration: {e}")))?;
    config.broker_id = settings.broker_id;
    config.advertised_address = Some(settings.advertised_address.clone());
    info!(cluster = %settings.cluster, namespace = %settings.namespace, broker_id = settings.broker_id,
          address = %settings.advertised_address, "starting in Kubernetes mode");
    let meta = Arc::new(KubeMetadata::new(settings));
    config.metadata = Some(meta.clone());
    let handle = server::start(config).await?;
    let shutdown = handle.shutdown_trigger().subscribe();
    let broker = handle.broker().clone();
    let tasks = vec![
        tokio::spawn(lease::renew_loop(meta.clone(), broker.clone(), client.clone(), shutdown.clone())),
        tokio::spawn(peers::read_leases(meta.clone(), client.clone(), shutdown.clone())),
        tokio::spawn(topics::watch_topics(meta.clone(), broker, client.clone(), shutdown)),
    ];
    let result = server::serve_until_signal(handle, tasks).await;
    lease::release(&meta, &client).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(cluster: &str, pod: Option<&str>) -> Identity {
        Identity {
            cluster: Some(cluster.into()),
            namespace: Some("ns".into()),
            pod_name: pod.map(Into::into),
            advertised_address: "127.0.0.1:9092".into(),
            lease_duration: Duration::from_secs(10),
            ..Identity::default()
        }
    }

    #[test]
    fn broker_id_is_the_ordinal_of_the_pod_name() {
        let s = identity("my-cluster", Some("my-cluster-2")).resolve().expect("valid");
        assert_eq!((s.broker_id, s.identity.as_str(), s.namespace.as_str()), (2, "my-cluster-2", "ns"));
        assert_eq!(s.lease_name(2), "my-cluster-broker-2");
        let err = identity("demo", Some("other-1")).resolve().unwrap_err().to_string();
        assert!(err.contains("\"other-1\" is not 'demo-<ordinal>'"), "{err}");
        let given = Identity { broker_id: Some(5), ..identity("demo", None) }.resolve().expect("valid");
        assert_eq!((given.broker_id, given.identity.as_str()), (5, "demo-5"));
    }

    #[test]
    fn default_address_is_the_pods_dns_name_on_this_port() {
        let s = identity("dev", Some("dev-0")).resolve().expect("valid");
        assert_eq!(s.default_address(1), "dev-1.dev-brokers.ns.svc:9092");
    }
}
