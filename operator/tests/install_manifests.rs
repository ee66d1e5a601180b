//! The install artifacts against the code and a real control plane:
//!
//! - always: the chart's `crds/` equals the generated `crds/`, the chart's version is the
//!   workspace's, `deploy/install.yaml` holds the chart's objects, CRDs and RBAC rules
//!   (and, where a Helm engine is at hand, is exactly the chart's rendering), the
//!   operator holds every permission it grants brokers, and every example is a valid,
//!   fully known spec that the operator accepts;
//! - on a real kube-apiserver (`SLUICE_ENVTEST_BIN`): `deploy/install.yaml` and every
//!   example pass `kubectl apply --server-side --dry-run=server`; the operator, run with
//!   only its ServiceAccount's token, reconciles a Cluster and a Topic to Ready and
//!   finalizes the Topic, and may not do what it does not need; a broker, with only its
//!   ServiceAccount's token, renews its Lease and watches Topics, and may not modify them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice_crd::{Cluster, ConditionStatus, ConsumerGroup, Topic};
use support::envtest::ControlPlane;
use support::{BrokerLeases, NS, metric, wait_for};

const INSTALL_NS: &str = "sluice-system";
const OPERATOR_SA: &str = "sluice-operator";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kind_name(v: &Value) -> (String, String) {
    (v["kind"].as_str().unwrap_or_default().into(), v["metadata"]["name"].as_str().unwrap_or_default().into())
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "examples: {files:?}");
    files
}

/// The operator's rules as written once in the chart (`sluice.operatorRules` in
/// `_helpers.tpl`, plain YAML without template directives).
fn chart_rules() -> Vec<PolicyRule> {
    let tpl = read("charts/sluice/templates/_helpers.tpl");
    let start = tpl.find(r#"{{- define "sluice.operatorRules" -}}"#).expect("operatorRules in _helpers.tpl");
    let body = &tpl[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let body = &body[..body.find("{{- end }}").expect("end of operatorRules")];
    assert!(!body.contains("{{"), "operatorRules must stay plain YAML");
    serde_yaml::from_str(body).unwrap()
}

/// Whether `rules` allow `verb` on `group/resource` (named `name`), the RBAC way.
fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
    rules.iter().any(|r| {
        let has = |list: &Option<Vec<String>>, x: &str| list.iter().flatten().any(|v| v == x || v == "*");
        has(&r.api_groups, group)
            && has(&r.resources, resource)
            && r.verbs.iter().any(|v| v == verb || v == "*")
            && match (&r.resource_names, name) {
                (None, _) => true,
                (Some(names), Some(n)) => names.is_empty() || names.iter().any(|x| x == n),
                (Some(names), None) => names.is_empty(),
            }
    })
}

#[test]
fn chart_crds_and_version_match_the_workspace() {
    assert!(
        read("charts/sluice/crds/sluice-crds.yaml") == read("crds/sluice-crds.yaml"),
        "charts/sluice/crds/sluice-crds.yaml differs from crds/sluice-crds.yaml: cp crds/sluice-crds.yaml charts/sluice/crds/"
    );
    let chart: Value = serde_yaml::from_str(&read("charts/sluice/Chart.yaml")).unwrap();
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"), "Chart.yaml version");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion");
}

