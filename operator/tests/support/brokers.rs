//! Real `sluice-broker` processes in Kubernetes mode for the control-plane tests: each
//! gets the identity and configuration its pod would get from the StatefulSet (env from
//! the ConfigMap, `POD_NAME`, its own 127.0.0.x address) and the broker ServiceAccount's
//! token, and is killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use serde_json::json;

use super::envtest::ControlPlane;
use super::{NS, wait_for};

/// The Cluster the broker processes belong to.
pub const CLUSTER: &str = "demo";
/// Short broker Leases so that a killed broker is noticed within seconds.
pub const LEASE_SECONDS: u64 = 3;

/// One `sluice-broker` process, killed (SIGKILL) on drop.
pub struct BrokerProcess {
    pub id: i32,
    pub addr: String,
    pub metrics: String,
    pub child: Child,
}

impl BrokerProcess {
    /// SIGTERM and wait: the broker flushes its log and releases its Lease.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut t = std::time::SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let m = if path.is_dir() { newest(&path) } else { e.metadata().and_then(|m| m.modified()).unwrap_or(t) };
        t = t.max(m);
    }
    t
}

/// The broker binary: `$SLUICE_BROKER_BIN`, else `target/<profile>/sluice-broker` (next
/// to this test's directory) when it is newer than the broker's sources (as after
/// `cargo test --workspace`), else built with `cargo build -p sluice-broker`.
pub fn broker_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BROKER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("sluice-broker");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = ["broker/src", "log/src", "groups/src", "client/src", "core/src", "proto", "crd/src"]
        .iter()
        .map(|d| newest(&root.join(d)))
        .max()
        .unwrap();
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| b >= sources) {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "sluice-broker", "--bin", "sluice-broker"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo build sluice-broker");
    assert!(status.success(), "cargo build -p sluice-broker failed");
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// A kubeconfig for ServiceAccount `<cluster>-broker` (the token the 1.20 token
/// controller puts in a Secret): the brokers run with exactly the Role the operator
/// grants them.
pub async fn broker_kubeconfig(cp: &ControlPlane, admin: &kube::Client) -> PathBuf {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let name = format!("{CLUSTER}-broker");
    let token = wait_for(&format!("a token for ServiceAccount {name}"), Duration::from_secs(60), || async {
        let sa = sas.get_opt(&name).await.ok()??;
        for r in sa.secrets.iter().flatten() {
            let s = secrets.get_opt(r.name.as_deref()?).await.ok()??;
            if let Some(t) = s.data.as_ref().and_then(|d| d.get("token")) {
                return Some(String::from_utf8(t.0.clone()).unwrap());
            }
        }
        None
    })
    .await;
    let admin_config = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let text: Vec<String> = admin_config
        .lines()
        .map(|l| if l.trim_start().starts_with("token: ") { format!("    token: {token}") } else { l.to_string() })
        .collect();
    let path = cp.dir.path().join("broker.kubeconfig");
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

pub fn start_broker(bin: &Path, cp: &ControlPlane, kubeconfig: &Path, id: i32) -> BrokerProcess {
    start_broker_env(bin, cp, kubeconfig, id, &[])
}

/// [`start_broker`] with more environment (what else the ConfigMap would give the pod).
pub fn start_broker_env(
    bin: &Path,
    cp: &ControlPlane,
    kubeconfig: &Path,
    id: i32,
    env: &[(String, String)],
) -> BrokerProcess {
    let ip = format!("127.0.0.{}", 11 + id);
    let addr = format!("{ip}:{}", free_port(&ip));
    let metrics = format!("{ip}:{}", free_port(&ip));
    let data_dir = cp.dir.path().join(format!("broker-{id}"));
    // Appended to: a restarted broker keeps the log of its first run.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cp.dir.path().join(format!("broker-{id}.log")))
        .unwrap();
    let child = Command::new(bin)
        // What the StatefulSet's pod gets: the ConfigMap's env, POD_NAME, the address.
        .env("SLUICE_STANDALONE", "false")
        .env("SLUICE_CLUSTER", CLUSTER)
        .env("SLUICE_NAMESPACE", NS)
        .env("POD_NAME", format!("{CLUSTER}-{id}"))
        .env("SLUICE_DATA_DIR", &data_dir)
        .env("SLUICE_LISTEN", &addr)
        .env("SLUICE_METRICS_LISTEN", &metrics)
        .env("SLUICE_ADVERTISED_ADDRESS", &addr)
        // Several brokers on one host: each its own Kafka port.
        .env("SLUICE_KAFKA_LISTEN", format!("{ip}:0"))
        .env("SLUICE_LEASE_DURATION_SECONDS", LEASE_SECONDS.to_string())
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube=warn")
        .env_remove("SLUICE_BROKER_ID")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start sluice-broker");
    BrokerProcess { id, addr, metrics, child }
}

pub fn object<T: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: serde_json::Value) -> T {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": kind,
        "metadata": { "name": name, "namespace": NS }, "spec": spec,
    }))
    .unwrap()
}
