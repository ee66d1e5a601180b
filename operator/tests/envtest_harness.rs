//! The harness's rule for a control plane that cannot run here: under CI (`CI=true` or
//! `CI=1`) the test fails, elsewhere it is reported as skipped with the reason. Tested
//! as a pure decision, and end to end by running this test binary again with the
//! environment of each case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::envtest::{ControlPlane, Unavailable, is_ci, prerequisites, unavailable};

#[test]
fn under_ci_a_missing_control_plane_is_a_failure() {
    for ci in ["true", "TRUE", "1", " true "] {
        assert!(is_ci(Some(ci)), "{ci:?}");
        let d = unavailable(Some(ci), "some_test", "SLUICE_ENVTEST_BIN is not set");
        let Unavailable::Fail(message) = d else { panic!("CI={ci:?} skipped: {d:?}") };
        assert!(message.starts_with("some_test: no control plane under CI=true"), "{message}");
        assert!(message.ends_with("SLUICE_ENVTEST_BIN is not set"), "{message}");
    }
}

#[test]
fn elsewhere_it_is_a_skip_that_names_the_test_and_the_reason() {
    for ci in [None, Some(""), Some("false"), Some("0"), Some("yes please")] {
        assert!(!is_ci(ci), "{ci:?}");
        assert_eq!(
            unavailable(ci, "some_test", "etcd missing"),
            Unavailable::Skip("SKIPPED: some_test: etcd missing".into()),
            "CI={ci:?}"
        );
    }
}

#[test]
fn missing_binaries_and_an_unset_variable_are_reasons() {
    let unset = prerequisites(None).unwrap_err();
    assert!(unset.starts_with("SLUICE_ENVTEST_BIN is not set"), "{unset}");
    let empty = prerequisites(Some(PathBuf::from("/nonexistent"))).unwrap_err();
    assert!(empty.starts_with("/nonexistent/etcd missing (SLUICE_ENVTEST_BIN=/nonexistent)"), "{empty}");
}

/// Run only by the tests below, in a child process with the environment they choose.
#[test]
#[ignore = "run by the tests of the CI/skip rule in a child process"]
fn probe_control_plane() {
    if let Some(cp) = ControlPlane::start() {
        drop(cp);
    }
}

fn probe(ci: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["probe_control_plane", "--exact", "--ignored", "--test-threads=1"]);
    cmd.env("SLUICE_ENVTEST_BIN", "/nonexistent");
    match ci {
        Some(v) => cmd.env("CI", v),
        None => cmd.env_remove("CI"),
    };
    cmd.output().unwrap()
}

#[test]
fn a_test_without_control_plane_fails_under_ci() {
    let out = probe(Some("true"));
    // libtest reports the panic of a failed test with its captured output.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "passed under CI=true: {text}");
    assert!(text.contains("probe_control_plane: no control plane under CI=true"), "{text}");
    assert!(text.contains("/nonexistent/etcd missing"), "{text}");
    assert!(!text.contains("SKIPPED"), "{text}");
}

#[test]
fn a_test_without_control_plane_says_skipped_elsewhere() {
    let out = probe(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("SKIPPED: probe_control_plane: /nonexistent/etcd missing"), "{stderr}");
}