#[test]
fn install_yaml_is_the_charts_rendering() {
    let install = docs(&read("deploy/install.yaml"));
    let got: Vec<(String, String)> = install.iter().map(kind_name).collect();
    let want: Vec<(String, String)> = [
        ("Namespace", INSTALL_NS),
        ("CustomResourceDefinition", "clusters.sluice.dev"),
        ("CustomResourceDefinition", "consumergroups.sluice.dev"),
        ("CustomResourceDefinition", "topics.sluice.dev"),
        ("ServiceAccount", OPERATOR_SA),
        ("ClusterRole", "sluice-operator"),
        ("ClusterRoleBinding", "sluice-operator"),
        ("Service", "sluice-operator-metrics"),
        ("Deployment", "sluice-operator"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(got, want);

    // The same CRDs as crds/.
    let crds: Vec<Value> = docs(&read("crds/sluice-crds.yaml"));
    let in_install: Vec<&Value> = install.iter().filter(|d| d["kind"] == "CustomResourceDefinition").collect();
    assert_eq!(in_install.len(), crds.len());
    for crd in &crds {
        assert!(in_install.contains(&crd), "CRD {:?} differs in deploy/install.yaml", kind_name(crd));
    }

    // The same rules as the chart's template.
    let role: ClusterRole =
        serde_json::from_value(install.iter().find(|d| d["kind"] == "ClusterRole").unwrap().clone()).unwrap();
    assert_eq!(role.rules.unwrap(), chart_rules(), "deploy/install.yaml is stale: run deploy/render.sh");

    // The Deployment as the issue asks for it.
    let dep = install.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(dep["spec"]["replicas"], 2);
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["image"], format!("ghcr.io/sluice-dev/sluice:{}", env!("CARGO_PKG_VERSION")));

    // Byte for byte, where a Helm engine is at hand (a helm binary, or the Helm SDK venv
    // deploy/render.sh installs); tests/e2e/kind.sh checks it with `helm template`. Under
    // CI the check always runs: deploy/render.sh installs the SDK venv itself.
    let venv = std::env::var("SLUICE_HELM_VENV").unwrap_or_else(|_| "/var/cache/sluice-helm/venv".into());
    let has_helm = Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success());
    let has_sdk = Path::new(&venv).join("bin/python").is_file();
    let under_ci = support::envtest::is_ci(std::env::var("CI").ok().as_deref());
    if has_helm || has_sdk || under_ci {
        let out = Command::new("bash").arg(root().join("deploy/render.sh")).arg("--check").output().unwrap();
        assert!(
            out.status.success(),
            "deploy/render.sh --check: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    } else {
        eprintln!("SKIPPED byte-for-byte check: no helm binary and no {venv} (deploy/render.sh --check installs it)");
    }
}

#[test]
fn operator_holds_every_permission_it_grants_brokers() {
    // Kubernetes refuses to let the operator create a Role granting more than it holds.
    let rules = chart_rules();
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "kf", "namespace": NS, "uid": "u" }, "spec": { "brokers": 3 },
    }))
    .unwrap();
    let broker = sluice_operator::cluster::resources::role(&cluster, 3).rules.unwrap();
    for r in &broker {
        for group in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for verb in &r.verbs {
                    let names: Vec<Option<&str>> = match &r.resource_names {
                        Some(n) => n.iter().map(|s| Some(s.as_str())).collect(),
                        None => vec![None],
                    };
                    for name in names {
                        assert!(allows(&rules, group, res, verb, name), "operator lacks {verb} {group}/{res} {name:?}");
                    }
                }
            }
        }
    }
}

/// Every key of `original` is in `roundtrip` (typed and back): no misspelt field that the
/// API server would silently prune.
fn assert_known(original: &Value, roundtrip: &Value, path: &str) {
    if let (Some(o), Some(r)) = (original.as_object(), roundtrip.as_object()) {
        for (k, v) in o {
            let p = format!("{path}.{k}");
            let Some(rv) = r.get(k) else { panic!("unknown field {p}") };
            // Free-form maps (config, labels) are kept whole.
            assert_known(v, rv, &p);
        }
    }
}

