#!/usr/bin/env bash
# Runs the whole Sluice test suite: every crate's unit tests, the integration tests
# over real sockets and processes, and (when the operator's tests exist) the tests
# against a real kube-apiserver + etcd. This is the README's test command and what
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# Under CI (CI=true) every dependency of a test must be there: a missing one fails the
# run. Elsewhere the tests that need it report themselves SKIPPED, with the reason.
# (The same rule as operator/tests/support/envtest.rs: "1" or "true" in any case.)
ci="${CI:-}"
ci="${ci,,}"
if [[ "$ci" == 1 || "$ci" == true ]]; then UNDER_CI=1; else UNDER_CI=0; fi

# The control plane for the operator tests (built once, cached outside the checkout).
if envtest_out="$(tests/envtest/install.sh)"; then
  eval "$(grep '^export SLUICE_ENVTEST_BIN=' <<<"$envtest_out")"
  export SLUICE_ENVTEST_BIN
elif ((UNDER_CI)); then
  echo "error: tests/envtest/install.sh failed: the operator tests cannot run, and CI needs them" >&2
  exit 1
else
  echo "warning: tests/envtest/install.sh failed: the operator tests will report SKIPPED" >&2
fi

# kafka-python and its codecs for the cross-implementation tests (cli/tests/kafka_compat.rs),
# in a venv cached outside the checkout.
if python_out="$(tests/kafka_compat/setup-venv.sh)"; then
  eval "$(grep '^export SLUICE_PYTHON=' <<<"$python_out")"
  export SLUICE_PYTHON
elif ((UNDER_CI)); then
  echo "error: tests/kafka_compat/setup-venv.sh failed: the Kafka cross-implementation tests cannot run, and CI needs them" >&2
  exit 1
else
  echo "warning: tests/kafka_compat/setup-venv.sh failed: the Kafka cross-implementation tests will report SKIPPED" >&2
fi

# kcat for the Kafka-client tests (cli/tests/kafka_clients.rs), from Debian's packages.
if ! tests/kafka_compat/install-kcat.sh; then
  if ((UNDER_CI)); then
    echo "error: tests/kafka_compat/install-kcat.sh failed: the kcat tests cannot run, and CI needs them" >&2
    exit 1
  fi
  echo "warning: tests/kafka_compat/install-kcat.sh failed: the kcat tests will report SKIPPED" >&2
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
