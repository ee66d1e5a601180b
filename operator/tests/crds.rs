//! `crds/` must be what `sluice-operator crd` prints today.

use std::path::Path;

#[test]
fn committed_crds_are_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/sluice-crds.yaml");
    let generated = sluice_operator::crdgen::yaml().expect("CRDs encode as YAML");
    if std::env::var_os("SLUICE_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write crds/sluice-crds.yaml");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/sluice-crds.yaml is stale: run `cargo run -p sluice-operator -- crd > crds/sluice-crds.yaml` \
         (or this test with SLUICE_UPDATE_CRDS=1)"
    );
}
