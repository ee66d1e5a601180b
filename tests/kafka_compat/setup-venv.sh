#!/usr/bin/env bash
# Creates (once) the Python environment of the Kafka cross-implementation tests: a venv
# outside the checkout, ${SLUICE_PYTHON_VENV:-/var/cache/sluice-python/venv}, with the
# packages of requirements.txt. Idempotent; a valid venv returns at once. Prints
#   export SLUICE_PYTHON=<venv>/bin/python
# on stdout; everything else goes to stderr. Exits non-zero when it cannot be built
# (no python3, no registry): the caller decides whether that skips or fails a test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VENV="${SLUICE_PYTHON_VENV:-/var/cache/sluice-python/venv}"
REQS="$here/requirements.txt"
STAMP="$VENV/.sluice-requirements"

log() { printf '[kafka_compat venv] %s\n' "$*" >&2; }

ready() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && cmp -s "$STAMP" "$REQS" &&
    "$VENV/bin/python" -c 'import kafka.record.default_records, snappy, lz4.frame, zstandard, confluent_kafka, aiokafka' >/dev/null 2>&1
}

mkdir -p "$(dirname "$VENV")"
# Tests run in parallel: one builds, the others wait for it.
exec 9>"$(dirname "$VENV")/.sluice-python.lock"
flock 9
if ! ready; then
  command -v python3 >/dev/null 2>&1 || { log "python3 is not installed"; exit 1; }
  log "installing $(grep -v '^#' "$REQS" | tr '\n' ' ')into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" >&2
  cp "$REQS" "$STAMP"
  ready || { log "the packages installed but do not import"; exit 1; }
fi
echo "export SLUICE_PYTHON=$VENV/bin/python"
