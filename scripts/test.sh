#!/usr/bin/env bash
# Runs the whole Sluice test suite: every crate's unit tests, the integration tests
# over real sockets and processes, and (when the operator's tests exist) the tests
# against a real kube-apiserver + etcd. This is the README's test command and what
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# The control plane for the operator tests (built once, cached outside the checkout).
if [[ -x tests/envtest/install.sh ]]; then
  eval "$(tests/envtest/install.sh | grep '^export SLUICE_ENVTEST_BIN=')"
  export SLUICE_ENVTEST_BIN
fi

# The operator's quiet-at-rest test watches for writes this long (the issue asks 30 s).
export SLUICE_QUIET_SECONDS="${SLUICE_QUIET_SECONDS:-30}"

if command -v cargo-nextest >/dev/null 2>&1; then
  # nextest runs test binaries in parallel and reports each test; it does not run
  # doctests, so those go first and nextest's summary is the closing line.
  cargo test --workspace --doc
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
