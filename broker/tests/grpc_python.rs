//! The `.proto` is enough to write a client in another language: a Python client
//! generated from `proto/` at test time (`tests/grpc_python/check.py`) runs its checks
//! against an in-process broker on 127.0.0.1:0. Its Python packages come from a cached
//! venv that `tests/grpc_python/setup-venv.sh` creates; when that cannot be had the test
//! fails under CI (`CI=true`) and reports itself SKIPPED elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::TestBroker;
use tokio::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the broker crate sits in the workspace").to_path_buf()
}

fn under_ci() -> bool {
    // The rule of scripts/test.sh and the envtest harness: "1" or "true", any case.
    std::env::var("CI").is_ok_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

/// The venv's python, or why there is none.
async fn python(root: &Path) -> Result<PathBuf, String> {
    let script = root.join("tests/grpc_python/setup-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} failed: {}", script.display(), why.trim()));
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_proto_works() {
    let root = repo_root();
    let python = match python(&root).await {
        Ok(p) => p,
        Err(why) if under_ci() => panic!("the Python gRPC client test needs its venv: {why}"),
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let broker = TestBroker::start().await;
    let out = Command::new(&python)
        .arg(root.join("tests/grpc_python/check.py"))
        .arg(broker.addr.to_string())
        .output()
        .await
        .expect("run check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "check.py failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    broker.stop().await;
}