#[test]
fn examples_are_known_valid_specs() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.lines().next().unwrap_or_default().starts_with('#'), "{file:?} starts with a comment");
        for doc in docs(&text) {
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            let (roundtrip, problems) = match doc["kind"].as_str().unwrap() {
                "Cluster" => {
                    let c: Cluster = serde_json::from_value(doc.clone()).unwrap();
                    (serde_json::to_value(&c).unwrap(), sluice_operator::cluster::decide::problems(&c))
                }
                "Topic" => {
                    let t: Topic = serde_json::from_value(doc.clone()).unwrap();
                    (serde_json::to_value(&t).unwrap(), sluice_operator::topic::validate::problems(&t.spec, &name))
                }
                "ConsumerGroup" => {
                    let g: ConsumerGroup = serde_json::from_value(doc.clone()).unwrap();
                    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
                    let reset =
                        g.spec.offset_reset.as_ref().map(|r| sluice_operator::group::decide::validate_reset(r, now));
                    (serde_json::to_value(&g).unwrap(), reset.and_then(Result::err).into_iter().collect())
                }
                // Plain Kubernetes objects next to the Sluice ones; the API server checks them.
                "LimitRange" => continue,
                other => panic!("{file:?}: unexpected kind {other}"),
            };
            assert_known(&doc, &roundtrip, &name);
            assert!(problems.is_empty(), "{file:?} {name}: {problems:?}");
        }
    }
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn manifests_and_examples_pass_server_side_dry_run() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    // A dry run creates nothing, so the objects inside the Namespace need it for real.
    ok(&cp.kubectl(&["create", "namespace", INSTALL_NS], None), "create namespace");
    let install = root().join("deploy/install.yaml");
    let out = ok(
        &cp.kubectl(&["apply", "--server-side", "--dry-run=server", "-f", install.to_str().unwrap()], None),
        "dry-run deploy/install.yaml",
    );
    println!("deploy/install.yaml:\n{out}");
    assert_eq!(out.lines().filter(|l| l.contains("(server dry run)")).count(), 9, "{out}");
    for file in examples() {
        let out = ok(
            &cp.kubectl(&["apply", "--server-side", "--dry-run=server", "-f", file.to_str().unwrap()], None),
            &format!("dry-run {file:?}"),
        );
        print!("{}", out);
        assert!(out.contains("(server dry run)"), "{out}");
    }
}

/// A kubeconfig for `cp` that authenticates with `token` only.
fn token_kubeconfig(cp: &ControlPlane, token: &str, name: &str) -> PathBuf {
    let admin = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let text: String = admin
        .lines()
        .map(|l| if l.trim_start().starts_with("token: ") { format!("    token: {token}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(text, admin.trim_end(), "admin kubeconfig has a token line");
    let path = cp.dir.path().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text + "\n").unwrap();
    path
}

async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap()).unwrap()
}

/// The token the 1.20 token controller puts in a Secret for ServiceAccount `ns/name`.
async fn service_account_token(admin: &kube::Client, ns: &str, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    wait_for(&format!("a token Secret for ServiceAccount {ns}/{name}"), Duration::from_secs(30), || async {
        let sa = sas.get_opt(name).await.unwrap()?;
        for r in sa.secrets.iter().flatten() {
            let s = secrets.get_opt(r.name.as_deref()?).await.unwrap()?;
            if s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                && let Some(t) = s.data.as_ref().and_then(|d| d.get("token"))
            {
                return Some(String::from_utf8(t.0.clone()).unwrap());
            }
        }
        None
    })
    .await
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => println!("forbidden, as it must be: {what}"),
        other => panic!("{what}: expected 403, got {other:?}"),
    }
}

struct OperatorProcess {
    child: Child,
    metrics_port: u16,
    log: PathBuf,
}

impl OperatorProcess {
    /// `sluice-operator run` authenticated by `kubeconfig`, its Lease in `lease_ns`.
    fn spawn(cp: &ControlPlane, kubeconfig: &Path, identity: &str, lease_ns: &str) -> Self {
        let metrics_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = cp.dir.path().join(format!("operator-{identity}.log"));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
            .args(["run", "--identity", identity, "--lease-duration", "4", "--lease-grace", "1"])
            .args(["--recheck", "2", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", lease_ns)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        Self { child, metrics_port, log }
    }

    /// The first line of the log where the API server refused the operator something.
    fn first_denial(&self) -> Option<String> {
        let log = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        log.lines()
            .find(|l| {
                // Not a bare "403": timestamps hold it too.
                ["forbidden", "with 403", "error 403", "code: 403", "could not publish event"]
                    .iter()
                    .any(|m| l.contains(m))
            })
            .map(str::to_string)
    }

    fn metrics(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    }
}

/// Text without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn can_i(cp: &ControlPlane, kubeconfig: &Path, args: &[&str]) -> bool {
    let out = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["auth", "can-i"])
        .args(args)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(answer == "yes" || answer == "no", "kubectl auth can-i {args:?}: {answer} {:?} ({cp:?})", out.stderr);
    answer == "yes"
}

