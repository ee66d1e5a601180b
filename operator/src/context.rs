//! What every reconcile gets: the client, the event recorder, metrics and settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};

use crate::metrics::Metrics;

/// Settings of the reconcilers (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Look at broker Leases at least this often, even when nothing changes (a Lease
    /// expiring is not an event).
    pub recheck: Duration,
    /// How often a ConsumerGroup's status is read from its coordinator (a bounded rate,
    /// not one read per commit).
    pub group_poll: Duration,
    /// First retry delay after an error; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            recheck: Duration::from_secs(30),
            group_poll: Duration::from_secs(5),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes API client.
    pub client: Client,
    /// Publishes Events about the reconciled objects.
    pub recorder: Recorder,
    /// Prometheus metrics of the operator.
    pub metrics: Arc<Metrics>,
    /// Reconciler settings.
    pub settings: Settings,
    /// PodDisruptionBudget API the server offers (`policy/v1`, or `policy/v1beta1` before 1.21).
    pub pdb_api: ApiResource,
    /// Consecutive failures per object, for exponential backoff.
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("settings", &self.settings).field("pdb_api", &self.pdb_api).finish()
    }
}

impl Context {
    pub async fn new(client: Client, metrics: Arc<Metrics>, settings: Settings, instance: String) -> Self {
        let reporter = Reporter { controller: crate::MANAGER.into(), instance: Some(instance) };
        let pdb_api = pdb_api_resource(&client).await;
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            pdb_api,
            failures: Arc::default(),
        }
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal (Events are best effort).
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Delay before retrying `key` after one more failure.
    pub fn backoff(&self, key: String) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32 << (*n - 1).min(16);
        self.settings.min_backoff.saturating_mul(factor).min(self.settings.max_backoff)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// `kind/namespace/name`, the backoff key of an object.
pub fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), obj.name_any())
}

async fn pdb_api_resource(client: &Client) -> ApiResource {
    let served = client
        .list_api_group_resources("policy/v1")
        .await
        .is_ok_and(|l| l.resources.iter().any(|r| r.name == "poddisruptionbudgets"));
    let version = if served { "v1" } else { "v1beta1" };
    ApiResource::from_gvk(&GroupVersionKind::gvk("policy", version, "PodDisruptionBudget"))
}
