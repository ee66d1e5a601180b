//! CRDs on a real kube-apiserver: `kubectl apply --server-side -f crds/`, and the API
//! server itself refusing invalid Topics with a readable message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use support::envtest::ControlPlane;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `kubectl apply -f -` of `yaml`, again while kubectl's discovery does not know the new
/// kinds yet (right after the CRDs are Established, under load, it can lag a moment).
fn apply(cp: &ControlPlane, yaml: &str) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = cp.kubectl(&["apply", "-f", "-"], Some(yaml));
        let e = stderr(&out);
        if !(e.contains("no matches for kind") || e.contains("ensure CRDs are installed"))
            || std::time::Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn crds_apply_and_the_server_rejects_invalid_topics() {
    let Some(cp) = ControlPlane::start() else { return };
    cp.install_crds();

    let topic = |name: &str, extra: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: {name}\nspec:\n  cluster: kf\n{extra}"
        )
    };
    let zero = apply(&cp, &topic("zero", "  partitions: 0\n"));
    assert!(!zero.status.success(), "partitions 0 accepted");
    let msg = stderr(&zero);
    println!("partitions: 0 → {msg}");
    assert!(msg.contains("spec.partitions") && msg.contains("greater than or equal to 1"), "{msg}");

    let bad = apply(&cp, &topic("bad", "  name: \"orders/v1\"\n"));
    assert!(!bad.status.success(), "invalid topic name accepted");
    let msg = stderr(&bad);
    println!("name: orders/v1 → {msg}");
    assert!(msg.contains("spec.name") && msg.contains("should match"), "{msg}");

    let no_cluster =
        apply(&cp, "apiVersion: sluice.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: nc\nspec:\n  partitions: 3\n");
    assert!(!no_cluster.status.success());
    // Refused by kubectl's own schema check when it has the CRD's OpenAPI already, else by the server.
    let msg = stderr(&no_cluster);
    assert!(msg.contains("spec.cluster") || msg.contains("required field \"cluster\""), "{msg}");

    // A valid one is accepted, defaulted, and listed by the `sluice` category and short name.
    let ok = apply(&cp, &topic("orders", "  partitions: 6\n"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    let rf =
        cp.kubectl(&["get", "slt", "orders", "-o", "jsonpath={.spec.replicationFactor}/{.spec.cleanupPolicy}"], None);
    assert_eq!(String::from_utf8_lossy(&rf.stdout), "1/delete");
    let all = cp.kubectl(&["get", "sluice"], None);
    let listed = String::from_utf8_lossy(&all.stdout).into_owned();
    println!("kubectl get sluice →\n{listed}");
    assert!(listed.contains("topic.sluice.dev/orders") || listed.contains("orders"), "{listed}");
    assert!(listed.contains("PARTITIONS"), "printer columns: {listed}");
}