fn ready(conditions: Option<&Vec<sluice_crd::Condition>>) -> Option<(ConditionStatus, String)> {
    let c = conditions?.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_broker_work_with_only_their_rbac() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let admin = cp.client().await;

    // Everything in deploy/install.yaml, for real (the Deployment's pods stay Pending:
    // there is no kubelet; the operator runs below as a local process instead).
    let install = root().join("deploy/install.yaml");
    ok(&cp.kubectl(&["apply", "--server-side", "-f", install.to_str().unwrap()], None), "apply install.yaml");

    // The operator with nothing but its ServiceAccount's token.
    let token = service_account_token(&admin, INSTALL_NS, OPERATOR_SA).await;
    let op_kc = token_kubeconfig(&cp, &token, "operator");
    let op = OperatorProcess::spawn(&cp, &op_kc, "sa-operator", INSTALL_NS);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), INSTALL_NS);
    wait_for("the operator to lead", Duration::from_secs(30), || async {
        let holder = leases.get_opt("sluice-operator").await.unwrap()?.spec?.holder_identity?;
        (holder == "sa-operator" && op.metrics().is_some_and(|m| metric(&m, "sluice_operator_leader") == 1.0))
            .then_some(())
    })
    .await;

    // A Cluster: its children are applied with the operator's token, including the
    // brokers' Role (which it may create only because it holds every rule in it).
    let clusters: Api<Cluster> = Api::namespaced(admin.clone(), NS);
    let topics: Api<Topic> = Api::namespaced(admin.clone(), NS);
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "kf", "namespace": NS }, "spec": { "brokers": 3 },
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &cluster).await.unwrap();
    let topic: Topic = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
        "metadata": { "name": "orders", "namespace": NS },
        "spec": { "cluster": "kf", "partitions": 3, "replicationFactor": 3 },
    }))
    .unwrap();
    topics.create(&PostParams::default(), &topic).await.unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(admin.clone(), NS);
    wait_for("StatefulSet kf", Duration::from_secs(30), || async { sts.get_opt("kf").await.unwrap() }).await;
    // Broker volumes carry the selector labels: `kubectl delete pvc -l app.kubernetes.io/name=sluice`
    // (the uninstall step in docs/operations.md) finds them.
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(admin.clone(), NS);
    let pvc =
        wait_for("PVC data-kf-0", Duration::from_secs(30), || async { pvcs.get_opt("data-kf-0").await.unwrap() }).await;
    assert_eq!(pvc.labels().get("app.kubernetes.io/name").map(String::as_str), Some("sluice"), "{:?}", pvc.labels());
    let role = Api::<Role>::namespaced(admin.clone(), NS).get("kf-broker").await.unwrap();
    println!("broker Role rendered with the operator's token: {:?}", role.rules);
    let pdb = ok(&cp.kubectl(&["get", "pdb", "kf", "-o", "jsonpath={.apiVersion}"], None), "get pdb");
    println!("PodDisruptionBudget kf: {pdb}");

    // The brokers, with nothing but the brokers' ServiceAccount token: they create and
    // renew their Leases (server-side apply, as the test brokers do), which makes the
    // Cluster and the Topic Ready.
    let broker_token = service_account_token(&admin, NS, "kf-broker").await;
    let broker = client_from(&token_kubeconfig(&cp, &broker_token, "broker")).await;
    let broker_leases = BrokerLeases::start(broker.clone(), "kf", &[0, 1, 2], &[]);
    let c = wait_for("Cluster kf Ready", Duration::from_secs(30), || async {
        let c = clusters.get("kf").await.unwrap();
        (ready(c.status.as_ref().map(|s| &s.conditions)) == Some((ConditionStatus::True, "AllBrokersLive".into())))
            .then_some(c)
    })
    .await;
    println!("Cluster kf: {:?}", c.status.unwrap().conditions);
    let t = wait_for("Topic orders Ready", Duration::from_secs(30), || async {
        let t = topics.get("orders").await.unwrap();
        (ready(t.status.as_ref().map(|s| &s.conditions)) == Some((ConditionStatus::True, "Placed".into()))).then_some(t)
    })
    .await;
    // What NOTES.txt, the docs and tests/e2e/kind.sh tell users to run.
    let waited = ok(
        &cp.kubectl(&["wait", "--for=condition=Ready", "cluster/kf", "topic/orders", "--timeout=10s"], None),
        "kubectl wait",
    );
    print!("{waited}");
    let placed: Vec<_> = t.status.unwrap().partitions.iter().map(|p| (p.partition, p.replicas.clone())).collect();
    println!("Topic orders placed by the operator's token: {placed:?}");
    assert!(t.metadata.finalizers.iter().flatten().any(|f| f == "sluice.dev/topic-data"));

    // The broker's own calls: renew (update) its Lease, watch Topics.
    let broker_lease_api: Api<Lease> = Api::namespaced(broker.clone(), NS);
    let mut lease = broker_lease_api.get("kf-broker-0").await.unwrap();
    assert_eq!(lease.labels().get("sluice.dev/cluster").map(String::as_str), Some("kf"));
    lease.spec.as_mut().unwrap().renew_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()));
    broker_lease_api.replace("kf-broker-0", &PostParams::default(), &lease).await.unwrap();
    println!("broker token: Lease kf-broker-0 renewed with an update");
    let broker_topics: Api<Topic> = Api::namespaced(broker.clone(), NS);
    let rv = broker_topics.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = broker_topics.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "labels": { "seen": "yes" } } })))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    match event {
        WatchEvent::Modified(t) => println!("broker token: watch saw {} modified", t.name_any()),
        other => panic!("broker watch: {other:?}"),
    }

    // ... and what brokers must not do.
    forbidden(
        broker_topics
            .patch("orders", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "partitions": 4 } })))
            .await,
        "broker patches a Topic",
    );
    forbidden(
        broker_topics
            .patch_status("orders", &PatchParams::default(), &Patch::Merge(json!({ "status": { "partitions": [] } })))
            .await,
        "broker patches a Topic's status",
    );
    forbidden(broker_topics.delete("orders", &DeleteParams::default()).await, "broker deletes a Topic");
    let mut other = topic.clone();
    other.metadata.name = Some("other".into());
    forbidden(broker_topics.create(&PostParams::default(), &other).await, "broker creates a Topic");
    forbidden(broker_lease_api.get("sluice-operator").await, "broker reads the operator's Lease");
    forbidden(broker_lease_api.get("other-broker-0").await, "broker reads another cluster's broker Lease");
    forbidden(Api::<Secret>::namespaced(broker.clone(), NS).list(&ListParams::default()).await, "broker lists Secrets");
    forbidden(
        Api::<Cluster>::namespaced(broker.clone(), NS)
            .patch("kf", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "brokers": 5 } })))
            .await,
        "broker patches its Cluster",
    );

    // The operator's token is refused what the operator does not need.
    for (args, what) in [
        (vec!["get", "secrets", "-A"], "read Secrets"),
        (vec!["create", "pods", "-n", NS], "create Pods"),
        (vec!["delete", "statefulsets", "-n", NS], "delete StatefulSets"),
        (vec!["update", "topics.sluice.dev", "-n", NS], "update Topics"),
        (vec!["delete", "topics.sluice.dev", "-n", NS], "delete Topics"),
        (vec!["create", "clusterroles"], "create ClusterRoles"),
        (vec!["escalate", "roles.rbac.authorization.k8s.io", "-n", NS], "escalate Roles"),
        (vec!["bind", "roles.rbac.authorization.k8s.io", "-n", NS], "bind Roles"),
        (vec!["delete", "leases.coordination.k8s.io", "-n", NS], "delete Leases"),
    ] {
        assert!(!can_i(&cp, &op_kc, &args), "the operator may {what}");
        println!("operator token may not {what}");
    }
    let op_client = client_from(&op_kc).await;
    let escalating: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "escalate", "namespace": NS },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }],
    }))
    .unwrap();
    forbidden(
        Api::<Role>::namespaced(op_client, NS)
            .patch("escalate", &PatchParams::apply("test").force(), &Patch::Apply(&escalating))
            .await,
        "operator grants a permission it does not hold",
    );

    // Deletion goes through the operator's finalizer (patch, Event) with its token too.
    topics.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("Topic orders gone", Duration::from_secs(30), || async {
        topics.get_opt("orders").await.unwrap().is_none().then_some(())
    })
    .await;
    let events = ok(
        &cp.kubectl(&["get", "events.events.k8s.io", "-o", "jsonpath={range .items[*]}{.reason} {end}"], None),
        "events",
    );
    assert!(events.contains("TopicDeleted"), "events: {events}");

    drop(broker_leases);
    let m = op.metrics().unwrap();
    assert!(metric(&m, "sluice_operator_reconciles_total") > 0.0);
    assert_eq!(metric(&m, "sluice_operator_reconcile_failures_total"), 0.0, "{m}");
    assert_eq!(op.first_denial(), None, "the operator was refused something");
    drop(op);
}

/// Minimality, by ablation: for every single (resource, verb) of the operator's rules,
/// run the operator with that one permission removed through a Cluster, a ConsumerGroup and a Topic's
/// life (children created, status, placement, finalizer, Event) and show that the API
/// server refuses it something.
/// One operator run per permission, about a minute in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_permission_is_needed() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();
    let admin = cp.client().await;
    let install = root().join("deploy/install.yaml");
    ok(&cp.kubectl(&["apply", "--server-side", "-f", install.to_str().unwrap()], None), "apply install.yaml");
    let token = service_account_token(&admin, INSTALL_NS, OPERATOR_SA).await;
    let op_kc = token_kubeconfig(&cp, &token, "operator");

    // One rule per (group, resource, verb).
    let mut atoms: Vec<(String, String, String)> = Vec::new();
    for r in chart_rules() {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    atoms.push((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    let rule = |(g, r, v): &(String, String, String)| json!({ "apiGroups": [g], "resources": [r], "verbs": [v] });
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let clusters: Api<Cluster> = Api::namespaced(admin.clone(), NS);
    let topics: Api<Topic> = Api::namespaced(admin.clone(), NS);
    let groups: Api<ConsumerGroup> = Api::namespaced(admin.clone(), NS);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());

    // Run 0 has every permission (and must see no refusal); run i removes atoms[i - 1].
    let mut undetected = Vec::new();
    for i in 0..=atoms.len() {
        let removed = i.checked_sub(1).map(|j| atoms[j].clone());
        let rules: Vec<Value> = atoms.iter().filter(|a| Some(*a) != removed.as_ref()).map(rule).collect();
        roles
            .patch("sluice-operator", &PatchParams::default(), &Patch::Merge(json!({ "rules": rules })))
            .await
            .unwrap();
        // A fresh Lease namespace: no waiting for the previous run's Lease to expire.
        let lease_ns = format!("ablation-{i}");
        let ns = serde_json::from_value(json!({ "metadata": { "name": lease_ns } })).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
        let op = OperatorProcess::spawn(&cp, &op_kc, &format!("ablation-{i}"), &lease_ns);
        let (c, t) = (format!("c{i}"), format!("t{i}"));
        let cluster: Cluster = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
            "metadata": { "name": c, "namespace": NS },
            // Kafka auto-creation: the operator creates the Topic a broker Lease asks for.
            "spec": { "brokers": 1, "config": { "auto.create.topics.enable": "true" } },
        }))
        .unwrap();
        clusters.create(&PostParams::default(), &cluster).await.unwrap();
        let auto = format!("auto{i}");
        let topic: Topic = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
            "metadata": { "name": t, "namespace": NS }, "spec": { "cluster": c },
        }))
        .unwrap();
        topics.create(&PostParams::default(), &topic).await.unwrap();
        // A ConsumerGroup too: its finalizer (patch) and status (consumergroups/status).
        // The fake broker Leases carry no address: its status says BrokersUnavailable.
        let group: ConsumerGroup = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "ConsumerGroup",
            "metadata": { "name": format!("g{i}"), "namespace": NS }, "spec": { "cluster": c },
        }))
        .unwrap();
        groups.create(&PostParams::default(), &group).await.unwrap();
        let brokers = BrokerLeases::start_requesting(admin.clone(), &c, &[0], &[], Some(&auto));
        let deadline = std::time::Instant::now() + Duration::from_secs(12);
        let mut deleted = false;
        let mut gone = false;
        let mut group_seen = false;
        let mut auto_seen = false;
        // The Cluster's status is written after its children are applied: until then a
        // missing permission of that step (services, the StatefulSet) may not be tried.
        let mut cluster_seen = false;
        while std::time::Instant::now() < deadline
            && op.first_denial().is_none()
            && !(gone && group_seen && auto_seen && cluster_seen)
        {
            if !cluster_seen {
                cluster_seen = clusters
                    .get_opt(&c)
                    .await
                    .unwrap()
                    .is_some_and(|c| c.status.is_some_and(|s| s.observed_generation.is_some()));
            }
            if !auto_seen {
                auto_seen = topics.get_opt(&auto).await.unwrap().is_some();
            }
            if !group_seen {
                group_seen = groups.get_opt(&format!("g{i}")).await.unwrap().is_some_and(|g| g.status.is_some());
            }
            if !deleted {
                let ready_now = topics.get_opt(&t).await.unwrap().is_some_and(|t| {
                    ready(t.status.as_ref().map(|s| &s.conditions)).is_some_and(|r| r.0 == ConditionStatus::True)
                });
                if ready_now {
                    topics.delete(&t, &DeleteParams::default()).await.unwrap();
                    deleted = true;
                }
            } else {
                gone = topics.get_opt(&t).await.unwrap().is_none();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Events are published after the finalizer's cleanup; give them a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let denial = op.first_denial();
        drop(brokers);
        drop(op);
        match (&removed, denial) {
            (None, None) => {
                assert!(gone, "with every permission the Topic's whole life must complete");
                assert!(group_seen, "with every permission the ConsumerGroup gets a status");
                assert!(auto_seen, "with every permission the Topic a broker asked for is auto-created");
                assert!(cluster_seen, "with every permission the Cluster gets a status");
                println!(
                    "all permissions: Cluster, Topic and ConsumerGroup reconciled, Topic finalized, requested Topic auto-created, nothing refused"
                );
            }
            (None, Some(d)) => panic!("refused with every permission: {d}"),
            (Some(a), Some(d)) => {
                // The API server's reason: `cannot <verb> resource ...` or the escalation check.
                let at = ["attempting to grant", "cannot ", "forbidden"].iter().find_map(|m| d.find(m)).unwrap_or(0);
                let d: String = d[at..].chars().take(140).collect();
                println!("without {}/{} {}: refused: {d}", a.0, a.1, a.2);
            }
            (Some(a), None) => {
                println!("without {}/{} {}: NOTHING REFUSED", a.0, a.1, a.2);
                undetected.push(a.clone());
            }
        }
    }
    // A repeated Event is a patch (kube's Recorder): not always exercised by one run (a
    // slow run may repeat an Event, and then its refusal is seen).
    let may_go_unused: (String, String, String) = ("events.k8s.io".into(), "events".into(), "patch".into());
    undetected.retain(|a| *a != may_go_unused);
    assert_eq!(undetected, Vec::<(String, String, String)>::new(), "permissions the operator did not need");
}

/// The image builds every workspace crate: the Dockerfile's dependency layer copies each
/// member's manifest and stubs each member (a crate added to the workspace but not to
/// the Dockerfile breaks `docker build`, which nothing here can run).
#[test]
fn dockerfile_builds_every_workspace_member() {
    let manifest = read("Cargo.toml");
    let members_line = manifest.lines().find(|l| l.trim_start().starts_with("members")).expect("members line");
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.len() >= 10, "{members:?}");
    let dockerfile = read("Dockerfile");
    let stub_loop = dockerfile.lines().find(|l| l.contains("for c in ")).expect("stub loop");
    for m in &members {
        assert!(dockerfile.contains(&format!("COPY {m}/Cargo.toml {m}/")), "Dockerfile does not copy {m}/Cargo.toml");
        assert!(stub_loop.split([' ', ';']).any(|w| w == *m), "Dockerfile's stub loop misses {m}: {stub_loop}");
    }
}
